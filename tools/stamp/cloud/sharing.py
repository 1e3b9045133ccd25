"""Publishing: reconciles launch permissions, snapshot permissions and SSM parameters to exactly the catalog's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stamp.catalog.load import Catalog, Image
from stamp.catalog.releases import channel_heads
from stamp.cloud.protocol import Cloud, ImageDetails, KmsKey, Parameter, ShareDiff, ShareSet
from stamp.errors import (
    CatalogError,
    CloudError,
    PolicyError,
    PublishFailed,
)
from stamp.tags import IMAGE_TAG, REVOKED_TAG

# EC2 refuses more than 1,000 launch-permission entities per AMI and region (an org or OU counts as one):
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html
MAX_SHARE_ENTITIES = 1000

LAUNCHABLE = frozenset({"current", "previous", "deprecated"})

# The status publish gives the AMIs of an image no longer under `images:`: they lose every permission.
REMOVED = "removed"

# The AWS managed key EBS uses when no other key is named. Snapshots encrypted with it cannot be shared, and
# neither can an AMI backed by them: its key policy cannot be changed to let another account decrypt:
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html
DEFAULT_EBS_KEY_ALIAS = "alias/aws/ebs"

# How long publish waits for a release's AMI that reads `pending`, or (for the current release) not found: a new
# AMI can be invisible to DescribeImages for a while (eventual consistency), and a copy stays pending until done:
# https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
WAIT_TIMEOUT = 120.0


def parameter_name(image: str) -> str:
    return f"/stamp/{image}/current"


def channel_parameter_name(image: str, channel: str) -> str:
    """The parameter consumers of one rollout channel follow (docs/rollout.md)."""
    return f"/stamp/{image}/channel/{channel}"


def desired_share(image: Image, *, allow_public: bool) -> ShareSet:
    """The launch permissions the catalog asks for; public only with both the image's and the catalog's consent."""
    share = image.share
    if share.public and not allow_public:
        raise PolicyError(
            f"image '{image.name}' asks for public sharing (share.public: true), but defaults.allow_public is not true",
            hint="public images need both settings, so the change is visible in review; remove share.public or "
            "set defaults.allow_public: true in catalog.yaml",
        )
    # Copying a shared AMI needs launch permission as well as snapshot access, so copy_accounts get both:
    # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/CopyingAMIs.html#copy-ami-permissions
    desired = ShareSet(
        accounts=frozenset(share.accounts) | frozenset(share.copy_accounts),
        organizations=frozenset(share.organizations),
        organizational_units=frozenset(share.organizational_units),
        public=share.public,
    )
    if len(desired) > MAX_SHARE_ENTITIES:
        raise CatalogError(
            f"image '{image.name}' is shared with {len(desired)} targets; EC2 allows {MAX_SHARE_ENTITIES} per AMI",
            hint="share with an organization or OU instead of listing accounts one by one",
        )
    return desired


def desired_copy_share(image: Image) -> ShareSet:
    """Snapshot createVolumePermission: only the accounts that copy the image into their own account."""
    return ShareSet(accounts=frozenset(image.share.copy_accounts))


def plan_share(current: ShareSet, desired: ShareSet) -> ShareDiff:
    return ShareDiff(add=desired.minus(current), remove=current.minus(desired))


@dataclass(frozen=True)
class ParameterChange:
    name: str
    previous: str | None
    value: str

    def line(self) -> str:
        if self.previous is None:
            return f"+ parameter {self.name} {self.value}"
        return f"~ parameter {self.name} {self.previous} -> {self.value}"


@dataclass(frozen=True)
class PublishEntry:
    """What publish changed (or, in a dry run, would change) for one release's AMI in one region."""

    image: str
    version: int
    status: str
    region: str
    ami_id: str
    launch: ShareDiff = field(default_factory=ShareDiff)
    snapshots: tuple[tuple[str, ShareDiff], ...] = ()
    parameter: ParameterChange | None = None
    # The rollout channels' parameters that follow this release (docs/rollout.md), when they moved.
    channels: tuple[ParameterChange, ...] = ()
    missing: bool = False
    # Set when a call for this AMI failed: the fields above then hold only what was applied before it.
    error: str = ""

    @property
    def changed(self) -> bool:
        return (
            not self.launch.empty
            or any(not d.empty for _, d in self.snapshots)
            or self.parameter is not None
            or bool(self.channels)
        )

    def lines(self) -> list[str]:
        if self.status == REMOVED:
            out = [f"{self.image} {self.region} {self.ami_id} (image removed from the catalog: unsharing)"]
        else:
            out = [f"{self.image} v{self.version} {self.region} {self.ami_id} ({self.status})"]
        if self.missing:
            out.append("  ! the AMI no longer exists in this region; nothing to share")
        out += [f"  {line}" for line in self.launch.lines()]
        for snapshot_id, diff in self.snapshots:
            out += [f"  {line[0]} snapshot {snapshot_id} {line[2:]}" for line in diff.lines()]
        if self.parameter is not None:
            out.append(f"  {self.parameter.line()}")
        out += [f"  {change.line()}" for change in self.channels]
        if self.error:
            out.append(f"  ! failed: {self.error}")
        return out

    def as_dict(self) -> dict[str, Any]:
        def share(s: ShareSet) -> dict[str, Any]:
            return {
                "accounts": sorted(s.accounts),
                "organizations": sorted(s.organizations),
                "organizational_units": sorted(s.organizational_units),
                "public": s.public,
            }

        channels = [{"name": c.name, "previous": c.previous, "value": c.value} for c in self.channels]
        return {
            "image": self.image,
            "version": self.version,
            "status": self.status,
            "region": self.region,
            "ami_id": self.ami_id,
            # Only with rollout channels, so a catalog without them reads as it always did.
            **({"channels": channels} if channels else {}),
            "missing": self.missing,
            "error": self.error or None,
            "launch": {"add": share(self.launch.add), "remove": share(self.launch.remove)},
            "snapshots": {
                snapshot_id: {"add": share(d.add), "remove": share(d.remove)} for snapshot_id, d in self.snapshots
            },
            "parameter": None
            if self.parameter is None
            else {"name": self.parameter.name, "previous": self.parameter.previous, "value": self.parameter.value},
        }


