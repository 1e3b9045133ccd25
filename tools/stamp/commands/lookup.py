"""`stamp lookup`: the AMI IDs consumers launch, from the catalog alone (no cloud call)."""

from __future__ import annotations

import argparse

from stamp.catalog.releases import ami_in, launchable_release
from stamp.commands.common import catalog_of
from stamp.output import emit


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    release = launchable_release(catalog, name, args.version)
    amis = release.amis
    if args.region:
        amis = {args.region: ami_in(release, name, args.region)}
    if args.format == "json":
        emit({"image": name, "version": release.version, "status": release.status, "amis": amis})
    elif args.region:
        print(amis[args.region])
    else:
        for region, ami_id in amis.items():
            print(f"{region}\t{ami_id}")
    return 0
