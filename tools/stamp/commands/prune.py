"""`stamp prune`: retention; deprecate old releases, then retire them after the grace period, never one in use."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from stamp import clock
from stamp.catalog import edit as catalog_edit
from stamp.catalog import store
from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import RETAINED, channel_heads, newest_first
from stamp.clock import iso, parse_time
from stamp.cloud.consumers import users_elsewhere
from stamp.cloud.protocol import Cloud, ImageDetails, ImageUser
from stamp.cloud.publish_policy import channel_parameter_name, parameter_name
from stamp.commands.common import catalog_of, target_of
from stamp.errors import (
    CloudError,
    MissingResource,
    PolicyError,
)
from stamp.notify import notifier
from stamp.notify.expected import Extra
from stamp.output import show
from stamp.tags import DEPRECATED_AT_TAG

ActionKind = Literal["deprecate", "wait", "retire", "refuse", "skip"]


def retained_versions(releases: Sequence[Release], keep: int) -> set[int]:
    """The current release and the newest `previous` ones, `keep` in all: what prune leaves launchable."""
    ordered = newest_first(releases)
    current = [r.version for r in ordered if r.status == "current"]
    previous = [r.version for r in ordered if r.status == "previous"]
    return set(current) | set(previous[: max(0, keep - len(current))])


@dataclass(frozen=True)
class AmiState:
    """One release AMI in one region, as DescribeImages saw it."""

    exists: bool
    deprecated_at: datetime | None = None
    snapshot_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, details: ImageDetails | None) -> AmiState:
        if details is None:
            return cls(exists=False)
        mark = details.tags.get(DEPRECATED_AT_TAG)
        return cls(True, parse_time(mark) if mark else None, details.snapshot_ids)


@dataclass(frozen=True)
class Usage:
    """The cloud as prune sees it, keyed by (region, AMI ID) and (region, parameter name)."""

    amis: Mapping[tuple[str, str], AmiState] = field(default_factory=dict)
    users: Mapping[tuple[str, str], tuple[ImageUser, ...]] = field(default_factory=dict)
    parameters: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # Why an AMI's users are not known: a consumer account that could not be read. Retiring it would be a guess.
    unknown: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """One step of a prune for one release; `amis` are the region → AMI pairs it works on."""

    kind: ActionKind
    image: str
    version: int
    status: str
    amis: Mapping[str, str] = field(default_factory=dict)
    snapshots: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deprecated_at: datetime | None = None
    due: datetime | None = None
    blockers: tuple[str, ...] = ()
    note: str = ""

    @property
    def new_status(self) -> str | None:
        """The catalog edit this action makes once its cloud work is done: a status, `removed`, or None."""
        if self.kind == "deprecate" and self.status == "previous":
            return "deprecated"
        if self.kind == "retire":
            return "removed"
        return None

    def lines(self, verb: str) -> list[str]:
        head = f"{verb} {self.image} v{self.version} ({self.status})"
        where = ", ".join(f"{region} {ami}" for region, ami in sorted(self.amis.items()))
        out: list[str] = []
        if self.kind == "deprecate":
            change = " → deprecated in the catalog" if self.new_status else ""
            out.append(f"{head}{change}: {where or 'no AMI left in the cloud'}")
        elif self.kind == "retire":
            parts = [
                f"deregister {ami} in {region}"
                + (f", delete {', '.join(self.snapshots.get(region, ()))}" if self.snapshots.get(region) else "")
                for region, ami in sorted(self.amis.items())
            ]
            out.append(f"{head}: " + "; ".join([*parts, "remove it from the catalog"]))
        elif self.kind == "wait":
            since = iso(self.deprecated_at) if self.deprecated_at else "?"
            until = iso(self.due) if self.due else "?"
            out.append(f"{head}: deprecated since {since}; deregistered from {until} (retention.grace_days)")
        elif self.kind == "refuse":
            out.append(f"{head}: its grace period is over, but it is still in use:")
            out += [f"    {blocker}" for blocker in self.blockers]
            out.append(
                f"    what to do: move these to the current release (`stamp lookup {self.image}`), replace or "
                f"terminate the instances, run `stamp publish {self.image}` if the parameter lags, then prune again"
            )
        else:
            out.append(f"{head}: left alone")
        if self.note:
            out.append(f"    note: {self.note}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "image": self.image,
            "version": self.version,
            "status": self.status,
            "new_status": self.new_status,
            "amis": dict(self.amis),
            "snapshots": {region: list(ids) for region, ids in self.snapshots.items()},
            "deprecated_at": iso(self.deprecated_at) if self.deprecated_at else None,
            "due": iso(self.due) if self.due else None,
            "blockers": list(self.blockers),
            "note": self.note,
        }


def plan_prune(catalog: Catalog, now: datetime, usage: Usage, images: Sequence[str] | None = None) -> list[Action]:
    """What prune does for each release beyond retention, newest first per image, parents first.

    - A `previous` release beyond `retention.keep` is deprecated (cloud mark, then `deprecated` in the catalog).
    - A `deprecated` or `revoked` release is retired `retention.grace_days` after its deprecation mark: its AMIs
      are deregistered, their snapshots deleted, and its item removed from the catalog. One without a mark in
      some region is marked there first, so its grace period starts now.
    - Retirement is refused while the image's SSM parameters, a launch template or a live instance use the AMI.
    - A release a rollout channel points at is kept as well (docs/rollout.md), beyond `keep`.
    """
    actions: list[Action] = []
    for name in catalog.select(images):
        image = catalog.images[name]
        releases = catalog.releases.get(name, ())
        heads = {r.version for r in channel_heads(catalog, name).values() if r is not None}
        retained = retained_versions(releases, image.retention.keep) | heads
        grace = timedelta(days=image.retention.grace_days)
        current = catalog.current_release(name)
        if current is not None and any(
            not state.exists
            for region, ami_id in current.amis.items()
            if (state := usage.amis.get((region, ami_id))) is not None
        ):
            # The current AMI missing too means the wrong account or endpoint far more often than a real loss:
            # deleting catalog entries for AMIs "already gone" would then be wrong.
            actions += [
                Action(
                    "skip",
                    name,
                    r.version,
                    r.status,
                    note=f"the current release v{current.version} has an AMI this cloud does not know: wrong account"
                    " or endpoint? prune leaves this image alone",
                )
                for r in newest_first(releases)
                if r.version not in retained
            ]
            continue
        for release in newest_first(releases):
            if release.version not in retained:
                channels = [channel_parameter_name(name, c) for c, _ in image.channels]
                actions.append(_plan_release(name, release, now, grace, usage, channels))
    return actions


def _plan_release(
    name: str, release: Release, now: datetime, grace: timedelta, usage: Usage, channels: Sequence[str] = ()
) -> Action:
    states = {region: usage.amis.get((region, ami_id)) for region, ami_id in release.amis.items()}
    unknown = sorted(region for region, state in states.items() if state is None)
    if unknown:
        return Action("skip", name, release.version, release.status, note=f"not looked up in {', '.join(unknown)}")
    live = {region: release.amis[region] for region, state in states.items() if state is not None and state.exists}
    if release.status == "previous":
        return Action("deprecate", name, release.version, release.status, live, note="beyond retention.keep")
    if not live:
        return Action(
            "retire",
            name,
            release.version,
            release.status,
            note="its AMIs no longer exist in any region; only its catalog entry goes",
        )
    marks = {region: state.deprecated_at for region, state in states.items() if state is not None and state.exists}
    unmarked = {region: live[region] for region, mark in marks.items() if mark is None}
    if unmarked:
        return Action(
            "deprecate",
            name,
            release.version,
            release.status,
            unmarked,
            note=f"no {DEPRECATED_AT_TAG} tag in {', '.join(sorted(unmarked))}: its grace period starts now",
        )
    # The latest mark counts: a region deprecated later has had the shorter grace period.
    deprecated_at = max(mark for mark in marks.values() if mark is not None)
    due = deprecated_at + grace
    if now < due:
        return Action("wait", name, release.version, release.status, live, deprecated_at=deprecated_at, due=due)
    blockers: list[str] = []
    for region, ami_id in sorted(live.items()):
        parameter = parameter_name(name)
        if usage.parameters.get((region, parameter)) == ami_id:
            blockers.append(f"SSM parameter {parameter} in {region} still names {ami_id} as current")
        blockers += [
            f"SSM parameter {channel} in {region} still names {ami_id}"
            for channel in channels
            if usage.parameters.get((region, channel)) == ami_id
        ]
        blockers += [user.line() for user in usage.users.get((region, ami_id), ())]
        blockers += usage.unknown.get((region, ami_id), ())
    if blockers:
        return Action(
            "refuse",
            name,
            release.version,
            release.status,
            live,
            deprecated_at=deprecated_at,
            due=due,
            blockers=tuple(blockers),
        )
    snapshots = {region: s.snapshot_ids for region, s in states.items() if s is not None and s.exists}
    return Action(
        "retire", name, release.version, release.status, live, snapshots, deprecated_at=deprecated_at, due=due
    )


def observe(catalog: Catalog, cloud: Cloud, images: Sequence[str] | None = None, *, workers: int = 8) -> Usage:
    """Per region, in parallel: every release AMI of the images (one batched DescribeImages), who uses the
    deprecated and revoked ones (launch templates, instances), and the images' current-AMI parameters."""
    names = catalog.select(images)
    wanted: dict[str, set[str]] = {}
    retiring: dict[str, set[str]] = {}
    retiring_by_image: dict[str, dict[str, set[str]]] = {}
    parameters: dict[str, set[str]] = {}
    for name in names:
        for release in catalog.releases.get(name, ()):
            for region, ami_id in release.amis.items():
                wanted.setdefault(region, set()).add(ami_id)
                parameters.setdefault(region, set()).add(parameter_name(name))
                parameters[region].update(channel_parameter_name(name, c) for c, _ in catalog.images[name].channels)
                if release.status not in RETAINED:
                    retiring.setdefault(region, set()).add(ami_id)
                    retiring_by_image.setdefault(name, {}).setdefault(region, set()).add(ami_id)

    def look(region: str) -> tuple[dict[str, ImageDetails], list[ImageUser], dict[str, str]]:
        found = cloud.describe_images(region, wanted[region])
        users = cloud.image_users(region, retiring[region]) if retiring.get(region) else []
        values = {n: p.value for n, p in cloud.get_parameters(region, parameters[region]).items()}
        return found, users, values

    amis: dict[tuple[str, str], AmiState] = {}
    users: dict[tuple[str, str], list[ImageUser]] = {}
    values: dict[tuple[str, str], str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="prune") as pool:
        answers = {region: pool.submit(look, region) for region in sorted(wanted)}
        for region, answer in answers.items():
            found, region_users, region_values = answer.result()
            for ami_id in wanted[region]:
                amis[(region, ami_id)] = AmiState.of(found.get(ami_id))
            for user in region_users:
                users.setdefault((region, user.ami_id), []).append(user)
            values.update({(region, n): v for n, v in region_values.items()})
    elsewhere, unknown = users_elsewhere(catalog, cloud, retiring_by_image)
    for key, found_there in elsewhere.items():
        users.setdefault(key, []).extend(found_there)
    return Usage(
        amis,
        {key: tuple(found) for key, found in users.items()},
        values,
        {key: tuple(why) for key, why in unknown.items()},
    )


