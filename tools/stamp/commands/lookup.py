"""`stamp lookup`: the AMI IDs consumers launch, from the catalog alone (no cloud call)."""

from __future__ import annotations

import argparse

from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import ami_in, launchable_release
from stamp.commands.common import catalog_of
from stamp.errors import CloudError
from stamp.output import emit, say


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    channel = getattr(args, "channel", None)
    release = launchable_release(catalog, name, args.version, channel=channel)
    amis = release.amis
    if args.region:
        amis = {args.region: ami_in(release, name, args.region)}
    if args.cloud == "local":
        warn_if_absent(catalog, name, release, args.region)
    if args.format == "json":
        found = {"image": name, "version": release.version, "status": release.status, "amis": amis}
        emit(found | ({"channel": channel} if channel else {}))
    elif args.region:
        print(amis[args.region])
    else:
        for region, ami_id in amis.items():
            print(f"{region}\t{ami_id}")
    return 0


def warn_if_absent(catalog: Catalog, name: str, release: Release, region: str | None) -> None:
    """--cloud local: a restarted local cloud has lost the AMIs a workspace's catalog names; say so on stderr.

    Only a running local cloud is asked: lookup starts nothing, and without one the catalog alone answers.
    """
    from stamp.local.stale import release_warnings, running_cloud_api

    api = running_cloud_api(catalog.root)
    if api is None:
        return
    try:
        for line in release_warnings(api, [(name, release, region)]):
            say(line)
    except CloudError:
        return  # the check is a courtesy: the answer comes from the catalog either way
