"""`stamp promote`: a release enters a later rollout channel once it has soaked, by a surgical edit of catalog.yaml
meant for a pull request; `stamp publish` moves the channel's parameter once it is merged (docs/rollout.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from stamp import clock
from stamp.catalog import edit as catalog_edit
from stamp.catalog import store
from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import (
    age,
    channel_release,
    channels_of,
    check_channel,
    entered,
    find_release,
)
from stamp.cloud.publish_policy import channel_parameter_name
from stamp.commands.common import catalog_of, target_of
from stamp.errors import CatalogError, PromotionRefused, UsageError
from stamp.notify import notifier
from stamp.output import show

# Statuses a release may be promoted from: deprecated and revoked releases are on their way out.
PROMOTABLE = frozenset({"current", "previous"})


@dataclass(frozen=True)
class Promotion:
    """One release entering one channel: where it soaked (`after`, since when, until when), and the reason when
    `--force` skipped the rest of the soak. `already` is when it entered the channel, if it is in it already."""

    image: str
    version: int
    channel: str
    after: str | None = None
    since: str | None = None
    soak_days: int = 0
    until: str | None = None
    forced: str | None = None
    already: str | None = None

    @property
    def parameter(self) -> str:
        return channel_parameter_name(self.image, self.channel)

    def line(self, verb: str) -> str:
        head = f"{verb} {self.image} v{self.version} to {self.channel}"
        if self.after is None:
            return f"{head} (the channel recorded releases enter)"
        soak = f"in {self.after} since {self.since}, soak_days {self.soak_days}"
        if self.forced is not None:
            return f"{head} ({soak}, not over until {self.until}): forced: {self.forced}"
        return f"{head} ({soak})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "version": self.version,
            "channel": self.channel,
            "after": self.after,
            "since": self.since,
            "soak_days": self.soak_days,
            "until": self.until,
            "forced": self.forced,
            "already": self.already,
            "parameter": self.parameter,
        }


def plan_promotion(
    catalog: Catalog, image: str, channel: str, version: int | None = None, *, now: datetime, reason: str | None = None
) -> Promotion:
    """Pure: the promotion of release `version` (default: the one the `after` channel points at, or the current
    release for the first channel) into `channel`, or PolicyError (exit 6) saying why it is refused.

    Refused: a revoked or deprecated release; one newer than the current release (a rollback moved away from it);
    one older than what the channel points at; one not in the `after` channel; one whose parent release is not
    in `channel` (ancestry); and, unless `reason` is given (`--force`), one that has not soaked for `soak_days`
    in `after`. The soak is the only check `reason` overrides.
    """
    catalog.select([image])
    settings = check_channel(catalog, image, channel)
    after = settings.after
    release = _chosen(catalog, image, channel, after, version)

    def refuse(why: str, hint: str) -> PromotionRefused:
        message = f"refusing to promote {image} v{release.version} to {channel}: {why}; catalog.yaml was not changed"
        return PromotionRefused(message, why=why, hint=hint)

    if release.status not in PROMOTABLE:
        why = f"it is {release.status}" + (f" ({release.reason})" if release.reason else "")
        raise refuse(why, hint=f"promote a newer release of {image}; `stamp lookup {image} --format json` lists them")
    since_here = entered(release, channel)
    if since_here is not None:
        return Promotion(image, release.version, channel, after, already=since_here)
    current = catalog.current_release(image)
    if current is not None and age(release) > age(current):
        raise refuse(
            f"it is newer than the current release v{current.version}: a rollback moved away from it",
            hint=f"release a fixed build of {image}, which enters the first channel when recorded",
        )
    head = channel_release(catalog, image, channel)
    if head is not None and age(release) < age(head):
        raise refuse(
            f"{channel} points at v{head.version}, which is newer",
            hint="promotion moves a channel forward only; revoking or rolling back the newer release moves it back",
        )
    since: str | None = None
    until: str | None = None
    forced: str | None = None
    if after is not None:
        since = entered(release, after)
        if since is None:
            raise refuse(
                f"it is not in {after}, the channel before {channel}",
                hint=f"promote it to {after} first (`stamp promote {image} --to {after} --version {release.version}`)",
            )
    problem = ancestry_problem(catalog, release, channel)
    if problem is not None:
        parent = release.source
        raise refuse(
            problem,
            hint=f"promote {parent.image} v{parent.version} to {channel} first, or rebuild {image} on the release "
            f"{channel} points at (`stamp lookup {parent.image} --channel {channel}`)",
        )
    if after is not None and since is not None:
        start = clock.parse_time(since)
        end = (start or now) + timedelta(days=settings.soak_days)
        until = clock.iso(end)
        if start is None or now < end:
            if reason is None:
                raise refuse(
                    f"it has been in {after} since {since}; {channel} needs {settings.soak_days} day(s) there, "
                    f"until {until}",
                    hint="wait for the soak time (`stamp promote --due` lists what is due), or skip it with --force "
                    "--reason TEXT (the reason is recorded in catalog.yaml)",
                )
            forced = reason
    return Promotion(image, release.version, channel, after, since, settings.soak_days, until, forced)


def _chosen(catalog: Catalog, image: str, channel: str, after: str | None, version: int | None) -> Release:
    if version is not None:
        return find_release(catalog, image, version)
    release = channel_release(catalog, image, after) if after is not None else catalog.current_release(image)
    if release is None:
        where = f"channel {after}" if after is not None else "a current release"
        raise CatalogError(
            f"image '{image}' has no release to promote to {channel}: it has no good release in {where}",
            hint="name one with --version, or record a new build",
        )
    return release


def ancestry_problem(catalog: Catalog, release: Release, channel: str) -> str | None:
    """Why the release's parent release (its `source.image` and `source.version`) does not vouch for it in
    `channel`, or None: a release built from a vendor image has no parent release."""
    source = release.source
    if source.image is None:
        return None
    if channel not in channels_of(catalog, source.image):
        return f"its parent image '{source.image}' has no channel {channel}"
    if source.version is None:
        return f"its source names no release of its parent image '{source.image}'"
    parent = next((r for r in catalog.releases.get(source.image, ()) if r.version == source.version), None)
    if parent is None:
        return f"its parent release {source.image} v{source.version} is no longer in the catalog"
    if parent.status == "revoked":
        return f"its parent release {source.image} v{source.version} is revoked"
    if entered(parent, channel) is None:
        return f"its parent release {source.image} v{source.version} is not in {channel}"
    return None


def apply_promotion(text: str, promotion: Promotion, now: datetime) -> str:
    """The surgical edit: the release's `channels:` line gains the channel (and `forced:` the reason)."""
    text = catalog_edit.set_channel(text, promotion.image, promotion.version, promotion.channel, clock.iso(now))
    if promotion.forced is not None:
        text = catalog_edit.set_forced(text, promotion.image, promotion.version, promotion.channel, promotion.forced)
    return text


