"""The site's view model: what the pages and feeds show, computed once from the catalog (pure, no I/O).

Release notes and pending updates come from outside (the command reads build/): `NotesLookup` gives a
release's notes or why there are none, `Pending` what the last saved plan said (site/pending.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

from stamp import clock
from stamp.catalog.load import Catalog, Image
from stamp.catalog.models import Release
from stamp.catalog.releases import channel_heads, newest_first


@dataclass(frozen=True)
class Upgrade:
    name: str
    arch: str
    old: str
    new: str


@dataclass(frozen=True)
class Cve:
    id: str
    source: str
    version: str


@dataclass(frozen=True)
class Notes:
    """A release against the one before it, from both inventories (as `stamp notes` makes them)."""

    summary: str
    previous: int | None
    kernel_from: str | None
    kernel_to: str
    upgraded: tuple[Upgrade, ...]
    downgraded: tuple[Upgrade, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    cves: tuple[Cve, ...]
    # Source packages whose changelog was not read back to the previous version: CVEs may be missing.
    unread: tuple[str, ...] = ()


# A release's notes, or one line saying why there are none (no inventory kept in build/, a first release).
NotesLookup = Callable[[str, Release], "Notes | str"]

PendingState = Literal["pending", "none", "not_checked"]


@dataclass(frozen=True)
class Pending:
    """Pending package updates of an image's current release, as far as a saved plan tells (site/pending.py)."""

    state: PendingState
    security: int | None = None
    other: int | None = None
    detail: str = "not checked"


NOT_CHECKED = Pending("not_checked", detail="not checked")


@dataclass(frozen=True)
class ReleaseView:
    version: int
    status: str
    built_at: str
    commit: str
    build_id: str
    verified: str
    amis: tuple[tuple[str, str], ...]
    source_image: str | None
    source_version: int | None
    source_amis: tuple[tuple[str, str], ...]
    # When it entered each channel, in the image's channel order.
    channels: tuple[tuple[str, str], ...]
    forced: tuple[tuple[str, str], ...]
    # The channels that point at it now.
    heads: tuple[str, ...]
    reason: str | None
    revoke_at: str | None
    dirty: bool
    sbom_uri: str | None
    sbom_sha256: str | None
    packages: int | None
    notes: Notes | None
    no_notes: str

    @property
    def anchor(self) -> str:
        return f"v{self.version}"

    @property
    def recorded_at(self) -> str:
        """When it was recorded: the time it entered its first channel, else (no channels) when it was built."""
        return self.channels[0][1] if self.channels else self.built_at


@dataclass(frozen=True)
class ChannelView:
    name: str
    after: str | None
    soak_days: int
    head: int | None


@dataclass(frozen=True)
class ShareView:
    accounts: tuple[str, ...]
    organizations: tuple[str, ...]
    organizational_units: tuple[str, ...]
    copy_accounts: tuple[str, ...]
    public: bool

    def summary(self) -> str:
        """`2 accounts, 1 organization`, `public`, or `nobody`."""
        parts = ["public"] if self.public else []
        for count, noun in (
            (len(self.accounts), "account"),
            (len(self.organizations), "organization"),
            (len(self.organizational_units), "OU"),
        ):
            if count:
                parts.append(f"{count} {noun}{'' if count == 1 else 's'}")
        return ", ".join(parts) or "nobody"


Tone = Literal["ok", "warn", "bad", "muted"]


@dataclass(frozen=True)
class Badge:
    label: str
    tone: Tone


@dataclass(frozen=True)
class ImageView:
    name: str
    description: str
    parent: str | None
    children: tuple[str, ...]
    ancestors: tuple[str, ...]  # nearest first
    regions: tuple[str, ...]
    share: ShareView
    channels: tuple[ChannelView, ...]
    current: ReleaseView | None
    releases: tuple[ReleaseView, ...]  # newest first
    age_days: int | None
    max_age_days: int | None
    on_updates: str
    pending: Pending

    @property
    def page(self) -> str:
        return f"images/{self.name}.html"

    @property
    def version_label(self) -> str:
        """`v7`, or `no release`: what the lineage shows under the name."""
        return f"v{self.current.version}" if self.current else "no release"

    @property
    def too_old(self) -> bool:
        return self.age_days is not None and self.max_age_days is not None and self.age_days > self.max_age_days

    def badges(self) -> tuple[Badge, ...]:
        """The image's state at a glance, worst first; `ok` when nothing is wrong."""
        if self.current is None:
            return (Badge("no release", "muted"),)
        found = []
        if self.pending.state == "pending" and self.pending.security:
            found.append(Badge("security updates", "bad"))
        if self.too_old:
            found.append(Badge("too old", "warn"))
        if self.current.dirty:
            found.append(Badge("dirty build", "warn"))
        return tuple(found) or (Badge("ok", "ok"),)


