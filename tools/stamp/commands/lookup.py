"""`stamp lookup`: the AMI IDs consumers launch, from the catalog alone (no cloud call)."""

from __future__ import annotations

import argparse

from stamp.commands.common import catalog_of
from stamp.errors import CatalogError
from stamp.output import emit


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    releases = catalog.releases.get(name, ())
    if args.version is not None:
        release = next((r for r in releases if r.version == args.version), None)
        if release is None:
            raise CatalogError(f"image '{name}' has no release {args.version}", hint="see `releases:` in the catalog")
        if release.status == "revoked":
            raise CatalogError(f"{name} release {args.version} is revoked: {release.reason or 'no reason given'}")
    else:
        release = catalog.current_release(name)
        if release is None:
            raise CatalogError(f"image '{name}' has no current release", hint=f"run `stamp release {name}`")
    amis = release.amis
    if args.region:
        if args.region not in amis:
            raise CatalogError(
                f"{name} release {release.version} has no AMI in {args.region}",
                hint="regions: " + ", ".join(sorted(amis)),
            )
        amis = {args.region: amis[args.region]}
    if args.format == "json":
        emit({"image": name, "version": release.version, "status": release.status, "amis": amis})
    elif args.region:
        print(amis[args.region])
    else:
        for region, ami_id in amis.items():
            print(f"{region}\t{ami_id}")
    return 0
