"""Finding and ordering an image's releases: the one place `lookup`, `launch` and the lifecycle ask."""

from __future__ import annotations

from collections.abc import Iterable

from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.errors import CatalogError

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


def launchable_release(catalog: Catalog, image: str, version: int | None = None) -> Release:
    """What consumers launch: the current release, or release `version` unless it is revoked."""
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