@dataclass(frozen=True)
class PublishReport:
    """Every release AMI looked at, and the modify calls made (none in a dry run), per operation."""

    dry_run: bool
    entries: tuple[PublishEntry, ...]
    calls: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # (region, name) of parameters deleted (or, in a dry run, to delete) because their image left the catalog.
    deleted_parameters: tuple[tuple[str, str], ...] = ()
    # (region, name) of channel parameters deleted (or to delete) because no good release is left in the channel.
    emptied_channels: tuple[tuple[str, str], ...] = ()

    @property
    def modify_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def changes(self) -> tuple[PublishEntry, ...]:
        return tuple(e for e in self.entries if e.changed or e.missing or e.error)

    def lines(self) -> list[str]:
        """The printable diff, then one summary line."""
        out = [line for entry in self.changes for line in entry.lines()]
        out += [
            f"- parameter {name} in {region} (image removed from the catalog)"
            for region, name in self.deleted_parameters
        ]
        out += [
            f"- parameter {name} in {region} (no good release left in the channel)"
            for region, name in self.emptied_channels
        ]
        out += [f"note: {note}" for note in self.notes]
        changed = sum(1 for e in self.entries if e.changed)
        verb = "would change" if self.dry_run else "changed"
        calls = "no modify calls (dry run)" if self.dry_run else f"{self.modify_calls} modify call(s)"
        out.append(f"publish: {verb} {changed} of {len(self.entries)} AMI-region(s); {calls}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "modify_calls": self.modify_calls,
            "calls": dict(self.calls),
            "entries": [e.as_dict() for e in self.entries],
            "notes": list(self.notes),
            "deleted_parameters": [{"region": r, "name": n} for r, n in self.deleted_parameters],
            **(
                {"emptied_channels": [{"region": r, "name": n} for r, n in self.emptied_channels]}
                if self.emptied_channels
                else {}
            ),
        }


