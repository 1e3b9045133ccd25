"""`stamp revoke`: a release stops being shared and current, now or at a scheduled time, and its AMIs are tagged."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from stamp import clock
from stamp.catalog import edit as catalog_edit
from stamp.catalog import releases, store
from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import age, channel_head, channels_of, find_release, newest_first
from stamp.cloud.protocol import Cloud
from stamp.cloud.publish_policy import channel_parameter_name, parameter_name
from stamp.cloud.publish_report import PublishReport
from stamp.cloud.sharing import publish
from stamp.commands.common import catalog_of, target_of
from stamp.errors import CatalogError, CloudError, MissingResource, PublishFailed, UsageError
from stamp.notify import notifier
from stamp.output import say, show
from stamp.tags import REVOKED_TAG, TAG_VALUE_MAX

Usable = Callable[[str, Release], bool]


def always_usable(_image: str, _release: Release) -> bool:
    return True


def amis_exist(cloud: Cloud) -> Usable:
    """A check that every AMI of a release still exists, asked of the cloud once per release."""
    cache: dict[tuple[str, int], bool] = {}

    def usable(image: str, release: Release) -> bool:
        key = (image, release.version)
        if key not in cache:
            cache[key] = all(
                ami_id in cloud.describe_images(region, [ami_id]) for region, ami_id in release.amis.items()
            )
        return cache[key]

    return usable


@dataclass(frozen=True)
class Descendant:
    """A release built from a revoked one, directly (`built_from` is that release) or through others."""

    image: str
    version: int
    built_from: tuple[str, int]

    @property
    def key(self) -> tuple[str, int]:
        return (self.image, self.version)

    def __str__(self) -> str:
        return f"{self.image} v{self.version}, built from {self.built_from[0]} v{self.built_from[1]}"


def find_descendants(catalog: Catalog, image: str, version: int) -> list[Descendant]:
    """Releases built from this one, directly or through others: a child release whose `source` names it (by
    image and version, or by one of its AMIs), then that release's children, and so on. Parents first."""
    found: list[Descendant] = []
    seen = {(image, version)}
    queue = [(image, find_release(catalog, image, version))]
    while queue:
        parent, release = queue.pop(0)
        parent_amis = set(release.amis.values())
        for name in catalog.topo_order(n for n in catalog.releases if n in catalog.images):
            for child in newest_first(catalog.releases.get(name, ())):
                source = child.source
                by_name = source.image == parent and source.version == release.version
                by_ami = source.amis is not None and bool(parent_amis & set(source.amis.values()))
                if (by_name or by_ami) and (name, child.version) not in seen:
                    seen.add((name, child.version))
                    found.append(Descendant(name, child.version, (parent, release.version)))
                    queue.append((name, child))
    return found


def next_current(
    catalog: Catalog, image: str, *, excluding: Collection[int] = (), usable: Usable = always_usable
) -> Release | None:
    """The release to make current when the current one goes: the newest `previous` release built before it.

    Never a newer one: a `previous` newer than the current release is one a rollback moved away from. With no
    current release, the newest `previous` one. Deprecated and revoked releases never come back.
    """
    current = catalog.current_release(image)
    candidates = [
        r
        for r in catalog.releases.get(image, ())
        if r.status == "previous"
        and r.version not in excluding
        and (current is None or age(r) < age(current))
        and usable(image, r)
    ]
    return max(candidates, key=age, default=None)


@dataclass(frozen=True)
class Revocation:
    image: str
    version: int
    status: str
    reason: str