@dataclass(frozen=True)
class PruneOutcome:
    """What became of one action: done (its catalog edit made), or the error that stopped it."""

    action: Action
    done: bool
    error: str = ""


@dataclass(frozen=True)
class PruneReport:
    dry_run: bool
    now: datetime
    outcomes: tuple[PruneOutcome, ...]
    notes: tuple[str, ...] = ()

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(o.action for o in self.outcomes)

    @property
    def refused(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == "refuse")

    @property
    def failures(self) -> tuple[PruneOutcome, ...]:
        return tuple(o for o in self.outcomes if o.error)

    def lines(self) -> list[str]:
        out: list[str] = []
        for outcome in self.outcomes:
            action = outcome.action
            if action.kind in ("deprecate", "retire"):
                if self.dry_run:
                    verb = f"would {action.kind}"
                elif outcome.done:
                    verb = "deprecated" if action.kind == "deprecate" else "retired"
                else:
                    verb = f"FAILED to {action.kind}"
            else:
                verb = {"wait": "waiting", "refuse": "REFUSED", "skip": "skipped"}[action.kind]
            out += action.lines(verb)
            if outcome.error:
                out.append(f"    error: {outcome.error}")
        out += [f"note: {note}" for note in self.notes]
        counts = {kind: sum(1 for a in self.actions if a.kind == kind) for kind in ("deprecate", "retire")}
        tense = "would" if self.dry_run else "did"
        out.append(
            f"prune ({iso(self.now)}): {tense} deprecate {counts['deprecate']} and retire {counts['retire']} "
            f"release(s); {len(self.refused)} refused, {len(self.failures)} failed"
            + ("; dry run, nothing changed" if self.dry_run else "")
        )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "now": iso(self.now),
            "actions": [o.action.as_dict() | {"done": o.done, "error": o.error or None} for o in self.outcomes],
            "notes": list(self.notes),
        }

    def raise_for_outcome(self) -> None:
        """CloudError (exit 5) if a step failed, else PolicyError (exit 6) if a retirement was refused."""
        if self.failures:
            raise CloudError(
                f"prune failed for {len(self.failures)} release(s); the others were pruned",
                hint="fix the cause and run `stamp prune` again: it picks up where it stopped",
            )
        if self.refused:
            names = ", ".join(f"{a.image} v{a.version}" for a in self.refused)
            raise PolicyError(
                f"refused to retire {names}: still in use (listed above); everything else was pruned",
                hint="move the users to the current release, then run `stamp prune` again",
            )