@dataclass(frozen=True)
class SiteModel:
    generated_at: str
    images: tuple[ImageView, ...]  # each root followed by its descendants, depth first
    pending_source: str  # where pending updates were read from, or why they were not

    def image(self, name: str) -> ImageView:
        return self.by_name[name]

    @cached_property
    def by_name(self) -> dict[str, ImageView]:
        return {image.name: image for image in self.images}

    @property
    def release_count(self) -> int:
        return sum(len(image.releases) for image in self.images)


def build_model(
    catalog: Catalog,
    *,
    now: datetime,
    notes: NotesLookup | None = None,
    pending: Mapping[str, Pending] | None = None,
    pending_source: str = "not checked: no saved plan",
) -> SiteModel:
    """Everything the site shows, from `catalog` at `now`; `notes` and `pending` from what build/ holds."""
    children: dict[str, list[str]] = {name: [] for name in catalog.images}
    for name, image in sorted(catalog.images.items()):
        if image.parent is not None and image.parent in children:
            children[image.parent].append(name)
    views = [
        _image(catalog, catalog.images[name], children[name], now, notes, (pending or {}).get(name, NOT_CHECKED))
        for name in tree_order(catalog.images, children)
    ]
    return SiteModel(generated_at=clock.iso(now), images=tuple(views), pending_source=pending_source)


def tree_order(images: Mapping[str, Image], children: Mapping[str, list[str]]) -> list[str]:
    """Each root image (by name) followed by its descendants, depth first: the lineage as a list."""
    ordered: list[str] = []
    stack = sorted((name for name, image in images.items() if image.parent not in images), reverse=True)
    while stack:
        name = stack.pop()
        ordered.append(name)
        stack.extend(reversed(children[name]))
    return ordered


def _image(
    catalog: Catalog,
    image: Image,
    children: list[str],
    now: datetime,
    notes: NotesLookup | None,
    pending: Pending,
) -> ImageView:
    heads = channel_heads(catalog, image.name)
    pointing: dict[int, list[str]] = {}
    for channel, release in heads.items():
        if release is not None:
            pointing.setdefault(release.version, []).append(channel)
    order = [name for name, _ in image.channels]
    releases = tuple(
        _release(image.name, r, order, pointing.get(r.version, []), notes)
        for r in newest_first(catalog.releases.get(image.name, ()))
    )
    current = next((r for r in releases if r.status == "current"), None)
    age = None
    if current is not None:
        built = datetime.strptime(current.built_at, clock.FORMAT).replace(tzinfo=UTC)
        age = max(0, (now - built).days)
    share = image.share
    no_release = Pending("not_checked", detail="not checked: no current release")
    return ImageView(
        name=image.name,
        description=image.description,
        parent=image.parent,
        children=tuple(children),
        ancestors=tuple(catalog.ancestors(image.name)),
        regions=image.regions,
        share=ShareView(
            tuple(share.accounts),
            tuple(share.organizations),
            tuple(share.organizational_units),
            tuple(share.copy_accounts),
            share.public,
        ),
        channels=tuple(
            ChannelView(name, channel.after, channel.soak_days, head.version if (head := heads[name]) else None)
            for name, channel in image.channels
        ),
        current=current,
        releases=releases,
        age_days=age,
        max_age_days=image.rebuild.max_age_days,
        on_updates=image.rebuild.on_updates,
        pending=pending if current is not None else no_release,
    )


def _release(
    image: str, release: Release, channel_order: list[str], heads: list[str], notes: NotesLookup | None
) -> ReleaseView:
    entered = release.channels or {}
    found = notes(image, release) if notes is not None else "release notes were not looked for"
    return ReleaseView(
        version=release.version,
        status=release.status,
        built_at=release.built_at,
        commit=release.commit,
        build_id=release.build_id,
        verified=release.verified,
        amis=tuple(release.amis.items()),
        source_image=release.source.image,
        source_version=release.source.version,
        source_amis=tuple((release.source.amis or {}).items()),
        # Validation keeps a release's channels to its image's, so the image's order covers them all.
        channels=tuple((name, entered[name]) for name in channel_order if name in entered),
        forced=tuple(sorted((release.forced or {}).items())),
        heads=tuple(heads),
        reason=release.reason,
        revoke_at=release.revoke_at,
        dirty=release.dirty,
        sbom_uri=release.sbom.uri if release.sbom else None,
        sbom_sha256=release.sbom.sha256 if release.sbom else None,
        packages=release.packages,
        notes=found if isinstance(found, Notes) else None,
        no_notes=found if isinstance(found, str) else "",
    )