@dataclass(frozen=True)
class _Target:
    image: str
    version: int
    status: str
    region: str
    ami_id: str
    launch: ShareSet
    copy: ShareSet
    parameter: str | None
    # The channel parameters that name this release (channel_parameter_name).
    channels: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.image} v{self.version} in {self.region}"

    @property
    def shared(self) -> bool:
        """Whether anyone outside the account is to get access: only then does the snapshots' key matter."""
        return bool(self.launch or self.copy)


@dataclass
class _Outcome:
    entry: PublishEntry
    calls: Counter[str]


@dataclass
class _Lookup:
    """Phase 1 for one region: the AMIs that are ready, the parameters, and what is refused or failed."""

    ready: dict[str, ImageDetails] = field(default_factory=dict)
    parameters: dict[str, Parameter] = field(default_factory=dict)
    missing: list[_Target] = field(default_factory=list)
    # The AMIs and parameters of images that left the catalog (full publish only).
    removed: list[_Target] = field(default_factory=list)
    removed_parameters: list[str] = field(default_factory=list)
    # Channel parameters to delete: their channel has no good release left.
    emptied: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def publish(
    catalog: Catalog,
    cloud: Cloud,
    images: Sequence[str] | None,
    *,
    dry_run: bool,
    workers: int = 16,
    wait_timeout: float = WAIT_TIMEOUT,
) -> PublishReport:
    """Reconcile every release of `images` (all when None), in every region of the release.

    Current, previous and deprecated releases get the catalog's share; revoked ones get none. Per AMI and
    region that is one DescribeImageAttribute and, only when something differs, one ModifyImageAttribute;
    DescribeImages, DescribeSnapshots and GetParameters are batched per region. The SSM parameter
    `/stamp/<image>/current` follows the current release and is written only on change; so does
    `/stamp/<image>/channel/<name>` for each rollout channel, following the release the channel points at
    (`channel_head` in tools/stamp/catalog/releases.py), and it is deleted when no good release is left in it.
    Every snapshot's permissions are read and reconciled. AMIs tagged `stamp:revoked` are refused (PolicyError)
    unless the catalog has them revoked too.

    Publishing every image (`images` None) also unshares the AMIs of images no longer under `images:` (found by
    their `stamp:image` tag among the account's own AMIs) and deletes their parameters: one catalog owns the
    images of its account (docs/custody.md).

    Everything is read, in every region, before anything is modified: a refusal (an AMI on the default
    `aws/ebs` key) found in one region leaves every region unchanged. A failure after that (throttling past
    the retry bound, say) stops only the AMI-region it hit; see PublishFailed for what that guarantees.
    """
    names = catalog.select(images)
    removed_scan = _RemovedScan.of(catalog) if images is None else None
    # Policy first, for every image, so a refused share never leaves a half-published catalog behind.
    shares = {name: desired_share(catalog.images[name], allow_public=catalog.defaults.allow_public) for name in names}
    notes: list[str] = []
    targets: dict[str, list[_Target]] = {}
    emptied: dict[str, set[str]] = {}
    for name in names:
        releases = catalog.releases.get(name, ())
        followed: dict[int, list[str]] = {}
        for channel, head in channel_heads(catalog, name).items():
            if head is not None:
                followed.setdefault(head.version, []).append(channel_parameter_name(name, channel))
                continue
            # Deleted wherever it exists: a channel never points at a revoked release (docs/rollout.md).
            for region in set(catalog.images[name].regions) | {region for r in releases for region in r.amis}:
                emptied.setdefault(region, set()).add(channel_parameter_name(name, channel))
        if not releases:
            notes.append(f"image '{name}' has no release yet; nothing to publish")
            continue
        for release in releases:
            launchable = release.status in LAUNCHABLE
            for region, ami_id in sorted(release.amis.items()):
                targets.setdefault(region, []).append(
                    _Target(
                        image=name,
                        version=release.version,
                        status=release.status,
                        region=region,
                        ami_id=ami_id,
                        launch=shares[name] if launchable else ShareSet(),
                        copy=desired_copy_share(catalog.images[name]) if launchable else ShareSet(),
                        parameter=parameter_name(name) if release.status == "current" else None,
                        channels=tuple(followed.get(release.version, ())) if launchable else (),
                    )
                )

    failures: list[str] = []
    outcomes: list[_Outcome] = []
    failed_targets: set[tuple[str, str]] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="publish") as pool:
        # Phase 1, regions in parallel, reads only: which AMIs exist (with tags and snapshots), whether their
        # snapshots may be shared at all, and the current parameters.
        regions = set(targets) | set(emptied) | (removed_scan.regions if removed_scan else set())
        futures = {
            region: pool.submit(
                _look_up, cloud, region, targets.get(region, []), wait_timeout, removed_scan, emptied.get(region, ())
            )
            for region in regions
        }
        lookups: dict[str, _Lookup] = {}
        for region, lookup_future in sorted(futures.items()):
            try:
                lookups[region] = lookup_future.result()
            except CloudError as exc:
                failures.append(f"{region}: nothing changed in this region: {exc.message}")
                failed_targets.update((region, t.ami_id) for t in targets.get(region, []))
        revoked = sorted(line for lookup in lookups.values() for line in lookup.revoked)
        if revoked:
            raise PolicyError(
                "refusing to share revoked AMIs or point a parameter at them; nothing was changed in any region:\n  "
                + "\n  ".join(revoked),
                hint="a revocation outlives a revert of catalog.yaml. If the release is safe again, undo the "
                "revocation deliberately with `stamp restore IMAGE VERSION --reason TEXT`; otherwise mark it revoked "
                "in the catalog again (restore catalog.yaml from the revoke commit)",
            )
        refusals = [line for lookup in lookups.values() for line in lookup.refusals]
        if refusals:
            raise PolicyError(
                "refusing to share AMIs whose snapshots are encrypted with the default aws/ebs KMS key; nothing "
                "was changed in any region:\n  " + "\n  ".join(sorted(refusals)),
                hint="AMIs on the AWS managed key aws/ebs cannot be shared, because its key policy cannot let other "
                "accounts decrypt (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html). "
                "Build or copy the image with a customer managed KMS key in each region (Packer: "
                "`encrypt_boot = true` with `kms_key_id` and `region_kms_key_ids`), and let the consumers use the "
                "key: allow kms:Decrypt, kms:DescribeKey, kms:CreateGrant and kms:ReEncrypt* to the shared "
                "accounts, and to organization or OU consumers through the aws:PrincipalOrgID or "
                "aws:PrincipalOrgPaths condition in the key policy; then record the new build",
            )
        # Phase 2: one task per AMI and region, all regions at once.
        work: list[tuple[_Target, Future[_Outcome]]] = []
        for region, lookup in sorted(lookups.items()):
            notes.extend(lookup.notes)
            for target in lookup.removed:
                found = lookup.ready[target.ami_id]
                work.append((target, pool.submit(_reconcile, cloud, target, found, None, dry_run)))
            for target in lookup.missing:
                outcomes.append(_Outcome(_entry(target, missing=True), Counter()))
                if target.status == "current":
                    failures.append(f"{target.name}: the current release's AMI {target.ami_id} does not exist")
                    failed_targets.add((region, target.ami_id))
            for target in targets.get(region, []):
                if target.ami_id in lookup.failures:
                    failures.append(f"{target.name}: {lookup.failures[target.ami_id]}")
                    failed_targets.add((region, target.ami_id))
                    continue
                details = lookup.ready.get(target.ami_id)
                if details is None:
                    continue
                current = lookup.parameters.get(target.parameter) if target.parameter else None
                followers = {n: lookup.parameters.get(n) for n in target.channels}
                work.append((target, pool.submit(_reconcile, cloud, target, details, current, dry_run, followers)))
        for target, future in work:
            outcome = future.result()
            outcomes.append(outcome)
            if outcome.entry.error:
                failures.append(f"{target.name} ({target.ami_id}): {outcome.entry.error}")
                failed_targets.add((target.region, target.ami_id))

    calls: Counter[str] = Counter()
    for outcome in outcomes:
        calls.update(outcome.calls)
    deleted: list[tuple[str, str]] = []
    for region, lookup in sorted(lookups.items()):
        # After the AMIs were unshared: a consumer that still reads the parameter can no longer launch it.
        for name in lookup.removed_parameters:
            if dry_run:
                deleted.append((region, name))
                continue
            try:
                calls["DeleteParameter"] += 1
                cloud.delete_parameter(region, name)
                deleted.append((region, name))
            except CloudError as exc:
                failures.append(f"parameter {name} in {region}: {exc.message}")
    emptied_done: list[tuple[str, str]] = []
    for region, lookup in sorted(lookups.items()):
        for name in lookup.emptied:
            if not dry_run:
                try:
                    calls["DeleteParameter"] += 1
                    cloud.delete_parameter(region, name)
                except CloudError as exc:
                    failures.append(f"parameter {name} in {region}: {exc.message}")
                    continue
            emptied_done.append((region, name))
    order = {name: index for index, name in enumerate(names)}
    entries = sorted(
        (o.entry for o in outcomes), key=lambda e: (order.get(e.image, len(order)), e.image, -e.version, e.region)
    )
    report = PublishReport(
        dry_run=dry_run,
        entries=tuple(entries),
        calls=dict(calls),
        notes=tuple(notes),
        deleted_parameters=tuple(deleted),
        emptied_channels=tuple(emptied_done),
    )
    if failures:
        applied = {
            region: (sum((region, t.ami_id) not in failed_targets for t in items), len(items))
            for region, items in targets.items()
        }
        raise PublishFailed(failures, report, applied)
    return report


