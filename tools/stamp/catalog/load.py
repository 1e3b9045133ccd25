"""Loads `catalog.yaml` into frozen, fully resolved images; every problem names file, line and key."""

from __future__ import annotations

import codecs
import difflib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from stamp.catalog import yamlsafe
from stamp.catalog.models import (
    CatalogFile,
    Channel,
    Defaults,
    ImageSpec,
    Model,
    Rebuild,
    Release,
    Retention,
    Share,
    Source,
    VerifyPolicy,
)
from stamp.errors import CatalogError, CatalogProblems, YamlProblem


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
    verify: VerifyPolicy
    # Rollout channels in order, (name, channel) pairs; empty without `channels` (docs/rollout.md).
    channels: tuple[tuple[str, Channel], ...] = ()

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

    def select(self, names: Sequence[str] | None) -> list[str]:
        """The named images parents first, or every image when `names` is None; an unknown name is an input error."""
        if names is None:
            return self.topo_order()
        unknown = [name for name in names if name not in self.images]
        if unknown:
            raise CatalogError(
                f"no image named '{yamlsafe.show(unknown[0])}' in {self.path}{_suggest(unknown[0], self.images)}",
                hint="images: " + ", ".join(sorted(self.images)),
            )
        return self.topo_order(names)

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
    """The catalog's text: a regular UTF-8 file within the size limit, looked at (stat) before it is read."""
    where = _display(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CatalogProblems(
            [f"{where}: no such file (pass --catalog PATH, or run stamp from the repository root)"]
        ) from None
    except OSError as exc:
        raise CatalogProblems([f"{where}: cannot read: {exc.strerror}"]) from None
    _refuse_special(info, where)
    try:
        # Non-blocking, so a pipe swapped in after the stat cannot hang the open; fstat checks what was opened.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CatalogProblems([f"{where}: cannot read: {exc.strerror}"]) from None
    with os.fdopen(fd, "rb") as handle:
        _refuse_special(os.fstat(handle.fileno()), where)
        raw = handle.read(yamlsafe.MAX_BYTES + 1)
    if len(raw) > yamlsafe.MAX_BYTES:
        raise CatalogProblems([_too_big(where, len(raw))])
    for bom, encoding in _FOREIGN_BOMS:
        if raw.startswith(bom):
            raise CatalogProblems(
                [f"{where}:1:1: the file is {encoding} (it starts with that byte-order mark); save it as UTF-8"]
            )
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw[:nul].count(b"\n") + 1
        raise CatalogProblems([f"{where}:{line}: contains NUL bytes; it is not a text file"])
    try:
        # A UTF-8 byte-order mark is accepted (YAML allows it) and kept, so `stamp record` keeps it too.
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogProblems([f"{where}:{line}: not valid UTF-8 (byte {exc.start}); save it as UTF-8"]) from None


# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _refuse_special(info: os.stat_result, where: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise CatalogProblems([f"{where}: is a folder; pass the catalog file itself (--catalog PATH/catalog.yaml)"])
    if not stat.S_ISREG(info.st_mode):
        raise CatalogProblems(
            [f"{where}: is not a regular file (a pipe, socket or device); save the catalog as a file and pass that"]
        )
    if info.st_size > yamlsafe.MAX_BYTES:
        raise CatalogProblems([_too_big(where, info.st_size)])


def _too_big(where: str, size: int) -> str:
    return f"{where}: {size} bytes is more than the {yamlsafe.MAX_BYTES}-byte limit for a catalog"


def parse(text: str, path: Path) -> Any:
    try:
        return yamlsafe.load(text)
    except YamlProblem as problem:
        where = f"{_display(path)}:{problem.line}:{problem.column}"
        key = _dotted(problem.path)
        raise CatalogProblems([f"{where}: {key + ': ' if key else ''}{problem.message}"]) from None


def build_catalog(data: Any, text: str, path: Path, *, check_files: bool = True) -> Catalog:
    if not isinstance(data, dict):
        raise CatalogProblems([f"{_display(path)}:1:1: the catalog must be a mapping with version and images"])
    try:
        model = CatalogFile.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        shown = errors[:MAX_PROBLEMS]
        spots = yamlsafe.locate_all(text, [tuple(err["loc"]) for err in shown])
        problems = [_describe(err, spots[tuple(err["loc"])], path) for err in shown]
        raise CatalogProblems(problems + _more(len(errors), path)) from None
    root = path.resolve().parent
    found = _semantic_problems(model, root, check_files)
    if found:
        spots = yamlsafe.locate_all(text, [loc for loc, _message in found[:MAX_PROBLEMS]])
        problems = [
            f"{_display(path)}:{line}:{col}: {_dotted(loc)}: {message}"
            for loc, message in found[:MAX_PROBLEMS]
            for line, col in [spots[loc]]
        ]
        raise CatalogProblems(problems + _more(len(found), path))
    images = {name: _resolve(name, spec, model.defaults) for name, spec in model.images.items()}
    releases = {name: tuple(items) for name, items in model.releases.items()}
    return Catalog(path=path, root=root, defaults=model.defaults, images=images, releases=releases)


# Enough to fix a real catalog in one go; a hostile one with millions of problems is not read once per problem.
MAX_PROBLEMS = 50


def _more(total: int, path: Path) -> list[str]:
    if total <= MAX_PROBLEMS:
        return []
    return [f"{_display(path)}:1:1: and {total - MAX_PROBLEMS} more problems not shown; fix these first"]


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
        verify=spec.verify or defaults.verify,
        channels=tuple((spec.channels if spec.channels is not None else defaults.channels or {}).items()),
    )


