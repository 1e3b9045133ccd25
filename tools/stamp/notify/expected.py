"""Which events a release should have had by now, from the catalog alone (docs/events.md, Delivery).

Pure: the ledger of what was delivered is an argument, so `stamp publish` and the command that caused an event
compute the same events with the same IDs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import age, channels_of
from stamp.cloud.publish_policy import LAUNCHABLE
from stamp.notify.events import Event, EventType, SourceChange

# The prefix `stamp restore` gives a restored release's reason (tools/stamp/commands/restore.py).
RESTORED_PREFIX = "restored: "


@dataclass(frozen=True)
class Extra:
    """What only the command that caused an event knows: the plan's reasons, the notes' summary line."""

    reasons: tuple[str, ...] = ()
    notes: str | None = None


# (image, version, event key) -> what to add to that event.
Extras = Mapping[tuple[str, int, str], Extra]


def occurrence_key(name: str, count: int) -> str:
    """`revoked` for the first revocation of a release, `revoked#2` for the one after a restore, and so on."""
    return name if count == 1 else f"{name}#{count}"


def count(delivered: Collection[str], name: str) -> int:
    return sum(1 for key in delivered if key == name or key.startswith(f"{name}#"))


def source_change(catalog: Catalog, image: str, release: Release) -> SourceChange | None:
    """A root image's release built from other vendor AMIs than the release recorded before it (by age)."""
    new = release.source.amis
    if release.source.image is not None or not new:
        return None
    older = [r for r in catalog.releases.get(image, ()) if age(r) < age(release) and r.source.amis]
    if not older:
        return None
    previous = max(older, key=age)
    old = previous.source.amis or {}
    if dict(old) == dict(new):
        return None
    return SourceChange(previous.version, dict(old), dict(new))


def due_events(
    catalog: Catalog,
    image: str,
    release: Release,
    delivered: Collection[str],
    *,
    published: bool,
    extras: Extras | None = None,
    happened: Collection[str] = (),
) -> list[Event]:
    """The events of `release` that `delivered` (its ledger's keys) lacks, in the order they happen.

    - `release.recorded`: the release is in the catalog; `source.updated` too when source_change finds one.
    - `release.published`: only when `published` (publish has just shared it), for a launchable release.
    - `release.promoted`: each channel it entered after the image's first one (entering the first is recording).
    - `release.deprecated`: its status is deprecated.
    - `release.revoked` and `release.restored`: its status is revoked, or its reason says it was restored; each
      revocation after a restore is a new event (`revoked#2`), so the counts in the ledger say which are missing
      (_revocations). `happened` names the one the calling command has just made (`revoked` or `restored`).
    """
    status = release.status
    wanted: list[Event] = []

    def add(
        kind: EventType,
        key: str,
        *,
        channel: str | None = None,
        reasons: tuple[str, ...] = (),
        source: SourceChange | None = None,
    ) -> None:
        extra = (extras or {}).get((image, release.version, key)) or Extra()
        wanted.append(Event(kind, image, release, key, status, channel, reasons or extra.reasons, extra.notes, source))

    add("release.recorded", "recorded")
    change = source_change(catalog, image, release)
    if change is not None:
        add("source.updated", "source", source=change)
    if published and status in LAUNCHABLE:
        add("release.published", "published")
    first = next(iter(channels_of(catalog, image)), None)
    forced = release.forced or {}
    for channel, _since in sorted((release.channels or {}).items(), key=lambda item: (item[1], item[0])):
        if channel != first:
            reasons = (f"forced: {forced[channel]}",) if channel in forced else ()
            add("release.promoted", f"promoted:{channel}", channel=channel, reasons=reasons)
    if status == "deprecated":
        add("release.deprecated", "deprecated")
    _revocations(add, release, delivered, happened)
    return [event for event in wanted if event.key not in delivered]


def _revocations(
    add: Callable[..., None], release: Release, delivered: Collection[str], happened: Collection[str]
) -> None:
    """Revocations and restores alternate, so the ledger's counts of each (R and S) say what is missing: a revoked
    release needs R = S + 1, a restored one R = S >= 1. A whole revoke-and-restore cycle the ledger missed leaves
    the counts as they were; only the command that made one more step (`happened`) knows it took place."""
    revoked, restored = count(delivered, "revoked"), count(delivered, "restored")
    reason = release.reason or ""
    if release.status == "revoked":
        if revoked > restored:
            if "revoked" not in happened:
                return
            # Revoked again now, and the restore in between was never announced.
            add("release.restored", occurrence_key("restored", revoked))
            restored = revoked
        add("release.revoked", occurrence_key("revoked", restored + 1), reasons=(reason,) if reason else ())
        return
    if not reason.startswith(RESTORED_PREFIX):
        return
    why = (reason[len(RESTORED_PREFIX) :],)
    if revoked == restored + 1:
        add("release.restored", occurrence_key("restored", revoked), reasons=why)
    elif revoked == restored and (restored == 0 or "restored" in happened):
        add("release.revoked", occurrence_key("revoked", restored + 1))
        add("release.restored", occurrence_key("restored", restored + 1), reasons=why)
