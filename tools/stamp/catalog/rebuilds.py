"""Which images to build and why: the plan's reasons, from two catalogs, the changed paths and what the cloud
and the apt indexes say (pure: the lookups are passed in). `stamp plan` (tools/stamp/commands/plan.py) prints it;
docs/contract.md, Plan, is the contract."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel

from stamp import clock
from stamp.catalog.load import Catalog, Image
from stamp.catalog.models import Release, Share
from stamp.catalog.updates import NoInventory, UpdateCheck

ReasonKind = Literal[
    "definition_changed",
    "file_changed",
    "parent_rebuilt",
    "parent_moved",
    "new_source_image",
    "updates_available",
    "release_too_old",
    "no_release",
    "share_changed",
]
# The documented order (docs/contract.md, Plan), so every renderer lists an image's reasons the same way: the
# Literal's own order.
KINDS: tuple[ReasonKind, ...] = get_args(ReasonKind)
LABELS: dict[ReasonKind, str] = {
    "definition_changed": "definition changed",
    "file_changed": "file changed",
    "parent_rebuilt": "parent rebuilt",
    "parent_moved": "parent moved",
    "new_source_image": "new source image",
    "updates_available": "updates available",
    "release_too_old": "release too old",
    "no_release": "no release yet",
    "share_changed": "share changed",
}

# The Image fields a build consumes. `share` is applied by publish, `retention` by prune, and `rebuild` is
# the policy this module evaluates itself: changing any of those must not cost a rebuild.
BUILD_FIELDS: tuple[str, ...] = (
    "description",
    "source",
    "parent",
    "provision",
    "files",
    "tests",
    "regions",
    "instance_type",
    "ssh_username",
    "volume_size_gb",
)
# Of those, the ones an image inherits from `defaults` unless it sets them itself.
INHERITED_FIELDS = frozenset({"regions", "instance_type", "ssh_username", "volume_size_gb"})

# Packer templates every image is rendered from (docs/contract.md, Repository layout): a change there rebuilds
# every image.
TEMPLATES_DIR = "tools/stamp/templates/"

SourceLookup = Callable[[Image, str], str | None]
"""Newest vendor AMI ID matching `image.source.filter` in a region, or None when nothing matches."""

UpdateLookup = Callable[[Image, Release], UpdateCheck | NoInventory]
"""Pending package updates of an image's release, or why they could not be looked at (no inventory)."""


@dataclass(frozen=True)
class Reason:
    kind: ReasonKind
    detail: str
    # Machine-readable parts of the detail for `--format json` (updates_available: counts and examples).
    data: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)

    def text(self) -> str:
        return f"{LABELS[self.kind]}: {self.detail}"


@dataclass(frozen=True)
class ImagePlan:
    """One image to build. `layer` counts its ancestors that are built in the same plan: layer N starts once
    layer N-1 has finished, so a child always builds from its parent's new image."""

    name: str
    layer: int
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class PublishOnly:
    """An image whose sharing changed but whose build inputs did not: `stamp publish` alone applies it."""

    name: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Plan:
    images: tuple[ImagePlan, ...]
    publish_only: tuple[PublishOnly, ...] = ()
    sources_checked: bool = True
    updates_checked: bool = True
    # What the update check could not say: indexes that cannot be verified, images without an inventory, updates
    # the image's rebuild.on_updates leaves for later. Never an "up to date".
    update_notes: tuple[str, ...] = ()

    def order(self) -> list[str]:
        """Images to build, parents first (by layer, then name)."""
        return [p.name for p in self.images]

    def layers(self) -> list[list[str]]:
        grouped: list[list[str]] = []
        for item in self.images:
            while len(grouped) <= item.layer:
                grouped.append([])
            grouped[item.layer].append(item.name)
        return grouped

    def get(self, name: str) -> ImagePlan | None:
        return next((p for p in self.images if p.name == name), None)

    def to_data(self) -> dict[str, Any]:
        return {
            "images": [
                {"name": p.name, "layer": p.layer, "reasons": [_reason_data(r) for r in p.reasons]} for p in self.images
            ],
            "publish_only": [
                {"name": p.name, "reasons": [_reason_data(r) for r in p.reasons]} for p in self.publish_only
            ],
            "order": self.order(),
            "sources_checked": self.sources_checked,
            "updates_checked": self.updates_checked,
            "update_notes": list(self.update_notes),
        }


