"""What the schema alone cannot check in a catalog: problems across keys and images (source or parent, parent
chains, regions, shares listed twice, current releases, channels, the paths an image names)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stamp.catalog.models import CatalogFile, ImageSpec, Release
from stamp.catalog.problem_text import suggest
from stamp.catalog.repo_paths import check_repo_path

Problem = tuple[tuple[str | int, ...], str]


def semantic_problems(model: CatalogFile, root: Path, check_files: bool) -> list[Problem]:
    problems: list[Problem] = []
    names = sorted(model.images)
    checked: dict[tuple[str, bool], str | None] = {}
    for name, spec in model.images.items():
        at: tuple[str | int, ...] = ("images", name)
        if (spec.source is None) == (spec.parent is None):
            problems.append((at, "set exactly one of `source` (a root image) or `parent` (a child image)"))
        if spec.parent is not None and spec.parent not in model.images:
            problems.append(
                (
                    (*at, "parent"),
                    f"no image named '{spec.parent}'{suggest(spec.parent, names)}; define it under images",
                )
            )
        if spec.share.public and not model.defaults.allow_public:
            problems.append(
                (
                    (*at, "share", "public"),
                    "public sharing is refused: it also needs `defaults.allow_public: true`, so both are visible "
                    "in review",
                )
            )
        if check_files:
            problems.extend(_path_problems(spec, at, root, checked))
        for key in ("accounts", "organizations", "organizational_units", "copy_accounts"):
            values: list[str] = getattr(spec.share, key)
            seen: set[str] = set()
            for index, value in enumerate(values):
                if value in seen:
                    problems.append(((*at, "share", key, index), f"'{value}' is listed twice"))
                seen.add(value)
    problems.extend(_chain_problems(model))
    problems.extend(_region_problems(model))
    for name, releases in model.releases.items():
        current = [i for i, r in enumerate(releases) if r.status == "current"]
        if len(current) > 1:
            problems.append((("releases", name, current[1], "status"), "more than one release is current"))
        versions = [r.version for r in releases]
        if len(set(versions)) != len(versions):
            problems.append((("releases", name), "release versions must be unique"))
        problems.extend(_channel_problems(model, name, releases))
    return problems


def _channel_problems(model: CatalogFile, name: str, releases: Sequence[Release]) -> list[Problem]:
    """A release may name only channels its image has (docs/rollout.md)."""
    spec = model.images.get(name)
    if spec is None:
        return []
    known = spec.channels if spec.channels is not None else model.defaults.channels or {}
    problems: list[Problem] = []
    for index, release in enumerate(releases):
        for key in ("channels", "forced"):
            for channel in getattr(release, key) or {}:
                if channel not in known:
                    where = f"'{name}' has channels {', '.join(known)}" if known else f"'{name}' has no channels"
                    problems.append((("releases", name, index, key, channel), f"no channel '{channel}': {where}"))
    return problems


def _path_problems(
    spec: ImageSpec, at: tuple[str | int, ...], root: Path, checked: dict[tuple[str, bool], str | None]
) -> list[Problem]:
    problems: list[Problem] = []
    checks: list[tuple[tuple[str | int, ...], str, bool]] = [
        ((*at, "provision", i), p, False) for i, p in enumerate(spec.provision)
    ]
    if spec.files:
        checks.append(((*at, "files"), spec.files, True))
    if spec.tests:
        checks.append(((*at, "tests"), spec.tests, True))
    for loc, relative, want_dir in checks:
        # Many images name the same scripts; each distinct path touches the file system once.
        if (relative, want_dir) not in checked:
            checked[(relative, want_dir)] = check_repo_path(root, relative, want_dir=want_dir)
        message = checked[(relative, want_dir)]
        if message:
            problems.append((loc, message))
    return problems


def _chain_problems(model: CatalogFile) -> list[Problem]:
    """Parent chains that form a cycle, or are longer than MAX_CHAIN; each image is walked once."""
    problems: list[Problem] = []
    depth: dict[str, int | None] = {}  # ancestors of an image; None on or behind a cycle
    for start in sorted(model.images):
        chain: list[str] = []
        index: dict[str, int] = {}
        node: str | None = start
        while node is not None and node in model.images and node not in depth and node not in index:
            index[node] = len(chain)
            chain.append(node)
            node = model.images[node].parent
        below: int | None = -1
        if node is not None and node in index:
            cycle = [*chain[index[node] :], node]
            problems.append((("images", node, "parent"), "parent chain forms a cycle: " + " → ".join(cycle)))
            below = None
        elif node is not None and node in depth:
            below = depth[node]
        for name in reversed(chain):
            below = None if below is None else below + 1
            depth[name] = below
            if below == MAX_CHAIN:
                problems.append(
                    (
                        ("images", name, "parent"),
                        f"'{name}' has {MAX_CHAIN} images above it; a parent chain may be at most {MAX_CHAIN} "
                        "images long (each layer is a separate build)",
                    )
                )
    return problems


# Images from a root to its deepest descendant; real layering (OS, runtime, app) needs a handful.
MAX_CHAIN = 16


def _region_problems(model: CatalogFile) -> list[Problem]:
    # A child is built from its parent's AMI in each region, so it cannot ask for a region its parent lacks.
    problems: list[Problem] = []
    regions = {n: s.regions or model.defaults.regions for n, s in model.images.items()}
    for name, spec in model.images.items():
        if spec.parent in regions:
            missing = sorted(set(regions[name]) - set(regions[spec.parent]))
            if missing:
                problems.append(
                    (
                        ("images", name, "regions" if spec.regions else "parent"),
                        f"regions {', '.join(missing)} are not built by parent '{spec.parent}'",
                    )
                )
    return problems
