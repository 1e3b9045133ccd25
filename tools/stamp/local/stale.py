"""Releases whose AMIs the local cloud does not have: a restarted local cloud has lost every AMI built in it.

moto keeps AMIs in memory (docs/facts.md, Packer against moto), so a workspace's catalog can name AMIs that a new
local cloud never saw. `stamp lookup` and `stamp build` warn about them with this wording.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import Cloud
from stamp.errors import CloudError
from stamp.local.cloud import status
from stamp.local.credentials import aws_env


def absent_amis(cloud: Cloud, amis: Mapping[str, str]) -> dict[str, str]:
    """Region -> AMI ID, for the AMIs of `amis` (region -> AMI ID) the cloud does not have."""
    return {region: ami_id for region, ami_id in amis.items() if ami_id not in cloud.describe_images(region, [ami_id])}


def warning(image: str, release: Release, absent: Mapping[str, str]) -> str:
    """The one line saying so, and what brings the AMIs back."""
    amis = ", ".join(f"{ami_id} ({region})" for region, ami_id in absent.items())
    whose = "AMI" if len(absent) == 1 else "AMIs"
    return (
        f"warning: {image} v{release.version}'s {whose} {amis} does not exist in this local cloud (a restarted local"
        f" cloud loses its AMIs): run `stamp release {image}` again"
    )


def release_warnings(cloud: Cloud, wanted: Iterable[tuple[str, Release, str | None]]) -> list[str]:
    """A warning for each (image, release, region) whose AMI the cloud lacks; region None is every region."""
    checks: dict[tuple[str, int], tuple[Release, dict[str, str]]] = {}
    for image, release, region in wanted:
        _release, amis = checks.setdefault((image, release.version), (release, {}))
        amis |= {r: a for r, a in release.amis.items() if region in (None, r)}
    lines: list[str] = []
    for (image, _version), (release, amis) in checks.items():
        absent = absent_amis(cloud, amis)
        if absent:
            lines.append(warning(image, release, absent))
    return lines


def parent_warnings(cloud: Cloud, catalog: Catalog, images: Iterable[str]) -> list[str]:
    """Warnings for the parents' current releases that builds of `images` would start from, in their build region."""
    wanted: list[tuple[str, Release, str | None]] = []
    for name in images:
        image = catalog.images[name]
        release = catalog.current_release(image.parent) if image.parent else None
        if image.parent and release is not None:
            wanted.append((image.parent, release, image.regions[0]))
    return release_warnings(cloud, wanted)


def running_cloud_api(repo_root: Path) -> Cloud | None:
    """The EC2 API of the local cloud running for `repo_root`, or None when none runs (nothing is started)."""
    try:
        found = status(repo_root)
    except CloudError:
        return None
    if found is None:
        return None
    env = aws_env(found)
    return AwsCloud(found.endpoint_url, credentials=(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]))