@dataclass(frozen=True)
class _RemovedScan:
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
    def of(cls, catalog: Catalog) -> _RemovedScan:
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


def _look_up(
    cloud: Cloud,
    region: str,
    targets: Sequence[_Target],
    wait_timeout: float,
    removed: _RemovedScan | None,
    emptied: Collection[str] = (),
) -> _Lookup:
    lookup = _Lookup()
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
    _check_encryption(cloud, region, [t for t in targets if t.shared and t.ami_id in lookup.ready], lookup)
    names = {t.parameter for t in targets if t.parameter} | {n for t in targets for n in t.channels} | set(emptied)
    if names:
        lookup.parameters = cloud.get_parameters(region, names)
    lookup.emptied = sorted(n for n in emptied if n in lookup.parameters)
    if removed is not None:
        _find_removed(cloud, region, removed, lookup)
    return lookup


def _find_removed(cloud: Cloud, region: str, scan: _RemovedScan, lookup: _Lookup) -> None:
    names: set[str] = set(scan.parameters)
    for ami_id, details in sorted(cloud.own_images_tagged(region, IMAGE_TAG).items()):
        image = details.tags[IMAGE_TAG]
        if image in scan.images or details.state != "available":
            continue
        target = _Target(image, scan.versions.get(ami_id, 0), REMOVED, region, ami_id, ShareSet(), ShareSet(), None)
        lookup.removed.append(target)
        lookup.ready[ami_id] = details
        names |= scan.parameters_of(image)
    if names:
        lookup.removed_parameters = sorted(cloud.get_parameters(region, names))


