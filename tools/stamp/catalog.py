"""Loads `catalog.yaml` into frozen, fully resolved images; every problem names file, line and key."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from stamp import yamlsafe
from stamp.errors import CatalogProblems
from stamp.models import (
    CatalogFile,
    Defaults,
    ImageSpec,
    Model,
    Rebuild,
    Release,
    Retention,
    Share,
    Source,
)


@dataclass(frozen=True)
class Image:
    """One image with `defaults` merged in: what render, plan and publish work from."""

    name: str
    description: str
    source: Source | None
    parent: str | None
    provision: tuple[str, ...]
    files: str | None
    tests: str | None
    share: Share
    regions: tuple[str, ...]
    instance_type: str
    ssh_username: str
    volume_size_gb: int
    retention: Retention
    rebuild: Rebuild

    @property
    def paths(self) -> tuple[str, ...]:
        """Every repository path this image's build depends on."""
        return tuple(p for p in (*self.provision, self.files, self.tests) if p)


@dataclass(frozen=True)
class Catalog:
    path: Path
    root: Path
    defaults: Defaults
    images: Mapping[str, Image]
    releases: Mapping[str, tuple[Release, ...]]

    def current_release(self, name: str) -> Release | None:
        return next((r for r in self.releases.get(name, ()) if r.status == "current"), None)

    def children(self, name: str) -> list[str]:
        return sorted(n for n, image in self.images.items() if image.parent == name)

    def descendants(self, name: str) -> list[str]:
        found: list[str] = []
        queue = self.children(name)
        while queue:
            child = queue.pop(0)
            found.append(child)
            queue.extend(self.children(child))
        return found

    def topo_order(self, names: Iterable[str] | None = None) -> list[str]:
        """Images parents-first; ties broken by name so the order is stable."""
        wanted = set(self.images if names is None else names)
        ordered: list[str] = []
        depth = {name: len(self.ancestors(name)) for name in wanted}
        for name in sorted(wanted, key=lambda n: (depth[n], n)):
            ordered.append(name)
        return ordered

    def ancestors(self, name: str) -> list[str]:
        chain: list[str] = []
        parent = self.images[name].parent
        while parent is not None:
            chain.append(parent)
            parent = self.images[parent].parent
        return chain


def load_catalog(path: Path, *, check_files: bool = True) -> Catalog:
    """Read, validate and resolve a catalog; raises CatalogProblems listing every problem found."""
    text = read_text(path)
    data = parse(text, path)
    return build_catalog(data, text, path, check_files=check_files)


