"""`stamp gc`: the janitor; removes what failed or killed builds left behind, found only by their build-id tag."""

from __future__ import annotations

import argparse
import re
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from stamp import clock
from stamp.catalog.load import Catalog
from stamp.cloud.protocol import RESOURCE_KINDS, ImageDetails, Instance, TaggedResource
from stamp.commands.common import catalog_of, target_of
from stamp.errors import (
    CloudError,
    MissingResource,
    UsageError,
)
from stamp.hosts.base import Target
from stamp.output import say
from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG

# What a build makes, and how each carries the build ID (measured with Packer 1.6.6 against moto):
# - instance and its volumes, AMIs, snapshots: Packer's run_tags, run_volume_tags, tags and snapshot_tags. But
#   1.6.6 tags AMIs and snapshots only after every region copy finished, so stamp tags a copy it finds by the
#   build's unique AMI name when a build fails or is rerun (build_leftovers._claim_named).
# - key pair: 1.6.6 makes an untagged `packer_<uuid>` one unless given one; stamp imports its own, tagged.
# - security group: 1.6.6 makes an untagged `packer_<uuid>` one ("Temporary group for Packer") and deletes it
#   when it stops normally or on SIGTERM. Only a kill of Packer itself leaves it, untagged: the janitor does
#   not touch it (it touches nothing without the tag). Recent amazon plugins tag it with run_tags.
# - local containers: the `stamp:build-id` label.
# Build IDs are `<image>-<YYYYmmddHHMMSS>-<hex>` (build.new_build_id): the middle part is the build's start, in UTC.
_BUILD_ID_TIME = re.compile(r"-(\d{14})-[0-9a-f]+$")
_AGE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Containers of the local cloud stand where EC2 has instances, so they go first, with the instances.
KINDS = ("container", *RESOURCE_KINDS)
LOCAL = "local"
# Security groups cannot be deleted while an instance that uses them still exists; termination takes about a
# minute on EC2: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/terminating-instances.html
TERMINATE_WAIT = 600.0
# A verified build is kept this long even when no catalog names it: its record may still be on its way (a record
# pull request waiting for review), and rebuilding and re-verifying costs far more than storing it.
KEEP_VERIFIED = timedelta(days=14)
# `stamp build --on-error keep` keeps the failed build's machine running, and its private key here (under the
# repository's .stamp/, never under build/, which is collected as an artifact): <root>/.stamp/kept/<build-id>/.
KEPT_DIR = Path(".stamp") / "kept"


def kept_key_dir(root: Path, build_id: str) -> Path:
    """Where the private key (and ssh_config) of a kept build machine live until `stamp gc` removes the machine."""
    return root / KEPT_DIR / build_id


def stale_kept_dirs(root: Path, report: GcReport) -> list[Path]:
    """Kept machines' key folders whose machine is gone or was just removed: no container or instance of their
    build is still kept (too young for --older-than) or failed to go."""
    staying = {
        item.build_id
        for item in [k.leftover for k in report.kept] + [f for f, _ in report.failed]
        if item.kind in ("container", "instance")
    }
    folder = root / KEPT_DIR
    return sorted(path for path in folder.glob("*") if path.is_dir() and path.name not in staying)


class JanitorCloud(Protocol):
    """The part of `stamp.cloud.Cloud` the janitor uses."""

    def list_tagged(self, region: str, key: str = BUILD_ID_TAG, value: str | None = None) -> list[TaggedResource]: ...

    def describe_images(self, region: str, ami_ids: Collection[str]) -> dict[str, ImageDetails]: ...

    def describe_instances(self, region: str, instance_ids: Sequence[str]) -> list[Instance]: ...

    def terminate_instances(self, region: str, instance_ids: Sequence[str]) -> None: ...

    def deregister_image(self, region: str, ami_id: str) -> None: ...

    def delete_snapshot(self, region: str, snapshot_id: str) -> None: ...

    def delete_key_pair(self, region: str, key_name: str) -> None: ...

    def delete_security_group(self, region: str, group_id: str) -> None: ...