def plan(
    old: Catalog | None,
    new: Catalog,
    changed_paths: Collection[str],
    *,
    source_lookup: SourceLookup | None,
    now: datetime,
    update_lookup: UpdateLookup | None = None,
) -> Plan:
    """Every reason each image of `new` has to be built.

    `old` is the catalog at the merge base (None when it did not exist there); `changed_paths` are repository
    paths relative to the folder holding the catalog. `source_lookup=None` skips the vendor-image check (no
    cloud credentials, e.g. a pull request from a fork); the plan says so. `update_lookup=None` likewise skips
    the pending-updates check.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    found: dict[str, list[Reason]] = {name: [] for name in new.images}
    notes: list[str] = []
    unread: list[str] = []
    for name, image in new.images.items():
        found[name].extend(definition_reasons(old, new, image))
    for name, paths in images_for_paths(new, changed_paths).items():
        found[name].extend(Reason("file_changed", p) for p in paths)
    for name, image in new.images.items():
        release = new.current_release(name)
        if release is None:
            earlier = new.releases.get(name, ())
            found[name].append(Reason("no_release", "no current release" if earlier else "never released"))
            continue
        found[name].extend(_parent_moved(new, image, release))
        if source_lookup is not None:
            found[name].extend(_source_reasons(image, release.source.amis or {}, source_lookup))
        if update_lookup is not None and image.rebuild.on_updates != "never":
            found[name].extend(_update_reasons(image, release, update_lookup(image, release), notes, unread))
        found[name].extend(_age_reasons(image, release.version, release.built_at, now))
    # Cascade parents first, so a grandchild sees its parent's inherited reason.
    for name in new.topo_order():
        parent = new.images[name].parent
        if parent is not None and found[parent]:
            found[name].append(Reason("parent_rebuilt", parent))
    building = {name for name, reasons in found.items() if reasons}
    images = tuple(
        sorted(
            (ImagePlan(name, _layer(new, name, building), tuple(_sorted(found[name]))) for name in building),
            key=lambda p: (p.layer, p.name),
        )
    )
    if unread:
        notes.append(f"updates not checked for {_count_images(len(unread))} without an inventory: {_some(unread)}")
    return Plan(
        images=images,
        publish_only=_publish_only(old, new, building),
        sources_checked=source_lookup is not None,
        updates_checked=update_lookup is not None,
        update_notes=tuple(notes),
    )


def images_for_paths(catalog: Catalog, changed_paths: Iterable[str]) -> dict[str, list[str]]:
    """For each image, the changed paths its build uses: its scripts, files and tests folders, the templates."""
    changed = sorted({posixpath.normpath(p) for p in changed_paths})
    found: dict[str, list[str]] = {}
    for name, image in catalog.images.items():
        # normpath: a catalog may say `./images/web/files/`, while git reports `images/web/files/index.html`.
        used = [posixpath.normpath(p) for p in image.paths]
        hits = [p for p in changed if p.startswith(TEMPLATES_DIR) or any(p == u or p.startswith(u + "/") for u in used)]
        if hits:
            found[name] = hits
    return found


def definition_reasons(old: Catalog | None, new: Catalog, image: Image) -> list[Reason]:
    before = old.images.get(image.name) if old is not None else None
    if old is None or before is None:
        return [Reason("definition_changed", f"images.{image.name} is new")]
    reasons: list[Reason] = []
    # Resolved values are compared, so reformatting, reordering keys or spelling out a default changes nothing;
    # a defaults key the image overrides leaves its resolved value, and so the image, alone.
    for attr in BUILD_FIELDS:
        was, now_is = getattr(before, attr), getattr(image, attr)
        if was == now_is:
            continue
        default_was = getattr(old.defaults, attr, None)
        default_is = getattr(new.defaults, attr, None)
        inherited = (
            attr in INHERITED_FIELDS
            and default_was != default_is
            and _same(default_was, was)
            and _same(default_is, now_is)
        )
        where = f"defaults.{attr}" if inherited else f"images.{image.name}.{attr}"
        change = _change(was, now_is)
        reasons.append(Reason("definition_changed", f"{where}{change}" + (" (inherited)" if inherited else "")))
    return reasons


def _parent_moved(catalog: Catalog, image: Image, release: Release) -> list[Reason]:
    """The child's current release stands on a parent release that is no longer the parent's current one (a
    rollback or revocation of the parent, or a child build that failed after the parent's): consumers get the
    parent's current release, so the child is rebuilt on it."""
    source = release.source
    if image.parent is None or source.image != image.parent or source.version is None:
        return []
    parent = catalog.current_release(image.parent)
    if parent is None or parent.version == source.version:
        return []
    return [
        Reason(
            "parent_moved",
            f"v{release.version} is built on {image.parent} v{source.version}; {image.parent}'s current release is "
            f"v{parent.version}",
        )
    ]


def _source_reasons(image: Image, built_from: dict[str, str], lookup: SourceLookup) -> list[Reason]:
    if image.source is None or not image.rebuild.on_new_source:
        return []
    reasons = []
    for region in image.regions:
        current = built_from.get(region)
        if current is None:
            # A region the release was not built in: the regions change is already a definition reason.
            continue
        newest = lookup(image, region)
        if newest is not None and newest != current:
            reasons.append(Reason("new_source_image", f"{region}: {current} → {newest}"))
    return reasons


def _update_reasons(
    image: Image, release: Release, check: UpdateCheck | NoInventory, notes: list[str], unread: list[str]
) -> list[Reason]:
    """`updates available` when the pending updates meet the image's rebuild.on_updates; what is pending but
    below it, every index that cannot be verified and every stored inventory that cannot be read go to `notes`."""
    if isinstance(check, NoInventory):
        if check.stored:
            notes.append(f"{image.name} v{release.version}: updates not checked: {check.why}")
        else:
            unread.append(f"{image.name} v{release.version}")
        return []
    notes.extend(f"{image.name}: {u.text()}" for u in check.unverified)
    policy = image.rebuild.on_updates
    wanted = check.updates if policy == "all" else check.security
    if not wanted:
        if check.updates:
            notes.append(f"{image.name}: {check.summary()} pending (rebuild.on_updates: {policy})")
        return []
    data = {
        "security": len(check.security),
        "other": len(check.other),
        "examples": {"security": check.examples(security=True), "other": check.examples(security=False)},
        # Every one, for the drift pull request's body (format_markdown lists them).
        "updates": [
            {"name": u.name, "arch": u.arch, "installed": u.installed, "available": u.available, "security": u.security}
            for u in wanted
        ],
    }
    return [Reason("updates_available", check.summary(), data)]


def _count_images(number: int) -> str:
    return f"{number} image{'s' if number != 1 else ''}"


def _some(items: Sequence[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _age_reasons(image: Image, version: int, built_at: str, now: datetime) -> list[Reason]:
    limit = image.rebuild.max_age_days
    if limit is None:
        return []
    built = datetime.strptime(built_at, clock.FORMAT).replace(tzinfo=UTC)
    age = now - built
    if age <= timedelta(days=limit):
        return []
    return [Reason("release_too_old", f"v{version} built {built_at}, {age.days} days ago (max_age_days: {limit})")]


def _publish_only(old: Catalog | None, new: Catalog, building: set[str]) -> tuple[PublishOnly, ...]:
    if old is None:
        return ()
    found: list[PublishOnly] = []
    for name in sorted(set(new.images) - building):
        before = old.images.get(name)
        if before is None:
            continue
        # defaults.allow_public needs no check of its own: a catalog sharing publicly has it on both sides.
        reasons = [Reason("share_changed", d) for d in _share_changes(before.share, new.images[name].share)]
        if reasons:
            found.append(PublishOnly(name, tuple(reasons)))
    return tuple(found)


def _share_changes(before: Share, after: Share) -> list[str]:
    changes: list[str] = []
    for attr in Share.model_fields:
        was, now_is = getattr(before, attr), getattr(after, attr)
        if was == now_is:
            continue
        if isinstance(was, list) and isinstance(now_is, list):
            added = [f"+{v}" for v in now_is if v not in was]
            removed = [f"-{v}" for v in was if v not in now_is]
            # Same members, new order: a reviewer still sees the line move, and publish is harmless.
            changes.append(f"share.{attr}: {' '.join(added + removed) or 'reordered'}")
        else:
            changes.append(f"share.{attr}: {_show(was)} → {_show(now_is)}")
    return changes


def _layer(catalog: Catalog, name: str, building: set[str]) -> int:
    return sum(1 for ancestor in catalog.ancestors(name) if ancestor in building)


def _sorted(reasons: Iterable[Reason]) -> list[Reason]:
    # Stable within a kind: details keep the order they were found in (field order, sorted paths, regions).
    return sorted(reasons, key=lambda r: KINDS.index(r.kind))


def _same(a: object, b: object) -> bool:
    # Defaults hold lists where a resolved Image holds tuples.
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return tuple(a) == tuple(b)
    return a == b


def _change(was: object, now_is: object) -> str:
    if _scalar(was) and _scalar(now_is):
        return f": {_show(was)} → {_show(now_is)}"
    return " changed"


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _show(value: object) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _reason_data(reason: Reason) -> dict[str, object]:
    return {"kind": reason.kind, "detail": reason.detail, **reason.data}