def promote(
    catalog_path: Path,
    image: str,
    channel: str,
    version: int | None = None,
    *,
    now: datetime,
    reason: str | None = None,
) -> Promotion:
    """plan_promotion on the locked catalog, then its edit; a refusal leaves the file as it was."""
    planned: list[Promotion] = []

    def edit(text: str, catalog: Catalog) -> str:
        promotion = plan_promotion(catalog, image, channel, version, now=now, reason=reason)
        planned.append(promotion)
        return text if promotion.already is not None else apply_promotion(text, promotion, now)

    store.edit_catalog(catalog_path, edit, command="stamp promote")
    return planned[0]


@dataclass(frozen=True)
class PromoteReport:
    promotion: Promotion
    # --force was given, but the soak time was over: nothing was forced, and no reason recorded.
    force_unneeded: bool = False

    def lines(self) -> list[str]:
        p = self.promotion
        if p.already is not None:
            return [f"{p.image} v{p.version} is in {p.channel} already (since {p.already}); nothing changed"]
        out = [
            p.line("promoted"),
            f"commit catalog.yaml in a pull request; once it is merged, `stamp publish` moves {p.parameter}",
        ]
        if self.force_unneeded:
            out.append("note: the soak time was over, so --force changed nothing and its reason is not recorded")
        return out

    def as_dict(self) -> dict[str, Any]:
        return self.promotion.as_dict()


@dataclass(frozen=True)
class Pending:
    """A promotion `--due` does not make: still soaking (`until` is when it is due), or blocked (`why`)."""

    image: str
    version: int
    channel: str
    why: str
    until: str | None = None

    def line(self) -> str:
        if self.until is not None:
            return f"not yet {self.image} v{self.version} to {self.channel}: {self.why}, due at {self.until}"
        return f"blocked {self.image} v{self.version} to {self.channel}: {self.why}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "version": self.version,
            "channel": self.channel,
            "why": self.why,
            "until": self.until,
        }


@dataclass(frozen=True)
class DueReport:
    applied: bool
    now: datetime
    due: tuple[Promotion, ...]
    pending: tuple[Pending, ...]

    def lines(self) -> list[str]:
        verb = "promoted" if self.applied else "due"
        out = [p.line(verb) for p in self.due]
        out += [p.line() for p in self.pending]
        if not self.due:
            out.append(f"promote --due ({clock.iso(self.now)}): no promotion is due")
        elif self.applied:
            out.append(
                f"promote --due ({clock.iso(self.now)}): {len(self.due)} promotion(s) made; commit catalog.yaml in a "
                "pull request"
            )
        else:
            out.append(
                f"promote --due ({clock.iso(self.now)}): {len(self.due)} promotion(s) due; `stamp promote --due "
                "--apply` makes them"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "now": clock.iso(self.now),
            "due": [p.as_dict() for p in self.due],
            "pending": [p.as_dict() for p in self.pending],
        }