@dataclass(frozen=True)
class Leftover:
    """One resource a build left: a cloud resource found by its tag, or a local container found by its label."""

    kind: str
    resource_id: str
    region: str
    build_id: str
    created_at: datetime | None = None

    def line(self, verb: str, now: datetime) -> str:
        return (
            f"  {verb:<13} {self.kind:<15} {self.resource_id:<24} {self.region:<15} build {self.build_id}"
            f"  age {format_age(self.created_at, now)}"
        )


@dataclass(frozen=True)
class Kept:
    leftover: Leftover
    reason: str


@dataclass
class GcReport:
    """What the janitor removed (or, in a dry run, would remove), kept, and failed to remove."""

    now: datetime
    dry_run: bool
    removed: list[Leftover] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    failed: list[tuple[Leftover, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [item.line(verb, self.now) for item in self.removed]
        out += [item.leftover.line("kept", self.now) + f"  ({item.reason})" for item in self.kept]
        out += [item.line("FAILED", self.now) + f"  {error}" for item, error in self.failed]
        counts = f"{len(self.removed)} {'to remove' if self.dry_run else 'removed'}, {len(self.kept)} kept"
        counts += f", {len(self.failed)} failed" if self.failed else ""
        out.append(f"gc: {counts}" + (" (dry run: nothing was changed)" if self.dry_run else ""))
        return out

    def raise_for_failures(self) -> None:
        if self.failed:
            first, error = self.failed[0]
            raise CloudError(
                f"gc: {len(self.failed)} resource(s) could not be removed; first: {first.kind} {first.resource_id}"
                f" in {first.region}: {error}",
                hint="run `stamp gc` again; what is still tagged is found again next time",
            )


def build_id_time(build_id: str) -> datetime | None:
    """When the build started, read from its ID; None for an ID stamp did not make."""
    match = _BUILD_ID_TIME.search(build_id)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_age(text: str, *, option: str = "--older-than") -> timedelta:
    """`2h`, `90m`, `1d12h`, `45s`, `2w` → a timedelta; anything else is a usage error."""
    spec = text.strip().lower()
    if not spec or _AGE.sub("", spec):
        raise UsageError(
            f"{option} {text!r}: not an age", hint="write a number and a unit: 30m, 2h, 1d12h (s, m, h, d, w)"
        )
    age = timedelta()
    for amount, unit in _AGE.findall(spec):
        age += timedelta(**{_UNITS[unit]: int(amount)})
    return age


def format_age(created_at: datetime | None, now: datetime) -> str:
    if created_at is None:
        return "unknown"
    seconds = max(0, int((now - _aware(created_at)).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest % 60:02d}s"


def format_span(span: timedelta) -> str:
    """`14d`, `36h`, `90m`: the largest unit that divides the span."""
    seconds = int(span.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _verified_and_young(tags: Mapping[str, str], item: Leftover, now: datetime, keep: timedelta) -> bool:
    if tags.get(VERIFIED_TAG) != VERIFIED:
        return False
    return item.created_at is None or now - _aware(item.created_at) < keep


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def regions_of(catalog: Catalog) -> list[str]:
    """Every region an image is built in or a release has an AMI in."""
    regions = {region for image in catalog.images.values() for region in image.regions}
    regions |= {region for releases in catalog.releases.values() for r in releases for region in r.amis}
    return sorted(regions)


def released_amis(catalog: Catalog) -> dict[str, str]:
    """AMI ID → `image vN` for every release the catalog names, whatever its status."""
    return {
        ami_id: f"{name} v{release.version}"
        for name, releases in catalog.releases.items()
        for release in releases
        for ami_id in release.amis.values()
    }


def _leftover(resource: TaggedResource) -> Leftover:
    build_id = resource.tags.get(BUILD_ID_TAG, "")
    # Key pairs and security groups carry no creation time EC2 reports reliably: their build's start stands in.
    created = resource.created_at if resource.kind in ("instance", "image", "snapshot") else None
    return Leftover(resource.kind, resource.resource_id, resource.region, build_id, created or build_id_time(build_id))


def find_leftovers(
    cloud: JanitorCloud,
    regions: Iterable[str],
    *,
    released: dict[str, str],
    older_than: timedelta | None,
    now: datetime,
    build_id: str | None = None,
    keep_amis: Collection[str] = (),
    keep_verified: timedelta = KEEP_VERIFIED,
) -> tuple[list[Leftover], list[Kept]]:
    """Tagged resources in `regions` that are garbage, and tagged ones kept (with why).

    Garbage carries a non-empty `stamp:build-id` (only `build_id`'s, when given) and is older than `older_than`.
    Kept whatever its age: an AMI a release names or `keep_amis` holds, and a snapshot any kept AMI uses. Kept
    while younger than `keep_verified`: an AMI tagged `stamp:verified=passed` (an age it cannot tell keeps it).
    """
    garbage: list[Leftover] = []
    kept: list[Kept] = []
    for region in regions:
        resources = cloud.list_tagged(region, BUILD_ID_TAG, build_id)
        resource_tags = {r.resource_id: r.tags for r in resources}
        found = [_leftover(r) for r in resources]
        candidates: list[Leftover] = []
        for item in found:
            if not item.build_id:
                continue  # a blank tag is not a build's: launches of a built AMI may carry one
            if item.kind == "image" and item.resource_id in released:
                kept.append(Kept(item, f"release {released[item.resource_id]}"))
            elif item.kind == "image" and item.resource_id in keep_amis:
                kept.append(Kept(item, "adopted by this build"))
            elif item.kind == "image" and _verified_and_young(
                resource_tags[item.resource_id], item, now, keep_verified
            ):
                kept.append(Kept(item, f"verified build, kept {format_span(keep_verified)} (--keep-verified)"))
            elif older_than is not None and (item.created_at is None or now - _aware(item.created_at) < older_than):
                kept.append(Kept(item, "age unknown" if item.created_at is None else "younger than --older-than"))
            else:
                candidates.append(item)
        in_use: dict[str, str] = {}
        if any(item.kind == "snapshot" for item in candidates):
            # A snapshot is in use while any AMI that stays uses it; released AMIs may carry no tag at all.
            staying = {
                k.leftover.resource_id for k in kept if k.leftover.kind == "image" and k.leftover.region == region
            }
            described = cloud.describe_images(region, staying | set(released) | set(keep_amis))
            in_use = {snapshot_id: ami_id for ami_id, d in described.items() for snapshot_id in d.snapshot_ids}
        for item in candidates:
            if item.kind == "snapshot" and item.resource_id in in_use:
                kept.append(Kept(item, f"used by AMI {in_use[item.resource_id]}"))
            else:
                garbage.append(item)
    return garbage, kept


def find_machine_leftovers(
    target: Target, *, older_than: timedelta | None, now: datetime, build_id: str | None = None
) -> tuple[list[Leftover], list[Kept]]:
    """Machines a build left outside the cloud API (the local cloud's containers), by their build-ID label."""
    garbage: list[Leftover] = []
    kept: list[Kept] = []
    for machine_id, found in target.leftover_machines(build_id):
        leftover = Leftover("container", machine_id, LOCAL, found, build_id_time(found))
        if older_than is not None and (leftover.created_at is None or now - leftover.created_at < older_than):
            kept.append(Kept(leftover, "age unknown" if leftover.created_at is None else "younger than --older-than"))
        else:
            garbage.append(leftover)
    return garbage, kept


def remove_leftovers(
    cloud: JanitorCloud,
    leftovers: Sequence[Leftover],
    report: GcReport,
    *,
    machines: Target | None = None,
    wait: float = TERMINATE_WAIT,
    sleep: Callable[[float], None] = time.sleep,
) -> GcReport:
    """Remove in a safe order: instances, images, snapshots, key pairs, then security groups; record each outcome.

    Images go before their snapshots (a snapshot in use by an AMI cannot be deleted), and security groups wait
    until the instances that used them are gone.
    """
    order = {kind: index for index, kind in enumerate(KINDS)}
    pending = sorted(leftovers, key=lambda item: (order.get(item.kind, len(order)), item.region, item.resource_id))
    if report.dry_run:
        report.removed.extend(pending)
        return report
    terminated: dict[str, list[str]] = {}
    for kind in KINDS:
        batch = [item for item in pending if item.kind == kind]
        if kind == "security-group" and batch:
            _wait_terminated(cloud, terminated, wait=wait, sleep=sleep)
        if kind == "instance":
            for region in sorted({item.region for item in batch}):
                in_region = [item for item in batch if item.region == region]
                ids = [item.resource_id for item in in_region]
                try:
                    cloud.terminate_instances(region, ids)
                except CloudError as exc:
                    report.failed.extend((item, _first_line(exc)) for item in in_region)
                    continue
                terminated[region] = ids
                report.removed.extend(in_region)
            continue
        for item in batch:
            try:
                _remove_one(cloud, item, machines)
            except MissingResource:
                pass  # gone already (Packer's own cleanup may have raced us): the goal is reached
            except CloudError as exc:
                report.failed.append((item, _first_line(exc)))
                continue
            report.removed.append(item)
    return report


def _remove_one(cloud: JanitorCloud, item: Leftover, machines: Target | None) -> None:
    if item.kind == "container":
        if machines is None:
            raise CloudError(f"container {item.resource_id}: no local cloud to remove it from")
        machines.remove_machine(item.resource_id)
    elif item.kind == "image":
        cloud.deregister_image(item.region, item.resource_id)
        if machines is not None:
            machines.forget_image(item.resource_id)
    elif item.kind == "snapshot":
        cloud.delete_snapshot(item.region, item.resource_id)
    elif item.kind == "key-pair":
        cloud.delete_key_pair(item.region, item.resource_id)
    elif item.kind == "security-group":
        cloud.delete_security_group(item.region, item.resource_id)
    else:
        raise CloudError(f"{item.kind} {item.resource_id}: the janitor does not know how to remove it")


def _wait_terminated(
    cloud: JanitorCloud, terminated: dict[str, list[str]], *, wait: float, sleep: Callable[[float], None]
) -> None:
    """Wait until the instances just terminated are gone; a security group they used cannot be deleted before."""
    deadline = time.monotonic() + wait
    for region, ids in terminated.items():
        while time.monotonic() < deadline:
            try:
                states = {i.state for i in cloud.describe_instances(region, ids)}
            except MissingResource:
                break
            if states <= {"terminated"}:
                break
            sleep(2.0)


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def collect_garbage(
    catalog: Catalog,
    target: Target,
    *,
    older_than: timedelta | None,
    now: datetime,
    dry_run: bool,
    build_id: str | None = None,
    keep_amis: Collection[str] = (),
    keep_verified: timedelta = KEEP_VERIFIED,
    sleep: Callable[[float], None] = time.sleep,
) -> GcReport:
    """Find and remove build leftovers in every region the catalog names, and the machines the target keeps."""
    garbage, kept = find_leftovers(
        target.cloud,
        regions_of(catalog),
        released=released_amis(catalog),
        older_than=older_than,
        now=now,
        build_id=build_id,
        keep_amis=keep_amis,
        keep_verified=keep_verified,
    )
    more, also_kept = find_machine_leftovers(target, older_than=older_than, now=now, build_id=build_id)
    report = GcReport(now=now, dry_run=dry_run, kept=kept + also_kept)
    return remove_leftovers(target.cloud, garbage + more, report, machines=target, sleep=sleep)


def run(args: argparse.Namespace) -> int:
    from stamp.drivers import runfiles

    catalog = catalog_of(args)
    older_than = parse_age(args.older_than) if args.older_than is not None else None
    # A SIGKILLed run's private keys carry no cloud tag: their run directory names its owner, now gone.
    for path in runfiles.stale_run_dirs() if args.dry_run else runfiles.remove_stale_run_dirs():
        say(f"run dir of a process that is gone {'would be removed' if args.dry_run else 'removed'}: {path}")
    target = target_of(args, catalog)
    report = collect_garbage(
        catalog,
        target,
        older_than=older_than,
        now=clock.utc_now(),
        dry_run=args.dry_run,
        keep_verified=parse_age(args.keep_verified, option="--keep-verified"),
    )
    for line in report.lines():
        say(line)
    for path in stale_kept_dirs(catalog.root, report):
        if not args.dry_run:
            shutil.rmtree(path, ignore_errors=True)
        say(f"key of a kept build machine {'would be removed' if args.dry_run else 'removed'}: {path}")
    report.raise_for_failures()
    return 0
