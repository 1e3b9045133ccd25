"""Publishing: reconciles launch permissions, snapshot permissions and SSM parameters to exactly the catalog's.

`publish` runs the phases: what the catalog asks (publish_policy.py), phase 1's reads in every region
(publish_lookup.py), phase 2's changes per AMI and region (publish_reconcile.py), and the report
(publish_report.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from stamp.catalog.load import Catalog
from stamp.catalog.releases import channel_heads
from stamp.cloud.protocol import Cloud, ShareSet
from stamp.cloud.publish_lookup import Lookup, RemovedScan, look_up
from stamp.cloud.publish_policy import (
    LAUNCHABLE,
    ShareTarget,
    channel_parameter_name,
    desired_copy_share,
    desired_share,
    parameter_name,
)
from stamp.cloud.publish_reconcile import Outcome, publish_entry, reconcile
from stamp.cloud.publish_report import PublishReport
from stamp.errors import (
    CloudError,
    PolicyError,
    PublishFailed,
)

# How long publish waits for a release's AMI that reads `pending`, or (for the current release) not found: a new
# AMI can be invisible to DescribeImages for a while (eventual consistency), and a copy stays pending until done:
# https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
WAIT_TIMEOUT = 120.0


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
    removed_scan = RemovedScan.of(catalog) if images is None else None
    # Policy first, for every image, so a refused share never leaves a half-published catalog behind.
    shares = {name: desired_share(catalog.images[name], allow_public=catalog.defaults.allow_public) for name in names}
    notes: list[str] = []
    targets: dict[str, list[ShareTarget]] = {}
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
                    ShareTarget(
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
    outcomes: list[Outcome] = []
    failed_targets: set[tuple[str, str]] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="publish") as pool:
        # Phase 1, regions in parallel, reads only: which AMIs exist (with tags and snapshots), whether their
        # snapshots may be shared at all, and the current parameters.
        regions = set(targets) | set(emptied) | (removed_scan.regions if removed_scan else set())
        futures = {
            region: pool.submit(
                look_up, cloud, region, targets.get(region, []), wait_timeout, removed_scan, emptied.get(region, ())
            )
            for region in regions
        }
        lookups: dict[str, Lookup] = {}
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
        work: list[tuple[ShareTarget, Future[Outcome]]] = []
        for region, lookup in sorted(lookups.items()):
            notes.extend(lookup.notes)
            for target in lookup.removed:
                found = lookup.ready[target.ami_id]
                work.append((target, pool.submit(reconcile, cloud, target, found, None, dry_run)))
            for target in lookup.missing:
                outcomes.append(Outcome(publish_entry(target, missing=True), Counter()))
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
                work.append((target, pool.submit(reconcile, cloud, target, details, current, dry_run, followers)))
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
