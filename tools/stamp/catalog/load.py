"""Loads `catalog.yaml` into frozen, fully resolved images; every problem names file, line and key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from stamp.catalog import yamlsafe
from stamp.catalog.consistency import semantic_problems
from stamp.catalog.file_reading import read_text
from stamp.catalog.models import (
    CatalogFile,
    Channel,
    Defaults,
    ImageSpec,
    Rebuild,
    Release,
    Retention,
    Share,
    Source,
    VerifyPolicy,
)
from stamp.catalog.problem_text import describe, display, dotted, suggest
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
                f"no image named '{yamlsafe.show(unknown[0])}' in {self.path}{suggest(unknown[0], self.images)}",
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


def parse(text: str, path: Path) -> Any:
    try:
        return yamlsafe.load(text)
    except YamlProblem as problem:
        where = f"{display(path)}:{problem.line}:{problem.column}"
        key = dotted(problem.path)
        raise CatalogProblems([f"{where}: {key + ': ' if key else ''}{problem.message}"]) from None


def build_catalog(data: Any, text: str, path: Path, *, check_files: bool = True) -> Catalog:
    if not isinstance(data, dict):
        raise CatalogProblems([f"{display(path)}:1:1: the catalog must be a mapping with version and images"])
    try:
        model = CatalogFile.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        shown = errors[:MAX_PROBLEMS]
        spots = yamlsafe.locate_all(text, [tuple(err["loc"]) for err in shown])
        problems = [describe(err, spots[tuple(err["loc"])], path) for err in shown]
        raise CatalogProblems(problems + _more(len(errors), path)) from None
    root = path.resolve().parent
    found = semantic_problems(model, root, check_files)
    if found:
        spots = yamlsafe.locate_all(text, [loc for loc, _message in found[:MAX_PROBLEMS]])
        problems = [
            f"{display(path)}:{line}:{col}: {dotted(loc)}: {message}"
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
    return [f"{display(path)}:1:1: and {total - MAX_PROBLEMS} more problems not shown; fix these first"]


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
