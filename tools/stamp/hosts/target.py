"""The composition root: picks the target a command runs on, AWS through the credential chain or the local cloud."""

from __future__ import annotations

import re
import sys

from stamp import local
from stamp.catalog.load import Catalog
from stamp.cloud.aws import AwsCloud
from stamp.hosts.base import CloudKind, Target
from stamp.hosts.ec2 import Ec2Target
from stamp.hosts.local import LocalTarget
from stamp.local.credentials import BUILTIN_KEYS
from stamp.local.state_file import state_root

# Owner aliases have no account ID a seed could carry; these are the ones AWS answers for them.
_ALIAS_OWNERS = {"amazon": "137112412989", "aws-marketplace": "679593333241", "self": "123456789012"}


def seeds_for(catalog: Catalog) -> list[local.SeedImage]:
    """One vendor image per distinct source filter, named so the filter matches it (docs/contract.md, Local cloud)."""
    seeds: dict[tuple[str, str], local.SeedImage] = {}
    for image in catalog.images.values():
        if image.source is None:
            continue
        pattern = image.source.filter.name
        owner = image.source.filter.owners[0]
        owner_id = _ALIAS_OWNERS.get(owner, owner)
        name = re.sub(r"\?", "0", pattern.replace("*", "20261101-1234"))
        seeds[(name, owner_id)] = local.SeedImage(
            name=name,
            owner_id=owner_id,
            creation_date="2026-11-01T12:34:00.000Z",
            description=f"local stand-in for the vendor image matching {pattern}",
        )
    return list(seeds.values())


def target_for(kind: CloudKind, catalog: Catalog) -> Target:
    """The cloud named by `--cloud`; the local one is started, or reused, with seeds matching the catalog."""
    if kind == "aws":
        return Ec2Target(AwsCloud(None))
    if local.status(catalog.root) is None:
        if (state_root(catalog.root) / "state.json").is_file():
            # moto keeps everything in memory: a cloud whose server died has lost every AMI built in it.
            print(
                "local cloud: the one recorded in .stamp/local/state.json has stopped (its moto server is gone), "
                "and every AMI built in it with it; starting a new one. Build again what you need "
                "(`stamp release IMAGE…`); `stamp local down` clears the old state.",
                file=sys.stderr,
            )
        print("local cloud: starting (moto server, container engine, base image)…", file=sys.stderr)
    cloud = local.up(catalog.root, seeds_for(catalog))
    env = local.aws_env(cloud)
    keys = (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    own = BUILTIN_KEYS
    admin = AwsCloud(cloud.endpoint_url, credentials=own) if keys != own else None
    return LocalTarget(AwsCloud(cloud.endpoint_url, credentials=keys), local=cloud, env=env, admin=admin)


def target_class(kind: CloudKind) -> type[Target]:
    """The class of `--cloud KIND`, for what it allows before anything is started (see Target's class flags)."""
    return TARGETS[kind]


TARGETS: dict[CloudKind, type[Target]] = {"aws": Ec2Target, "local": LocalTarget}
