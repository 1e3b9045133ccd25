"""Retention, revocation and rollback: planned from the catalog and the cloud, then applied to both."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal

from stamp import record as record_module
from stamp.catalog import Catalog
from stamp.cloud import REVOKED_TAG, TAG_VALUE_MAX, Cloud, ImageDetails, ImageUser, MissingResource
from stamp.errors import CatalogError, CloudError, PolicyError, UsageError
from stamp.models import Release
from stamp.share import PublishFailed, PublishReport, parameter_name, publish

# Written on every AMI prune deprecates. It is stamp's grace clock on AWS too (one tag read from the
# DescribeImages answer prune makes anyway), and the only deprecation mark where the endpoint has no
# EnableImageDeprecation (moto answers HTTP 500).
DEPRECATED_AT_TAG = "stamp:deprecated-at"
# Statuses retention counts: launchable releases that are not on their way out.
RETAINED = frozenset({"current", "previous"})

ActionKind = Literal["deprecate", "wait", "retire", "refuse", "skip"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime | None:
    """A UTC time written by stamp (or a person), or None when it is not one: the caller restarts the clock."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _newest_first(releases: Iterable[Release]) -> list[Release]:
    return sorted(releases, key=lambda r: r.version, reverse=True)


def age(release: Release) -> tuple[str, int]:
    # When a build started orders releases (an older build recorded late gets a higher version); the
    # version breaks ties.
    return (release.built_at, release.version)


# -- prune: the pure plan ----------------------------------------------------------------------------------


def retained_versions(releases: Sequence[Release], keep: int) -> set[int]:
    """The current release and the newest `previous` ones, `keep` in all: what prune leaves launchable."""
    ordered = _newest_first(releases)
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
    - Retirement is refused while the image's SSM parameter, a launch template or a live instance uses the AMI.
    """
    actions: list[Action] = []
    for name in catalog.select(images):
        image = catalog.images[name]
        releases = catalog.releases.get(name, ())
        retained = retained_versions(releases, image.retention.keep)
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
                for r in _newest_first(releases)
                if r.version not in retained
            ]
            continue
        for release in _newest_first(releases):
            if release.version not in retained:
                actions.append(_plan_release(name, release, now, grace, usage))
    return actions


def _plan_release(name: str, release: Release, now: datetime, grace: timedelta, usage: Usage) -> Action:
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
        blockers += [user.line() for user in usage.users.get((region, ami_id), ())]
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


# -- prune: looking at the cloud, and applying ----------------------------------------------------------------


def observe(catalog: Catalog, cloud: Cloud, images: Sequence[str] | None = None, *, workers: int = 8) -> Usage:
    """Per region, in parallel: every release AMI of the images (one batched DescribeImages), who uses the
    deprecated and revoked ones (launch templates, instances), and the images' current-AMI parameters."""
    names = catalog.select(images)
    wanted: dict[str, set[str]] = {}
    retiring: dict[str, set[str]] = {}
    parameters: dict[str, set[str]] = {}
    for name in names:
        for release in catalog.releases.get(name, ()):
            for region, ami_id in release.amis.items():
                wanted.setdefault(region, set()).add(ami_id)
                parameters.setdefault(region, set()).add(parameter_name(name))
                if release.status not in RETAINED:
                    retiring.setdefault(region, set()).add(ami_id)

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
    return Usage(amis, {key: tuple(found) for key, found in users.items()}, values)


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
        _, catalog = record_module.read_checked(catalog_path)
        actions = plan_prune(catalog, now, observe(catalog, cloud, images), images)
        return PruneReport(True, now, tuple(PruneOutcome(a, done=False) for a in actions), _orphan_notes(catalog))
    with record_module.catalog_lock(catalog_path):
        text, catalog = record_module.read_checked(catalog_path)
        actions = plan_prune(catalog, now, observe(catalog, cloud, images), images)
        outcomes, notes = apply_prune(cloud, actions, now)
        edited = text
        for outcome in outcomes:
            action = outcome.action
            if not outcome.done or action.new_status is None:
                continue
            if action.new_status == "removed":
                edited = record_module.without_releases(edited, action.image, [action.version])
            else:
                edited = record_module.set_status(edited, action.image, action.version, action.new_status)
        record_module.write_checked(catalog_path, text, edited, command="stamp prune")
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