def prune(
    catalog_path: Path,
    cloud: Cloud,
    images: Sequence[str] | None = None,
    *,
    now: datetime,
    dry_run: bool = False,
) -> PruneReport:
    """Observe, plan and apply retention under the catalog lock; a dry run reads and prints only.

    Cloud work comes first and the catalog edit last, for the actions whose cloud work all succeeded, so a
    failure leaves the release as it was in the catalog and the next prune finishes it.
    """
    if dry_run:
        _, catalog = store.read_checked(catalog_path)
        actions = plan_prune(catalog, now, observe(catalog, cloud, images), images)
        return PruneReport(True, now, tuple(PruneOutcome(a, done=False) for a in actions), _orphan_notes(catalog))
    with store.catalog_lock(catalog_path):
        text, catalog = store.read_checked(catalog_path)
        actions = plan_prune(catalog, now, observe(catalog, cloud, images), images)
        outcomes, notes = apply_prune(cloud, actions, now)
        edited = text
        for outcome in outcomes:
            action = outcome.action
            if not outcome.done or action.new_status is None:
                continue
            if action.new_status == "removed":
                edited = catalog_edit.without_releases(edited, action.image, [action.version])
            else:
                edited = catalog_edit.set_status(edited, action.image, action.version, action.new_status)
        store.write_checked(catalog_path, text, edited, command="stamp prune")
    return PruneReport(False, now, tuple(outcomes), (*notes, *_orphan_notes(catalog)))