Problem = tuple[tuple[str | int, ...], str]


def _semantic_problems(model: CatalogFile, root: Path, check_files: bool) -> list[Problem]:
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


# Folders uploaded to the image (`files`) or run on the CI machine (`tests`) are walked for symlinks leading
# out of the repository, up to this many entries; a bigger folder is refused rather than half-checked.
MAX_FOLDER_ENTRIES = 10_000
# Folders of the repository that are no image's input, however a path or a symlink leads there: what they hold
# would be uploaded into an image (`files`), run on the CI machine (`tests`) or run as root (`provision`).
PRIVATE_FOLDERS = {
    ".git": "git's own folder",
    ".stamp": "stamp's state, with the local cloud's SSH key",
    ".venv": "stamp's Python environment",
    "build": "build outputs: Packer templates, logs and results",
}


def check_repo_path(root: Path, relative: str, *, want_dir: bool) -> str | None:
    """Why `relative` is not a usable file (or folder) inside the repository, or None when it is."""
    shown = yamlsafe.show(relative)
    if Path(relative).is_absolute() or "\\" in relative:
        return f"'{shown}' must be a path relative to the repository root"
    if ".." in Path(relative).parts:
        return f"'{shown}' must not leave the repository ('..')"
    target = root / relative
    try:
        resolved = target.resolve(strict=True)
    except (OSError, RuntimeError):
        return f"'{shown}' does not exist (paths are relative to the folder holding catalog.yaml)"
    if not resolved.is_relative_to(root):
        return f"'{shown}' resolves outside the repository (a symlink?)"
    private = _private_folder(root, resolved)
    if private is not None:
        return f"'{shown}' leads into {private}/ ({PRIVATE_FOLDERS[private]}), which stamp never uploads or runs"
    if want_dir and not resolved.is_dir():
        return f"'{shown}' must be a folder"
    if not want_dir and not resolved.is_file():
        return f"'{shown}' must be a file"
    return _escaping_link(root, resolved, shown) if want_dir else None