@dataclass(frozen=True)
class RevokePlan:
    """Which releases to revoke (the named one first), which descendants were found, and per image whose
    current release is revoked, the version that becomes current (None: no current release is left)."""

    image: str
    version: int
    reason: str
    with_descendants: bool
    revocations: tuple[Revocation, ...]
    descendants: tuple[Descendant, ...]
    new_current: tuple[tuple[str, int | None], ...]
    # (image, channel, the version it falls back to or None) for each rollout channel that pointed at a revoked
    # release (docs/rollout.md).
    channels: tuple[tuple[str, str, int | None], ...] = ()

    @property
    def left_out(self) -> tuple[Descendant, ...]:
        """Descendants found but not revoked by this plan."""
        chosen = {(r.image, r.version) for r in self.revocations}
        return tuple(d for d in self.descendants if d.key not in chosen)

    @property
    def images(self) -> list[str]:
        return list(dict.fromkeys(r.image for r in self.revocations))

    def lines(self) -> list[str]:
        out = [f"revoke {r.image} v{r.version} ({r.status}): {r.reason}" for r in self.revocations]
        for image, version in self.new_current:
            if version is None:
                out.append(
                    f"  {image}: no previous release built before it is left to become current; its parameter "
                    f"{parameter_name(image)} is deleted, and `stamp lookup {image}` fails until a new release"
                )
            else:
                out.append(f"  {image}: v{version} becomes current; {parameter_name(image)} moves to it")
        for image, channel, version in self.channels:
            parameter = channel_parameter_name(image, channel)
            if version is None:
                out.append(f"  {image}: no good release is left in channel {channel}; {parameter} is deleted")
            else:
                out.append(f"  {image}: channel {channel} falls back to v{version}; {parameter} moves to it")
        out += [f"  not revoked: {d} (use --with-descendants)" for d in self.left_out]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "version": self.version,
            "reason": self.reason,
            "revoked": [vars(r) for r in self.revocations],
            "descendants": [_descendant(d) for d in self.descendants],
            "not_revoked": [_descendant(d) for d in self.left_out],
            "new_current": {image: version for image, version in self.new_current},
            # Only with rollout channels, so a catalog without them reads as it always did.
            **(
                {"channels": [{"image": i, "channel": c, "version": v} for i, c, v in self.channels]}
                if self.channels
                else {}
            ),
        }


def _descendant(d: Descendant) -> dict[str, Any]:
    return {
        "image": d.image,
        "version": d.version,
        "built_from": {"image": d.built_from[0], "version": d.built_from[1]},
    }


def plan_revoke(
    catalog: Catalog,
    image: str,
    version: int,
    reason: str,
    *,
    with_descendants: bool,
    usable: Usable = always_usable,
) -> RevokePlan:
    """Pure: the revocations, and what becomes current where a current release is revoked."""
    catalog.select([image])
    reason = reason.strip()
    if not reason:
        raise UsageError("--reason must say why the release is revoked", hint='e.g. --reason "CVE-2026-1234 in sshd"')
    release = find_release(catalog, image, version)
    descendants = find_descendants(catalog, image, version)
    revocations = [Revocation(image, version, release.status, reason)]
    if with_descendants:
        for d in descendants:
            through = "" if d.built_from == (image, version) else f", from {image} v{version}"
            why = f"built from {d.built_from[0]} v{d.built_from[1]}{through}: {reason}"
            revocations.append(Revocation(d.image, d.version, find_release(catalog, d.image, d.version).status, why))
    new_current: list[tuple[str, int | None]] = []
    for name in dict.fromkeys(r.image for r in revocations):
        current = catalog.current_release(name)
        revoked = {r.version for r in revocations if r.image == name}
        if current is not None and current.version in revoked:
            successor = next_current(catalog, name, excluding=revoked, usable=usable)
            new_current.append((name, successor.version if successor else None))
    channels = _channel_fallbacks(catalog, revocations, dict(new_current))
    return RevokePlan(
        image, version, reason, with_descendants, tuple(revocations), tuple(descendants), tuple(new_current), channels
    )


def _channel_fallbacks(
    catalog: Catalog, revocations: Sequence[Revocation], new_current: dict[str, int | None]
) -> tuple[tuple[str, str, int | None], ...]:
    """Where each channel that moves points afterwards: one that pointed at a release about to be revoked, or at
    one newer than the new current release (channel_head, on the releases as the revocation leaves them)."""
    found: list[tuple[str, str, int | None]] = []
    for name in dict.fromkeys(r.image for r in revocations):
        revoked = {r.version for r in revocations if r.image == name}
        after: list[Release] = []
        for release in catalog.releases.get(name, ()):
            status = "revoked" if release.version in revoked else release.status
            if name in new_current and status == "current":
                status = "previous"
            if new_current.get(name) == release.version:
                status = "current"
            after.append(release.model_copy(update={"status": status}))
        for channel in channels_of(catalog, name):
            before = channel_head(catalog.releases.get(name, ()), channel)
            fallback = channel_head(after, channel)
            if before is not None and (fallback is None or fallback.version != before.version):
                found.append((name, channel, fallback.version if fallback else None))
    return tuple(found)