def apply_prune(cloud: Cloud, actions: Sequence[Action], now: datetime) -> tuple[list[PruneOutcome], list[str]]:
    """The cloud side of each action, one at a time; an error stops that action only."""
    outcomes: list[PruneOutcome] = []
    unsupported: set[str] = set()
    for action in actions:
        if action.kind not in ("deprecate", "retire"):
            outcomes.append(PruneOutcome(action, done=False))
            continue
        try:
            if action.kind == "deprecate":
                unsupported |= _deprecate(cloud, action, now)
            else:
                _retire(cloud, action)
        except CloudError as exc:
            outcomes.append(PruneOutcome(action, done=False, error=exc.message))
            continue
        outcomes.append(PruneOutcome(action, done=True))
    notes = [
        f"EnableImageDeprecation is not implemented by this endpoint in {region} (moto answers HTTP 500): the "
        f"AMIs deprecated there carry only the tag {DEPRECATED_AT_TAG}={iso(now)} and stay in image listings"
        for region in sorted(unsupported)
    ]
    return outcomes, notes


def _deprecate(cloud: Cloud, action: Action, now: datetime) -> set[str]:
    unsupported: set[str] = set()
    for region, ami_id in sorted(action.amis.items()):
        # Deprecation hides the AMI from other accounts' listings, but it stays launchable by its ID:
        # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ami-deprecate.html
        if not cloud.enable_image_deprecation(region, ami_id, now):
            unsupported.add(region)
        cloud.create_tags(region, [ami_id], {DEPRECATED_AT_TAG: iso(now)})
    return unsupported