def _private_folder(root: Path, resolved: Path) -> str | None:
    """The name of the private folder (PRIVATE_FOLDERS) `resolved` is in, or None."""
    parts = resolved.relative_to(root).parts if resolved.is_relative_to(root) else ()
    return parts[0] if parts and parts[0] in PRIVATE_FOLDERS else None


def _escaping_link(root: Path, folder: Path, shown: str) -> str | None:
    """A symlink inside `folder` that leads out of the repository or into a private folder (Packer would upload
    what it points to), or a private folder inside `folder` (the repository root itself, say)."""
    count = 0
    for current, dirs, files in os.walk(folder):  # symlinked folders are listed, not entered
        for entry in (*dirs, *files):
            count += 1
            if count > MAX_FOLDER_ENTRIES:
                return (
                    f"'{shown}' holds more than {MAX_FOLDER_ENTRIES} files and folders; stamp does not upload that many"
                )
            path = Path(current) / entry
            is_link = path.is_symlink()
            real: Path | None = path  # os.walk enters no symlinked folder, so only a symlink can lead elsewhere
            if is_link:
                try:
                    real = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    real = None
                if real is None or not real.is_relative_to(root):
                    link = yamlsafe.show(str(path.relative_to(folder)))
                    return f"'{shown}' holds a symlink leading out of the repository or nowhere: {link}"
            private = _private_folder(root, real) if real is not None else None
            if private is not None:
                link = yamlsafe.show(str(path.relative_to(folder)))
                what = "a symlink leading into" if is_link else "the folder"
                return (
                    f"'{shown}' holds {what} {private}/ ({PRIVATE_FOLDERS[private]}), which stamp never uploads "
                    f"or runs: {link}"
                )
    return None


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


def _describe(err: Mapping[str, Any], spot: tuple[int, int], path: Path) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    line, col = spot
    kind = err["type"]
    value = err.get("input")
    message = str(err["msg"])
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        options = sorted(parent_model.model_fields) if parent_model else []
        message = f"unknown key '{yamlsafe.show(str(loc[-1]))}'{_suggest(str(loc[-1]), options)}"
        if options and "did you mean" not in message:
            message += f" (allowed: {', '.join(options)})"
    elif kind == "string_type" and isinstance(value, int) and not isinstance(value, bool):
        message = (
            'must be a quoted string, e.g. "012345678901": unquoted digits are read as a number and lose leading zeros'
        )
    elif kind == "bool_type" and isinstance(value, str):
        message = (
            f"'{yamlsafe.show(value)}' is not a boolean: write true or false (stamp reads yes, no, on, off as text)"
        )
    elif kind == "string_pattern_mismatch":
        message = f"'{yamlsafe.show(str(value))}' is not valid: {_pattern_help(loc)}"
    elif kind == "missing":
        message = "required key is missing"
    return f"{_display(path)}:{line}:{col}: {_dotted(loc)}: {message}"


def _pattern_help(loc: tuple[str | int, ...]) -> str:
    keys = [k for k in loc if isinstance(k, str)]
    field = keys[-1] if keys else ""
    if len(keys) >= 2 and keys[-2] == "amis":  # the value under a region key
        field = "amis"
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
        "instance_type": "expected an EC2 instance type such as t3.micro",
        "ssh_username": "expected a Linux user name such as admin",
        "built_at": 'expected a UTC time such as "2026-11-26T15:00:00Z"',
        "commit": "expected a git commit hash (6 to 40 lowercase hex digits)",
        "build_id": "expected lowercase letters, digits and dashes",
    }
    return helps.get(field, "see docs/catalog.md for the expected format")


def _model_at(loc: tuple[str | int, ...]) -> type[Model] | None:
    """The pydantic model that validates the mapping at `loc` (for did-you-mean on unknown keys)."""
    from stamp.catalog import models

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
        out += f"[{key}]" if isinstance(key, int) else (f".{yamlsafe.show(key)}" if out else yamlsafe.show(key))
    return out


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python 3.11
        return str(path)
