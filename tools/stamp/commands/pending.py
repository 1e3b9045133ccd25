"""Pending package updates of images, for two users:
the `updates available` reason of `stamp plan` (docs/inventory.md, Updates available),
the security gate of `stamp verify` (docs/inventory.md, The security gate)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from stamp.catalog import inventory as inv
from stamp.catalog.load import Catalog, Image
from stamp.catalog.models import Release
from stamp.catalog.updates import NoInventory, UpdateCheck
from stamp.cloud.protocol import Cloud
from stamp.commands.notes import Fetch, load_inventory, s3_fetch
from stamp.drivers.aptrepo import AptIndexes


def keyrings(catalog: Catalog) -> list[Path]:
    """`defaults.apt_keyrings`, relative paths from the catalog's folder."""
    return [catalog.root / path for path in catalog.defaults.apt_keyrings]


def update_lookup(
    catalog: Catalog, build_root: Path, cloud: Callable[[], Cloud] | None, *, indexes: AptIndexes | None = None
) -> Callable[[Image, Release], UpdateCheck | NoInventory]:
    """The plan's update check: each release's inventory (from `build_root`, else from S3 through `cloud`, asked
    for only then) against the indexes of its apt sources, every index read once for the whole plan."""
    indexes = indexes or AptIndexes(keyrings(catalog))
    # One cloud for every image, made on the first fetch S3 is needed for.
    cloud_once = functools.cache(cloud) if cloud is not None else None

    def fetch_for(image: Image) -> Fetch | None:
        if cloud_once is None:
            return None
        make = cloud_once
        return lambda uri: s3_fetch(make(), image.regions[0])(uri)

    def lookup(image: Image, release: Release) -> UpdateCheck | NoInventory:
        fetch = fetch_for(image)
        found = load_inventory(build_root, image.name, release, fetch=fetch)
        if isinstance(found, str):
            return NoInventory(found, stored=fetch is not None and release.sbom is not None)
        if not found.sources:
            return NoInventory(f"{found.packager} image without apt sources")
        return indexes.check(found)

    return lookup


def security_gate(catalog: Catalog, image: Image, inventory: inv.Inventory) -> list[str]:
    """Why a verified build is not golden yet: more security updates pending than `verify.max_security_updates`
    allows, or a security index that cannot be verified. Empty when it passes (or the gate is off)."""
    allowed = image.verify.max_security_updates
    if allowed is None or not inventory.sources:
        return []
    check = AptIndexes(keyrings(catalog)).check(inventory, security_only=True)
    problems = [f"stamp::security-updates: {u.text()}" for u in check.unverified]
    if len(check.security) > allowed:
        pending = ", ".join(u.text() for u in check.security)
        problems.append(
            f"stamp::security-updates: {len(check.security)} pending (verify.max_security_updates: {allowed}):"
            f" {pending}"
        )
    return problems