def _retire(cloud: Cloud, action: Action) -> None:
    for region, ami_id in sorted(action.amis.items()):
        # Deregistering keeps the AMI's snapshots (and their cost) until they are deleted too:
        # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/deregister-ami.html
        # Gone since prune looked is what prune wanted, not an error.
        with contextlib.suppress(MissingResource):
            cloud.deregister_image(region, ami_id)
        for snapshot_id in action.snapshots.get(region, ()):
            with contextlib.suppress(MissingResource):
                cloud.delete_snapshot(region, snapshot_id)


def _orphan_notes(catalog: Catalog) -> tuple[str, ...]:
    return tuple(
        f"releases.{name} has no image definition under images:; prune leaves its releases alone"
        for name in sorted(catalog.releases)
        if name not in catalog.images
    )


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    names = catalog.select(args.images or None)
    cloud = target_of(args, catalog).cloud
    report = prune(catalog.path, cloud, names, now=clock.utc_now(), dry_run=args.dry_run)
    show(report, args.format)
    if not report.dry_run and notifier.configured(catalog):
        announce(catalog, cloud, report)
    # Refusals and failures are reported after everything else was done (docs/lifecycle.md).
    report.raise_for_outcome()
    return 0


def announce(before: Catalog, cloud: Cloud, report: PruneReport) -> None:
    """release.deprecated and release.retired for what the prune did (docs/events.md); `before` is the catalog
    as it was, which still holds the retired releases."""
    done = [o.action for o in report.outcomes if o.done]
    deprecated = [a for a in done if a.kind == "deprecate" and a.new_status == "deprecated"]
    extras = {(a.image, a.version, "deprecated"): Extra(reasons=(a.note,) if a.note else ()) for a in deprecated}
    retired = []
    for action in (a for a in done if a.kind == "retire"):
        release = next(r for r in before.releases[action.image] if r.version == action.version)
        why = action.note or (
            f"{action.status} since {iso(action.deprecated_at)}, past retention.grace_days"
            if action.deprecated_at
            else ""
        )
        retired.append((action.image, release, (why,) if why else ()))
    if not deprecated and not retired:
        return
    notify = notifier.Notifier(store.read_checked(before.path)[1], cloud)
    notify.announce([(a.image, a.version) for a in deprecated], extras=extras)
    notify.announce_retired(retired)