# -- revoke ------------------------------------------------------------------------------------------------

Usable = Callable[[str, Release], bool]


def _always(_image: str, _release: Release) -> bool:
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


def find_release(catalog: Catalog, image: str, version: int) -> Release:
    release = next((r for r in catalog.releases.get(image, ()) if r.version == version), None)
    if release is None:
        versions = ", ".join(str(r.version) for r in _newest_first(catalog.releases.get(image, ()))) or "none"
        raise CatalogError(f"image '{image}' has no release {version}", hint=f"its releases: {versions}")
    return release


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
            for child in _newest_first(catalog.releases.get(name, ())):
                source = child.source
                by_name = source.image == parent and source.version == release.version
                by_ami = source.amis is not None and bool(parent_amis & set(source.amis.values()))
                if (by_name or by_ami) and (name, child.version) not in seen:
                    seen.add((name, child.version))
                    found.append(Descendant(name, child.version, (parent, release.version)))
                    queue.append((name, child))
    return found


def next_current(
    catalog: Catalog, image: str, *, excluding: Collection[int] = (), usable: Usable = _always
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
    usable: Usable = _always,
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
    return RevokePlan(
        image, version, reason, with_descendants, tuple(revocations), tuple(descendants), tuple(new_current)
    )


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


def revoke(catalog_path: Path, cloud: Cloud, plan: RevokePlan, *, usable: Usable = _always) -> RevokeReport:
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
            text = record_module.set_status(text, revocation.image, revocation.version, "revoked", revocation.reason)
        for image, version in plan.new_current:
            if version is not None:
                text = record_module.set_status(text, image, version, "current")
        return text

    catalog = record_module.edit_catalog(catalog_path, edit, command="stamp revoke")
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


# -- rollback ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackReport:
    image: str
    previous_current: int | None
    current: int
    publish: PublishReport

    def lines(self) -> list[str]:
        was = f"v{self.previous_current} is previous" if self.previous_current is not None else "none was current"
        return [f"rollback {self.image}: v{self.current} is current; {was}", *self.publish.lines()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "previous_current": self.previous_current,
            "current": self.current,
            "publish": self.publish.as_dict(),
        }


def plan_rollback(catalog: Catalog, image: str, *, usable: Usable = _always) -> tuple[Release | None, Release]:
    """(the current release, the one to make current): the newest `previous` release built before it."""
    catalog.select([image])
    current = catalog.current_release(image)
    target = next_current(catalog, image, usable=usable)
    if target is None:
        skipped = [
            f"v{r.version} {r.status}" for r in _newest_first(catalog.releases.get(image, ())) if r.status != "current"
        ]
        raise CatalogError(
            f"image '{image}' has no previous good release to roll back to"
            + (f" from v{current.version}" if current else ""),
            hint=(
                "a rollback target is a `previous` release built before the current one whose AMIs all exist"
                + (f" (other releases: {', '.join(skipped)})" if skipped else "")
                + f"; release a fixed build instead (`stamp release {image}`)"
            ),
        )
    return current, target


def rollback(catalog_path: Path, cloud: Cloud, image: str) -> RollbackReport:
    """Makes the previous good release current (the current one becomes `previous`) and republishes."""
    usable = amis_exist(cloud)
    chosen: list[tuple[Release | None, Release]] = []

    def edit(text: str, catalog: Catalog) -> str:
        current, target = plan_rollback(catalog, image, usable=usable)
        chosen.append((current, target))
        return record_module.set_status(text, image, target.version, "current")

    catalog = record_module.edit_catalog(catalog_path, edit, command="stamp rollback")
    current, target = chosen[0]
    report = republish(catalog, cloud, [image], done=f"{image} v{target.version} is current in the catalog")
    return RollbackReport(image, current.version if current else None, target.version, report)


# -- asking at a terminal -----------------------------------------------------------------------------------


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
