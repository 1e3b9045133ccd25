"""`stamp usage` over 20 regions x 10 consumer accounts on a moto server: the API calls it makes against the
fewest that can answer, and its wall time against the same work one call at a time, with modelled latency."""

from __future__ import annotations

import json
from pathlib import Path

import publish_setup

from stamp.catalog.load import Catalog, load_catalog
from stamp.cloud.aws import AwsCloud
from stamp.cloud.consumers import reach
from stamp.commands.usage import collect, places

ACCOUNTS = [f"{100000000000 + n * 11111:012d}" for n in range(1, 11)]
IMAGES = 5


def catalog(root: Path, amis: dict[str, dict[str, str]], regions: list[str]) -> Catalog:
    """Every image shared with the ten consumer accounts, each with its one release."""
    base = publish_setup.publish_catalog(root, amis, regions, {"accounts": ACCOUNTS})
    document = json.loads((root / "publish-catalog.yaml").read_text())
    document["defaults"]["consumers"] = {"role": "arn:aws:iam::{account}:role/stamp-consumer"}
    path = root / "usage-catalog.yaml"
    path.write_text(json.dumps(document) + "\n", encoding="utf-8")
    assert base.images
    return load_catalog(path, check_files=False)


def minimum_calls(regions: int, accounts: int, amis_per_region: int) -> int:
    """GetCallerIdentity once, AssumeRole per consumer account; per account and region one page each of
    DescribeLaunchTemplateVersions and DescribeAutoScalingGroups, and DescribeInstances per 100 AMI IDs."""
    places = (accounts + 1) * regions
    return 1 + accounts + places * (2 + -(-amis_per_region // 100))


def run_usage(found: Catalog, cloud: AwsCloud, *, workers: int) -> int:
    """One `stamp usage` of every image; the users it found. The consumer accounts' clients come from the
    publishing cloud's session, so its modelled latency applies to them too."""
    names = list(found.images)
    own = cloud.account_id()
    looked_for = places(found, names, own)
    clouds = reach(cloud, found, list(looked_for), own=own, workers=workers)
    report = collect(found, names, clouds, looked_for, workers=workers)
    assert not report.unread, report.unread
    return len(report.uses)
