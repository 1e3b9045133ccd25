"""The ledger of delivered events: the `stamp:notified` tag on a release's AMI in its first region. It lives in the
cloud account like the other tags in docs/custody.md, so a revert of catalog.yaml does not make stamp announce
again what it announced (docs/events.md, Delivery)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.cloud.protocol import Cloud
from stamp.tags import NOTIFIED_TAG, TAG_VALUE_MAX

# Where a release's ledger lives: (region, AMI ID).
Spot = tuple[str, str]


def spot_of(catalog: Catalog, image: str, release: Release) -> Spot:
    """The release's AMI in the first of its image's regions (where Packer built it)."""
    regions = catalog.images[image].regions if image in catalog.images else ()
    region = next((r for r in regions if r in release.amis), min(release.amis))
    return region, release.amis[region]


def continuation(index: int) -> str:
    """The key of the ledger's tag number `index` (0: `stamp:notified`, 1: `stamp:notified-2`, …)."""
    return NOTIFIED_TAG if index == 0 else f"{NOTIFIED_TAG}-{index + 1}"


def keys_of(tags: Mapping[str, str]) -> list[str]:
    """The event keys an AMI's tags hold, in the order they were delivered."""
    keys: list[str] = []
    index = 0
    while continuation(index) in tags:
        keys += [key for key in tags[continuation(index)].split(",") if key]
        index += 1
    return keys


def tags_for(keys: Sequence[str]) -> dict[str, str]:
    """The tags that hold `keys`: comma-separated, each value within EC2's TAG_VALUE_MAX characters."""
    values = [""]
    for key in dict.fromkeys(keys):
        joined = f"{values[-1]},{key}" if values[-1] else key
        if len(joined) <= TAG_VALUE_MAX:
            values[-1] = joined
        else:
            values.append(key)
    return {continuation(index): value for index, value in enumerate(values)}


def read(cloud: Cloud, spots: Iterable[Spot]) -> dict[Spot, list[str] | None]:
    """Each spot's delivered keys, one DescribeImages per region; None where the AMI no longer exists."""
    by_region: dict[str, set[str]] = {}
    for region, ami_id in spots:
        by_region.setdefault(region, set()).add(ami_id)
    found: dict[Spot, list[str] | None] = {}
    for region, ami_ids in sorted(by_region.items()):
        details = cloud.describe_images(region, ami_ids)
        for ami_id in ami_ids:
            image = details.get(ami_id)
            found[(region, ami_id)] = None if image is None else keys_of(image.tags)
    return found


def write(cloud: Cloud, spot: Spot, keys: Sequence[str]) -> None:
    """Replaces the spot's ledger with `keys` (what it held, and what was delivered since)."""
    region, ami_id = spot
    cloud.create_tags(region, [ami_id], tags_for(keys))