@dataclass(frozen=True)
class RevokeReport:
    plan: RevokePlan
    publish: PublishReport
    deleted_parameters: tuple[tuple[str, str], ...] = ()

    def lines(self) -> list[str]:
        """What was done; `plan.lines()` say what was decided (the CLI prints those before asking)."""
        out = self.publish.lines()
        out += [f"deleted parameter {name} in {region}" for region, name in self.deleted_parameters]
        out.append(f"revoked {len(self.plan.revocations)} release(s); commit catalog.yaml to record it")
        return out

    def as_dict(self) -> dict[str, Any]:
        return self.plan.as_dict() | {
            "publish": self.publish.as_dict(),
            "deleted_parameters": [{"region": r, "name": n} for r, n in self.deleted_parameters],
        }


def revoke(catalog_path: Path, cloud: Cloud, plan: RevokePlan, *, usable: Usable = always_usable) -> RevokeReport:
    """Marks the plan's releases revoked (and moves `current`) under the lock, then republishes their images:
    revoked releases lose every launch and snapshot permission; parameters follow the new current release,
    and are deleted where none is left. `usable` is the check the plan was made with."""

    def edit(text: str, catalog: Catalog) -> str:
        # Planned again on the locked text: a record, rollback or prune that landed since the user confirmed
        # could otherwise make a deprecated release current, or miss a new descendant.
        fresh = plan_revoke(
            catalog, plan.image, plan.version, plan.reason, with_descendants=plan.with_descendants, usable=usable
        )
        if fresh != plan:
            raise CatalogError(
                f"{catalog_path} changed while stamp revoke was running; nothing was revoked",
                hint="run the command again",
            )
        for revocation in plan.revocations:
            text = catalog_edit.set_status(text, revocation.image, revocation.version, "revoked", revocation.reason)
        for image, version in plan.new_current:
            if version is not None:
                text = catalog_edit.set_status(text, image, version, "current")
        return text

    catalog = store.edit_catalog(catalog_path, edit, command="stamp revoke")
    for revocation in plan.revocations:
        tag_revoked(cloud, find_release(catalog, revocation.image, revocation.version), revocation.reason)
    report = republish(catalog, cloud, plan.images, done=f"{plan.image} v{plan.version} is revoked in the catalog")
    deleted: list[tuple[str, str]] = []
    for image, version in plan.new_current:
        if version is not None:
            continue
        # No release is left to name: a parameter naming a revoked AMI would keep consumers launching it.
        regions = set(catalog.images[image].regions)
        regions |= {region for r in catalog.releases.get(image, ()) for region in r.amis}
        for region in sorted(regions):
            if cloud.delete_parameter(region, parameter_name(image)):
                deleted.append((region, parameter_name(image)))
    return RevokeReport(plan, report, tuple(deleted))


def tag_revoked(cloud: Cloud, release: Release, reason: str) -> None:
    """Tags the release's AMIs `stamp:revoked=<reason>` in every region, so that a revert of catalog.yaml cannot
    share them again (publish refuses tagged AMIs); an AMI already gone needs no tag."""
    for region, ami_id in sorted(release.amis.items()):
        with contextlib.suppress(MissingResource):
            cloud.create_tags(region, [ami_id], {REVOKED_TAG: reason[:TAG_VALUE_MAX] or "revoked"})


def republish(catalog: Catalog, cloud: Cloud, images: Sequence[str], *, done: str) -> PublishReport:
    try:
        return publish(catalog, cloud, images, dry_run=False)
    except PublishFailed as exc:
        raise CloudError(
            f"{done}, but publishing it failed in part:\n  " + "\n  ".join(exc.failures),
            hint=f"fix the cause and run `stamp publish {' '.join(images)}`: it changes only what still differs",
        ) from None