def due_promotions(
    text: str, catalog: Catalog, now: datetime, images: Sequence[str] | None = None
) -> tuple[str, list[Promotion], list[Pending]]:
    """(the text with every due promotion made, the promotions, what is pending), images parents first and their
    channels in order, each planned on the catalog the ones before it left, so a child's promotion sees its
    parent's. Per image and channel the newest release that has soaked in `after` is promoted (an older one
    would change nothing: a channel points at its newest release)."""
    due: list[Promotion] = []
    pending: list[Pending] = []
    for name in catalog.select(images):
        for channel, settings in channels_of(catalog, name).items():
            if settings.after is None:
                continue
            soaked, waiting = _candidates(catalog, name, channel, settings.after, settings.soak_days, now)
            if waiting is not None:
                release, until = waiting
                why = f"in {settings.after} since {entered(release, settings.after)}, soak_days {settings.soak_days}"
                pending.append(Pending(name, release.version, channel, why, until))
            if soaked is None:
                continue
            try:
                promotion = plan_promotion(catalog, name, channel, soaked.version, now=now)
            except PromotionRefused as exc:
                pending.append(Pending(name, soaked.version, channel, exc.why))
                continue
            due.append(promotion)
            text = apply_promotion(text, promotion, now)
            catalog = store.check_text(text, catalog.path, what="the edited catalog", command="stamp promote --due")
    return text, due, pending


def _candidates(
    catalog: Catalog, image: str, channel: str, after: str, soak_days: int, now: datetime
) -> tuple[Release | None, tuple[Release, str] | None]:
    """(the newest release that may move from `after` into `channel` and has soaked, the newest one still soaking
    that is newer than it, with when it is due)."""
    current = catalog.current_release(image)
    head = channel_release(catalog, image, channel)
    soaked: Release | None = None
    waiting: tuple[Release, str] | None = None
    for release in sorted(catalog.releases.get(image, ()), key=age, reverse=True):
        since = entered(release, after)
        if (
            since is None
            or release.status not in PROMOTABLE
            or entered(release, channel) is not None
            or (current is not None and age(release) > age(current))
            or (head is not None and age(release) <= age(head))
        ):
            continue
        start = clock.parse_time(since)
        end = (start or now) + timedelta(days=soak_days)
        if start is not None and now >= end:
            soaked = release
            break
        if waiting is None:
            waiting = (release, clock.iso(end))
    return soaked, waiting


def promote_due(
    catalog_path: Path, now: datetime, images: Sequence[str] | None = None, *, apply: bool = False
) -> DueReport:
    """Every due promotion (`due_promotions`); with `apply`, made in catalog.yaml under the lock."""
    if not apply:
        text, catalog = store.read_checked(catalog_path)
        _, due, pending = due_promotions(text, catalog, now, images)
        return DueReport(False, now, tuple(due), tuple(pending))
    with store.catalog_lock(catalog_path):
        text, catalog = store.read_checked(catalog_path)
        edited, due, pending = due_promotions(text, catalog, now, images)
        store.write_checked(catalog_path, text, edited, command="stamp promote --due")
    return DueReport(True, now, tuple(due), tuple(pending))


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    now = clock.utc_now()
    if args.due:
        if args.to is not None or args.version is not None or args.force or args.reason is not None:
            raise UsageError(
                "--due finds the promotions itself: leave out --to, --version, --force and --reason",
                hint="stamp promote --due [IMAGE] [--apply]",
            )
        images = catalog.select([args.image]) if args.image else None
        report = promote_due(catalog.path, now, images, apply=args.apply)
        show(report, args.format)
        if report.applied:
            _announce(args, catalog, [(p.image, p.version) for p in report.due])
        return 0
    if args.apply:
        raise UsageError("--apply goes with --due", hint="stamp promote --due --apply")
    if args.image is None or args.to is None:
        raise UsageError(
            "name the image and the channel it enters", hint="stamp promote IMAGE --to CHANNEL, or stamp promote --due"
        )
    reason = (args.reason or "").strip()
    if args.force and not reason:
        raise UsageError("--force needs --reason TEXT saying why the soak time is skipped; it is recorded")
    if args.reason is not None and not args.force:
        raise UsageError("--reason goes with --force (it says why the soak time is skipped)")
    name = catalog.select([args.image])[0]
    promotion = promote(catalog.path, name, args.to, args.version, now=now, reason=reason if args.force else None)
    unneeded = args.force and promotion.already is None and promotion.forced is None
    show(PromoteReport(promotion, force_unneeded=unneeded), args.format)
    if promotion.already is None:
        _announce(args, catalog, [(name, promotion.version)])
    return 0


def _announce(args: argparse.Namespace, catalog: Catalog, releases: Sequence[tuple[str, int]]) -> None:
    """release.promoted right away, when the catalog names targets (only then is the cloud asked anything)."""
    if releases and notifier.configured(catalog):
        cloud = target_of(args, catalog).cloud
        notifier.Notifier(store.read_checked(catalog.path)[1], cloud).announce(releases)
