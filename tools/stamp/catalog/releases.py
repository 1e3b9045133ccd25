"""Finding and ordering an image's releases: the one place `lookup`, `launch`, the lifecycle and rollout ask."""

from __future__ import annotations

from collections.abc import Iterable

from stamp.catalog.load import Catalog
from stamp.catalog.models import Channel, Release
from stamp.errors import CatalogError, UsageError

# Statuses retention counts: launchable releases that are not on their way out.
RETAINED = frozenset({"current", "previous"})


def newest_first(releases: Iterable[Release]) -> list[Release]:
    return sorted(releases, key=lambda r: r.version, reverse=True)


def age(release: Release) -> tuple[str, int]:
    # When a build started orders releases (an older build recorded late gets a higher version); the
    # version breaks ties.
    return (release.built_at, release.version)


def find_release(catalog: Catalog, image: str, version: int) -> Release:
    release = next((r for r in catalog.releases.get(image, ()) if r.version == version), None)
    if release is None:
        versions = ", ".join(str(r.version) for r in newest_first(catalog.releases.get(image, ()))) or "none"
        raise CatalogError(f"image '{image}' has no release {version}", hint=f"its releases: {versions}")
    return release


def launchable_release(
    catalog: Catalog, image: str, version: int | None = None, *, channel: str | None = None
) -> Release:
    """What consumers launch: the current release, release `version` unless it is revoked, or what `channel`
    points at (channel_release)."""
    if channel is not None:
        if version is not None:
            raise UsageError("--channel and --version name a release each: pass one of them")
        return channel_release_or_error(catalog, image, channel)
    if version is None:
        release = catalog.current_release(image)
        if release is None:
            raise CatalogError(f"image '{image}' has no current release", hint=f"run `stamp release {image}`")
        return release
    release = find_release(catalog, image, version)
    if release.status == "revoked":
        raise CatalogError(f"{image} release {version} is revoked: {release.reason or 'no reason given'}")
    return release


def ami_in(release: Release, image: str, region: str) -> str:
    """The release's AMI in `region`, or a CatalogError naming the regions it has."""
    if region not in release.amis:
        raise CatalogError(
            f"{image} release {release.version} has no AMI in {region}",
            hint="regions: " + ", ".join(sorted(release.amis)),
        )
    return release.amis[region]


# -- rollout channels (docs/rollout.md) --------------------------------------------------------------------


def channels_of(catalog: Catalog, image: str) -> dict[str, Channel]:
    """The image's channels in order (`channels`, else `defaults.channels`); empty when it has none."""
    found = catalog.images.get(image)
    return dict(found.channels) if found is not None else {}


def entered(release: Release, channel: str) -> str | None:
    """When the release entered `channel` (the time written in its `channels:`), or None if it is not in it."""
    return (release.channels or {}).get(channel)


def channel_head(releases: Iterable[Release], channel: str) -> Release | None:
    """The release a channel points at: the newest one in it that is not revoked and not newer than the current
    release. A release newer than the current one is one a rollback moved away from (see `next_current` in
    tools/stamp/commands/revoke.py), so a channel falls back with the rollback; it falls back past revocations too.
    """
    items = list(releases)
    current = next((r for r in items if r.status == "current"), None)
    members = [
        r
        for r in items
        if r.status != "revoked" and entered(r, channel) is not None and (current is None or age(r) <= age(current))
    ]
    return max(members, key=age, default=None)


def channel_release(catalog: Catalog, image: str, channel: str) -> Release | None:
    return channel_head(catalog.releases.get(image, ()), channel)


def channel_heads(catalog: Catalog, image: str) -> dict[str, Release | None]:
    """Every channel of the image, in order, with the release it points at (None: no good release in it)."""
    return {name: channel_release(catalog, image, name) for name in channels_of(catalog, image)}


def check_channel(catalog: Catalog, image: str, channel: str) -> Channel:
    """The channel's settings, or a CatalogError naming the image's channels."""
    channels = channels_of(catalog, image)
    if channel not in channels:
        raise CatalogError(
            f"image '{image}' has no channel '{channel}'",
            hint=f"its channels: {', '.join(channels)}"
            if channels
            else "define defaults.channels (or channels: on the image) first; see docs/rollout.md",
        )
    return channels[channel]


def channel_release_or_error(catalog: Catalog, image: str, channel: str) -> Release:
    check_channel(catalog, image, channel)
    release = channel_release(catalog, image, channel)
    if release is None:
        raise CatalogError(
            f"image '{image}' has no good release in channel '{channel}'",
            hint=f"promote one (`stamp promote {image} --to {channel}`), or record a new build",
        )
    return release