def read_text(path: Path) -> str:
    where = _display(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CatalogProblems(
            [f"{where}: no such file (pass --catalog PATH, or run stamp from the repository root)"]
        ) from None
    except OSError as exc:
        raise CatalogProblems([f"{where}: cannot read: {exc.strerror}"]) from None
    if len(raw) > yamlsafe.MAX_BYTES:
        raise CatalogProblems([f"{where}: {len(raw)} bytes is more than the {yamlsafe.MAX_BYTES}-byte limit"])
    if b"\0" in raw:
        raise CatalogProblems([f"{where}: contains NUL bytes; it is not a text file"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogProblems([f"{where}:{line}: not valid UTF-8 (byte {exc.start}); save it as UTF-8"]) from None


def parse(text: str, path: Path) -> Any:
    try:
        return yamlsafe.load(text)
    except yamlsafe.YamlProblem as problem:
        where = f"{_display(path)}:{problem.line}:{problem.column}"
        key = _dotted(problem.path)
        raise CatalogProblems([f"{where}: {key + ': ' if key else ''}{problem.message}"]) from None


def build_catalog(data: Any, text: str, path: Path, *, check_files: bool = True) -> Catalog:
    if not isinstance(data, dict):
        raise CatalogProblems([f"{_display(path)}:1:1: the catalog must be a mapping with version and images"])
    try:
        model = CatalogFile.model_validate(data)
    except pydantic.ValidationError as exc:
        raise CatalogProblems([_describe(err, text, path) for err in exc.errors()]) from None
    root = path.resolve().parent
    problems = [
        f"{_display(path)}:{line}:{col}: {_dotted(loc)}: {message}"
        for loc, message in _semantic_problems(model, root, check_files)
        for line, col in [yamlsafe.locate(text, loc)]
    ]
    if problems:
        raise CatalogProblems(problems)
    images = {name: _resolve(name, spec, model.defaults) for name, spec in model.images.items()}
    releases = {name: tuple(items) for name, items in model.releases.items()}
    return Catalog(path=path, root=root, defaults=model.defaults, images=images, releases=releases)


def _resolve(name: str, spec: ImageSpec, defaults: Defaults) -> Image:
    # A key set on the image replaces the default as a whole (no deep merge), so review shows the full value.
    return Image(
        name=name,
        description=spec.description,
        source=spec.source,
        parent=spec.parent,
        provision=tuple(spec.provision),
        files=spec.files,
        tests=spec.tests,
        share=spec.share,
        regions=tuple(spec.regions if spec.regions is not None else defaults.regions),
        instance_type=spec.instance_type or defaults.instance_type,
        ssh_username=spec.ssh_username or defaults.ssh_username,
        volume_size_gb=spec.volume_size_gb or defaults.volume_size_gb,
        retention=spec.retention or defaults.retention,
        rebuild=spec.rebuild or defaults.rebuild,
    )


Problem = tuple[tuple[str | int, ...], str]


def _semantic_problems(model: CatalogFile, root: Path, check_files: bool) -> list[Problem]:
    problems: list[Problem] = []
    names = sorted(model.images)
    for name, spec in model.images.items():
        at: tuple[str | int, ...] = ("images", name)
        if (spec.source is None) == (spec.parent is None):
            problems.append((at, "set exactly one of `source` (a root image) or `parent` (a child image)"))
        if spec.parent is not None and spec.parent not in model.images:
            problems.append(
                (
                    (*at, "parent"),
                    f"no image named '{spec.parent}'{_suggest(spec.parent, names)}; define it under images",
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
            problems.extend(_path_problems(spec, at, root))
        for key in ("accounts", "organizations", "organizational_units", "copy_accounts"):
            values: list[str] = getattr(spec.share, key)
            for index, value in enumerate(values):
                if value in values[:index]:
                    problems.append(((*at, "share", key, index), f"'{value}' is listed twice"))
    problems.extend(_cycle_problems(model))
    problems.extend(_region_problems(model))
    for name, releases in model.releases.items():
        current = [i for i, r in enumerate(releases) if r.status == "current"]
        if len(current) > 1:
            problems.append((("releases", name, current[1], "status"), "more than one release is current"))
        versions = [r.version for r in releases]
        if len(set(versions)) != len(versions):
            problems.append((("releases", name), "release versions must be unique"))
    return problems


def _path_problems(spec: ImageSpec, at: tuple[str | int, ...], root: Path) -> list[Problem]:
    problems: list[Problem] = []
    checks: list[tuple[tuple[str | int, ...], str, bool]] = [
        ((*at, "provision", i), p, False) for i, p in enumerate(spec.provision)
    ]
    if spec.files:
        checks.append(((*at, "files"), spec.files, True))
    if spec.tests:
        checks.append(((*at, "tests"), spec.tests, True))
    for loc, relative, want_dir in checks:
        message = check_repo_path(root, relative, want_dir=want_dir)
        if message:
            problems.append((loc, message))
    return problems


def check_repo_path(root: Path, relative: str, *, want_dir: bool) -> str | None:
    """Why `relative` is not a usable file (or folder) inside the repository, or None when it is."""
    if Path(relative).is_absolute() or "\\" in relative:
        return f"'{relative}' must be a path relative to the repository root"
    if ".." in Path(relative).parts:
        return f"'{relative}' must not leave the repository ('..')"
    target = root / relative
    try:
        resolved = target.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return f"'{relative}' does not exist (paths are relative to the folder holding catalog.yaml)"
    if not resolved.is_relative_to(root):
        return f"'{relative}' resolves outside the repository (a symlink?)"
    if want_dir and not resolved.is_dir():
        return f"'{relative}' must be a folder"
    if not want_dir and not resolved.is_file():
        return f"'{relative}' must be a file"
    return None


def _cycle_problems(model: CatalogFile) -> list[Problem]:
    problems: list[Problem] = []
    reported: set[str] = set()
    for start in sorted(model.images):
        chain = [start]
        parent = model.images[start].parent
        while parent is not None and parent in model.images and parent not in reported:
            if parent in chain:
                cycle = [*chain[chain.index(parent) :], parent]
                problems.append((("images", parent, "parent"), "parent chain forms a cycle: " + " → ".join(cycle)))
                reported.update(cycle)
                break
            chain.append(parent)
            parent = model.images[parent].parent
    return problems


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


def _describe(err: Mapping[str, Any], text: str, path: Path) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    line, col = yamlsafe.locate(text, loc)
    kind = err["type"]
    value = err.get("input")
    message = str(err["msg"])
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        options = sorted(parent_model.model_fields) if parent_model else []
        message = f"unknown key '{loc[-1]}'{_suggest(str(loc[-1]), options)}"
        if options and "did you mean" not in message:
            message += f" (allowed: {', '.join(options)})"
    elif kind == "string_type" and isinstance(value, int) and not isinstance(value, bool):
        message = (
            'must be a quoted string, e.g. "012345678901": unquoted digits are read as a number and lose leading zeros'
        )
    elif kind == "string_pattern_mismatch":
        message = f"{value!r} is not valid: {_pattern_help(loc)}"
    elif kind == "missing":
        message = "required key is missing"
    return f"{_display(path)}:{line}:{col}: {_dotted(loc)}: {message}"


def _pattern_help(loc: tuple[str | int, ...]) -> str:
    keys = [k for k in loc if isinstance(k, str)]
    field = keys[-1] if keys else ""
    helps = {
        "accounts": "an account ID is exactly 12 digits, quoted",
        "copy_accounts": "an account ID is exactly 12 digits, quoted",
        "owners": "an owner is a quoted 12-digit account ID, or amazon / aws-marketplace / self",
        "organizations": "expected arn:aws:organizations::<12 digits>:organization/o-<10-32 lowercase chars>",
        "organizational_units": (
            "expected arn:aws:organizations::<12 digits>:ou/o-<org id>/ou-<root id>-<8-32 lowercase chars>"
        ),
        "regions": "expected an AWS region name such as us-east-1",
        "images": "image names are lowercase letters, digits and dashes, starting with a letter",
        "releases": "image names are lowercase letters, digits and dashes, starting with a letter",
        "parent": "image names are lowercase letters, digits and dashes, starting with a letter",
        "amis": "expected a region name mapped to an AMI ID such as ami-0123456789abcdef0",
    }
    return helps.get(field, "see docs/catalog.md for the expected format")


def _model_at(loc: tuple[str | int, ...]) -> type[Model] | None:
    """The pydantic model that validates the mapping at `loc` (for did-you-mean on unknown keys)."""
    from stamp import models

    current: type[Model] | None = CatalogFile
    skip_next = False
    for key in loc:
        if current is None:
            return None
        if skip_next or isinstance(key, int):
            skip_next = False
            continue
        if current is CatalogFile and key in ("images", "releases"):
            current = ImageSpec if key == "images" else Release
            skip_next = True
            continue
        field = current.model_fields.get(str(key))
        if field is None:
            return None
        current = _first_model(field.annotation, models)
    return current


def _first_model(annotation: Any, namespace: Any) -> type[Model] | None:
    if isinstance(annotation, type) and issubclass(annotation, Model):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg, namespace)
        if found is not None:
            return found
    return None


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