def _check_encryption(cloud: Cloud, region: str, targets: Sequence[_Target], lookup: _Lookup) -> None:
    """Refuses AMIs whose snapshots use the default aws/ebs key; notes the ones on a customer managed key."""
    owners: dict[str, list[_Target]] = {}
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


def _entry(target: _Target, **changes: Any) -> PublishEntry:
    return PublishEntry(
        image=target.image,
        version=target.version,
        status=target.status,
        region=target.region,
        ami_id=target.ami_id,
        **changes,
    )


def _reconcile(
    cloud: Cloud,
    target: _Target,
    details: ImageDetails,
    parameter: Parameter | None,
    dry_run: bool,
    followers: Mapping[str, Parameter | None] | None = None,
) -> _Outcome:
    """Launch permissions, then snapshots, then the parameters (current, then the channels' in `followers`, as
    read in phase 1); on a failure, what was applied and what was not."""
    calls: Counter[str] = Counter()
    region, ami_id = target.region, target.ami_id
    applied: dict[str, Any] = {}
    step = "reading the launch permissions"
    try:
        launch = plan_share(cloud.get_launch_permissions(region, ami_id), target.launch)
        if not launch.empty and not dry_run:
            step = "changing the launch permissions (" + ", ".join(launch.lines()) + ")"
            cloud.modify_launch_permissions(region, ami_id, launch)
            calls["ModifyImageAttribute"] += 1
        applied["launch"] = launch

        # Every snapshot is read, not only those stamp shared: one made public or shared by hand outside stamp
        # is found and reverted too (a public snapshot gives away the whole disk).
        snapshots: list[tuple[str, ShareDiff]] = []
        for snapshot_id in details.snapshot_ids:
            step = f"reading snapshot {snapshot_id}'s permissions"
            diff = plan_share(cloud.get_snapshot_permissions(region, snapshot_id), target.copy)
            if diff.empty:
                continue
            if not dry_run:
                step = f"changing snapshot {snapshot_id}'s permissions (" + ", ".join(diff.lines()) + ")"
                cloud.modify_snapshot_permissions(region, snapshot_id, diff)
                # Snapshots take one call per direction (the OperationType form).
                calls["ModifySnapshotAttribute"] += int(bool(diff.add)) + int(bool(diff.remove))
            snapshots.append((snapshot_id, diff))
            applied["snapshots"] = tuple(snapshots)

        # The parameter moves only after the AMI is shared, so a consumer that reads it can launch what it names.
        if target.parameter is not None and (parameter is None or parameter.value != ami_id):
            change = ParameterChange(target.parameter, parameter.value if parameter else None, ami_id)
            if not dry_run:
                step = f"moving the parameter {target.parameter} to {ami_id}"
                # Phase 1 read it a moment ago, so this writes without reading again; Overwrite is off when it did
                # not exist, so a parameter someone created meanwhile fails the call instead of being lost.
                cloud.write_image_parameter(region, target.parameter, ami_id, overwrite=parameter is not None)
                calls["PutParameter"] += 1
            applied["parameter"] = change

        moved: list[ParameterChange] = []
        for name, found in sorted((followers or {}).items()):
            if found is not None and found.value == ami_id:
                continue
            change = ParameterChange(name, found.value if found else None, ami_id)
            if not dry_run:
                step = f"moving the parameter {name} to {ami_id}"
                cloud.write_image_parameter(region, name, ami_id, overwrite=found is not None)
                calls["PutParameter"] += 1
            moved.append(change)
            applied["channels"] = tuple(moved)
    except CloudError as exc:
        # Each step is a single call; the steps before it are done, it and the ones after it are not.
        error = f"{exc.message} (while {step}; later steps not attempted)"
        return _Outcome(_entry(target, error=error, **applied), calls)
    return _Outcome(_entry(target, **applied), calls)
