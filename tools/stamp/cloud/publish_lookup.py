"""Publish's phase 1, reads only, per region: which release AMIs are ready (waiting for pending ones), which
are refused (revoked, or on the default aws/ebs key), the parameters as they are, and what a full publish
finds of images that left the catalog."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from stamp.catalog.load import Catalog
from stamp.cloud.protocol import Cloud, ImageDetails, KmsKey, Parameter, ShareSet
from stamp.cloud.publish_policy import LAUNCHABLE, REMOVED, ShareTarget, channel_parameter_name, parameter_name
from stamp.errors import CloudError
from stamp.tags import IMAGE_TAG, REVOKED_TAG

# The AWS managed key EBS uses when no other key is named. Snapshots encrypted with it cannot be shared, and
# neither can an AMI backed by them: its key policy cannot be changed to let another account decrypt:
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html
DEFAULT_EBS_KEY_ALIAS = "alias/aws/ebs"


@dataclass
class Lookup:
    """Phase 1 for one region: the AMIs that are ready, the parameters, and what is refused or failed."""

    ready: dict[str, ImageDetails] = field(default_factory=dict)
    parameters: dict[str, Parameter] = field(default_factory=dict)
    missing: list[ShareTarget] = field(default_factory=list)
    # The AMIs and parameters of images that left the catalog (full publish only).
    removed: list[ShareTarget] = field(default_factory=list)
    removed_parameters: list[str] = field(default_factory=list)
    # Channel parameters to delete: their channel has no good release left.
    emptied: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RemovedScan:
    """What a full publish needs to find the images that left the catalog: its image names, the versions its
    `releases:` still records for the others, and every region either names."""

    images: frozenset[str]
    versions: Mapping[str, int]
    parameters: frozenset[str]
    regions: frozenset[str]
    # The default rollout channels: a removed image's channel parameters go with it.
    channels: tuple[str, ...] = ()

    def parameters_of(self, image: str) -> set[str]:
        return {parameter_name(image)} | {channel_parameter_name(image, channel) for channel in self.channels}

    @classmethod
    def of(cls, catalog: Catalog) -> RemovedScan:
        gone = {name: releases for name, releases in catalog.releases.items() if name not in catalog.images}
        regions = {region for image in catalog.images.values() for region in image.regions}
        regions |= {region for releases in catalog.releases.values() for r in releases for region in r.amis}
        channels = tuple(catalog.defaults.channels or {})
        return cls(
            images=frozenset(catalog.images),
            versions={ami_id: r.version for releases in gone.values() for r in releases for ami_id in r.amis.values()},
            parameters=frozenset(
                {parameter_name(name) for name in gone}
                | {channel_parameter_name(name, channel) for name in gone for channel in channels}
            ),
            regions=frozenset(regions),
            channels=channels,
        )


def look_up(
    cloud: Cloud,
    region: str,
    targets: Sequence[ShareTarget],
    wait_timeout: float,
    removed: RemovedScan | None,
    emptied: Collection[str] = (),
) -> Lookup:
    lookup = Lookup()
    found = cloud.describe_images(region, {t.ami_id for t in targets})
    for target in targets:
        details = found.get(target.ami_id)
        launchable = target.status in LAUNCHABLE
        # Wait only where waiting can help: a pending AMI becomes available or failed; a current release's AMI
        # that reads not found may be too new to be visible yet, while an older one is most likely deregistered.
        if (details is None and target.status == "current") or (
            details is not None and details.state == "pending" and launchable
        ):
            try:
                details = cloud.wait_until_available(region, target.ami_id, timeout=wait_timeout)
            except CloudError as exc:
                if details is None and cloud.describe_image(region, target.ami_id) is None:
                    lookup.missing.append(target)
                else:
                    lookup.failures[target.ami_id] = exc.message
                continue
        if details is None:
            lookup.missing.append(target)
        elif details.state != "available" and launchable:
            reason = f": {details.state_reason}" if details.state_reason else ""
            lookup.failures[target.ami_id] = f"AMI {target.ami_id} is {details.state}{reason}; it cannot be shared"
        else:
            lookup.ready[target.ami_id] = details
            if REVOKED_TAG in details.tags and (target.shared or target.parameter or target.channels):
                lookup.revoked.append(
                    f"{target.name}: AMI {target.ami_id} is tagged {REVOKED_TAG}={details.tags[REVOKED_TAG]!r}, "
                    f"but the catalog has it {target.status}"
                )
    check_encryption(cloud, region, [t for t in targets if t.shared and t.ami_id in lookup.ready], lookup)
    names = {t.parameter for t in targets if t.parameter} | {n for t in targets for n in t.channels} | set(emptied)
    if names:
        lookup.parameters = cloud.get_parameters(region, names)
    lookup.emptied = sorted(n for n in emptied if n in lookup.parameters)
    if removed is not None:
        find_removed(cloud, region, removed, lookup)
    return lookup


def find_removed(cloud: Cloud, region: str, scan: RemovedScan, lookup: Lookup) -> None:
    names: set[str] = set(scan.parameters)
    for ami_id, details in sorted(cloud.own_images_tagged(region, IMAGE_TAG).items()):
        image = details.tags[IMAGE_TAG]
        if image in scan.images or details.state != "available":
            continue
        target = ShareTarget(image, scan.versions.get(ami_id, 0), REMOVED, region, ami_id, ShareSet(), ShareSet(), None)
        lookup.removed.append(target)
        lookup.ready[ami_id] = details
        names |= scan.parameters_of(image)
    if names:
        lookup.removed_parameters = sorted(cloud.get_parameters(region, names))


def check_encryption(cloud: Cloud, region: str, targets: Sequence[ShareTarget], lookup: Lookup) -> None:
    """Refuses AMIs whose snapshots use the default aws/ebs key; notes the ones on a customer managed key."""
    owners: dict[str, list[ShareTarget]] = {}
    for target in targets:
        details = lookup.ready[target.ami_id]
        for snapshot_id in details.snapshot_ids:
            # DescribeImages reports `Encrypted` per snapshot on AWS, so unencrypted images cost no extra call;
            # where it says nothing (moto), DescribeSnapshots tells.
            if details.snapshot_encrypted.get(snapshot_id) is not False:
                owners.setdefault(snapshot_id, []).append(target)
    if not owners:
        return
    snapshots = cloud.describe_snapshots(region, owners)
    keys: dict[str, KmsKey | None] = {}
    default_key: list[KmsKey | None] = []

    def is_default(key: KmsKey) -> bool:
        # AWS marks its managed keys (aws/ebs among them) KeyManager AWS; moto makes aws/ebs a customer key, so
        # the alias is compared as well.
        if key.key_manager == "AWS":
            return True
        if not default_key:
            default_key.append(cloud.describe_kms_key(region, DEFAULT_EBS_KEY_ALIAS))
        return default_key[0] is not None and default_key[0].arn == key.arn

    noted: set[tuple[str, str]] = set()
    for snapshot_id, snapshot in sorted(snapshots.items()):
        if not snapshot.encrypted:
            continue
        for target in owners[snapshot_id]:
            where = f"{target.name}: AMI {target.ami_id}, snapshot {snapshot_id}"
            if snapshot.kms_key_id is None:
                lookup.refusals.append(f"{where} is encrypted, but EC2 names no KMS key for it")
                continue
            if snapshot.kms_key_id not in keys:
                keys[snapshot.kms_key_id] = cloud.describe_kms_key(region, snapshot.kms_key_id)
            key = keys[snapshot.kms_key_id]
            if key is None:
                lookup.refusals.append(
                    f"{where} is encrypted with KMS key {snapshot.kms_key_id}, which stamp cannot find"
                )
            elif is_default(key):
                lookup.refusals.append(f"{where} is encrypted with the default key {DEFAULT_EBS_KEY_ALIAS} ({key.arn})")
            elif (target.image, key.arn) not in noted:
                noted.add((target.image, key.arn))
                lookup.notes.append(
                    f"{target.name}: snapshots are encrypted with KMS key {key.arn}; its key policy must let the "
                    "consumers use it (kms:Decrypt, kms:DescribeKey, kms:CreateGrant, kms:ReEncrypt*; organization "
                    "and OU consumers through aws:PrincipalOrgID or aws:PrincipalOrgPaths), or launches will fail"
                )