def is_interactive(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def ask(question: str, stdin: IO[str], stderr: IO[str]) -> bool:
    """A yes/no question on stderr (stdout stays machine-readable); anything but y or yes is no."""
    stderr.write(f"{question} [y/N] ")
    stderr.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def schedule(catalog_path: Path, plan: RevokePlan, at: datetime, *, now: datetime) -> Catalog:
    """Writes `revoke_at` and the reason into each release of the plan; nothing changes in the cloud yet."""
    if at <= now:
        raise UsageError(
            f"--at {clock.iso(at)} is not in the future (now {clock.iso(now)})",
            hint="leave out --at to revoke now",
        )

    def edit(text: str, catalog: Catalog) -> str:
        for revocation in plan.revocations:
            release = releases.find_release(catalog, revocation.image, revocation.version)
            if release.status == "revoked":
                raise CatalogError(f"{revocation.image} v{revocation.version} is revoked already")
            text = catalog_edit.set_field(text, revocation.image, revocation.version, "reason", revocation.reason)
            text = catalog_edit.set_field(text, revocation.image, revocation.version, "revoke_at", clock.iso(at))
        return text

    return store.edit_catalog(catalog_path, edit, command="stamp revoke --at")


def due(catalog: Catalog, now: datetime) -> list[tuple[str, int, str]]:
    """(image, version, reason) of every scheduled revocation whose time has come, parents first."""
    found: list[tuple[str, int, str]] = []
    for name in catalog.topo_order(n for n in catalog.releases if n in catalog.images):
        for release in catalog.releases[name]:
            when = clock.parse_time(release.revoke_at) if release.revoke_at else None
            if when is not None and when <= now and release.status != "revoked":
                found.append((name, release.version, release.reason or f"scheduled for {release.revoke_at}"))
    return found


def apply_due(catalog_path: Path, cloud: Cloud, now: datetime) -> list[RevokeReport]:
    """Revokes, one release at a time, what `due` lists; what `publish` runs first."""
    reports: list[RevokeReport] = []
    usable = amis_exist(cloud)
    while True:
        catalog = store.read_checked(catalog_path)[1]
        pending = due(catalog, now)
        if not pending:
            return reports
        image, version, reason = pending[0]
        plan = plan_revoke(catalog, image, version, reason, with_descendants=False, usable=usable)
        reports.append(revoke(catalog_path, cloud, plan, usable=usable))


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    cloud = target_of(args, catalog).cloud
    usable = amis_exist(cloud)
    interactive = is_interactive(sys.stdin)

    def planned(with_descendants: bool) -> RevokePlan:
        return plan_revoke(catalog, name, args.version, args.reason, with_descendants=with_descendants, usable=usable)

    at = _parse_at(args.at) if args.at is not None else None
    plan = planned(args.with_descendants)
    if plan.left_out and interactive and not args.yes:
        for descendant in plan.left_out:
            say(f"{descendant}")
        if ask("Revoke these too?", sys.stdin, sys.stderr):
            plan = planned(True)
    for line in plan.lines():
        say(line)
    if not args.yes:
        if not interactive:
            raise UsageError(
                "stamp revoke stops sharing releases and may move the current release: it asks for confirmation, "
                "and stdin is not a terminal",
                hint="pass --yes to confirm (and --with-descendants to revoke what was built from it)",
            )
        if not ask("Revoke?", sys.stdin, sys.stderr):
            say("nothing revoked")
            return 1
    if at is not None:
        schedule(catalog.path, plan, at, now=clock.utc_now())
        say(f"scheduled: the first `stamp publish` at or after {clock.iso(at)} revokes these; commit catalog.yaml")
        return 0
    report = revoke(catalog.path, cloud, plan, usable=usable)
    show(report, args.format)
    if notifier.configured(catalog):
        revoked = [(r.image, r.version) for r in plan.revocations]
        notifier.Notifier(store.read_checked(catalog.path)[1], cloud).announce(revoked, happened=["revoked"])
    return 0


def _parse_at(text: str) -> datetime:
    from stamp.clock import parse_time

    at = parse_time(text)
    if at is None or "T" not in text:
        raise UsageError(f"--at {text!r} is not a time", hint="write UTC time as 2026-12-01T09:00:00Z")
    return at
