"""Delivering events: each to every target, oldest first. A release's ledger learns of an event only once every
target took it, so whatever failed is delivered again by the next `stamp publish`: at least once, never blocking
the command that caused it (docs/events.md, Delivery)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stamp import clock
from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import channels_of, entered
from stamp.cloud.protocol import Cloud
from stamp.errors import CloudError
from stamp.notify import ledger, outbox
from stamp.notify.destinations import Destination, NotDelivered, destinations
from stamp.notify.events import RETIRED, Event, Message, run_link
from stamp.notify.expected import Extras, due_events
from stamp.output import say
from stamp.tags import NOTIFIED_TAG

# Sorts after every time: events the catalog has no time for come after those it has.
_LATER = "~"


def configured(catalog: Catalog) -> bool:
    """Whether `defaults.notify` names any target; without one, no command makes a single notification call."""
    notify = catalog.defaults.notify
    return notify is not None and bool(notify.sns or notify.eventbridge or notify.webhooks)


@dataclass
class Outcome:
    """The messages every target took, those some target did not, and, in a dry run, those that would be sent."""

    delivered: list[Message] = field(default_factory=list)
    failed: list[Message] = field(default_factory=list)
    would: list[Message] = field(default_factory=list)


class Notifier:
    """Sends the events of one command run; `time` and `run` are the same in every event it sends."""

    def __init__(
        self,
        catalog: Catalog,
        cloud: Cloud,
        *,
        environ: Mapping[str, str] | None = None,
        targets: Sequence[Destination] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.catalog = catalog
        self.cloud = cloud
        notify = catalog.defaults.notify
        if targets is None:
            targets = destinations(notify, cloud, catalog.defaults.regions[0], env) if notify is not None else []
        self.targets = list(targets)
        self.time = clock.iso(clock.utc_now())
        self.run = run_link(env)

    def send(self, message: Message) -> bool:
        """Sends to every target (a failed one does not stop the others); True when all of them took it."""
        delivered = True
        for target in self.targets:
            try:
                target.send(message)
            except NotDelivered as exc:
                say(f"notify: {message.label} not delivered to {target.name}: {exc}")
                delivered = False
        return delivered

    def announce(
        self,
        releases: Iterable[tuple[str, int]] | None = None,
        *,
        images: Sequence[str] | None = None,
        published: bool = False,
        extras: Extras | None = None,
        happened: Iterable[str] = (),
        dry_run: bool = False,
    ) -> Outcome:
        """Delivers the events the named releases (or every release of `images`) lack, oldest first, and adds
        each to its release's ledger once every target took it (expected.due_events says what they lack)."""
        outcome = Outcome()
        chosen = self._releases(releases, images)
        spots = {(image, r.version): ledger.spot_of(self.catalog, image, r) for image, r in chosen}
        try:
            ledgers = ledger.read(self.cloud, spots.values())
        except CloudError as exc:
            say(f"notify: cannot read which events were delivered ({NOTIFIED_TAG}): {exc.message}; {_AGAIN}")
            return outcome
        order = {name: index for index, name in enumerate(self.catalog.topo_order())}
        due: list[tuple[tuple[str, int, int, int], Event]] = []
        done = set(happened)
        for image, release in chosen:
            keys = ledgers.get(spots[(image, release.version)])
            if keys is None:
                continue  # its AMI is gone: no ledger to remember a delivery by, so nothing is announced
            events = due_events(self.catalog, image, release, keys, published=published, extras=extras, happened=done)
            for seq, event in enumerate(events):
                due.append(((self._when(event), order.get(image, len(order)), release.version, seq), event))
        due.sort(key=lambda item: item[0])
        delivered: dict[tuple[str, int], list[str]] = {}
        for _, event in due:
            message = event.message(time=self.time, run=self.run)
            if dry_run:
                say(f"notify: would deliver {message.label}")
                outcome.would.append(message)
            elif self.send(message):
                say(f"notify: delivered {message.label}")
                outcome.delivered.append(message)
                delivered.setdefault((event.image, event.release.version), []).append(event.key)
            else:
                outcome.failed.append(message)
        for (image, version), keys in delivered.items():
            spot = spots[(image, version)]
            try:
                ledger.write(self.cloud, spot, [*(ledgers[spot] or []), *keys])
            except CloudError as exc:
                say(
                    f"notify: cannot remember the delivery of {', '.join(keys)} ({image} v{version}) in "
                    f"{NOTIFIED_TAG} on {spot[1]} in {spot[0]}: {exc.message}; {_AGAIN}"
                )
        if outcome.failed:
            say(f"notify: {len(outcome.failed)} event(s) did not reach every target; {_AGAIN}")
        return outcome

    def announce_retired(self, retired: Sequence[tuple[str, Release, tuple[str, ...]]]) -> Outcome:
        """`release.retired` for each (image, release, reasons); one that reaches not every target waits in the
        image's parameter (outbox.py), since its AMIs, and so its ledger, are gone."""
        outcome = Outcome()
        waiting: dict[str, list[Message]] = {}
        for image, release, reasons in retired:
            event = Event("release.retired", image, release, "retired", RETIRED, reasons=reasons)
            message = event.message(time=self.time, run=self.run)
            if self.send(message):
                say(f"notify: delivered {message.label}")
                outcome.delivered.append(message)
            else:
                outcome.failed.append(message)
                waiting.setdefault(image, []).append(message)
        for image, messages in waiting.items():
            region = self._first_region(image)
            name = outbox.parameter_name(image)
            try:
                earlier = outbox.read(self.cloud, region, [image]).get(image, [])
                dropped = outbox.write(self.cloud, region, image, [*earlier, *messages])
            except CloudError as exc:
                say(f"notify: cannot keep {len(messages)} event(s) of {image} in {name} in {region}: {exc.message}")
                continue
            say(
                f"notify: kept in {name} in {region} until `stamp publish` delivers: "
                + ", ".join(m.label for m in messages)
            )
            for message in dropped:
                say(f"notify: {message.label} dropped from {name}: it holds {outbox.VALUE_MAX} bytes at most")
        return outcome

    def deliver_kept(self, images: Sequence[str], *, dry_run: bool = False) -> Outcome:
        """Delivers what waits in the images' parameters (outbox.py), and keeps there only what failed again."""
        outcome = Outcome()
        by_region: dict[str, list[str]] = {}
        for image in images:
            by_region.setdefault(self._first_region(image), []).append(image)
        for region, names in sorted(by_region.items()):
            try:
                kept = outbox.read(self.cloud, region, names)
            except CloudError as exc:
                say(f"notify: cannot read the events waiting in {region}: {exc.message}; {_AGAIN}")
                continue
            for image, messages in kept.items():
                left: list[Message] = []
                for message in messages:
                    if dry_run:
                        say(f"notify: would deliver {message.label} (waiting in {outbox.parameter_name(image)})")
                        outcome.would.append(message)
                    elif self.send(message):
                        say(f"notify: delivered {message.label}")
                        outcome.delivered.append(message)
                    else:
                        outcome.failed.append(message)
                        left.append(message)
                if dry_run or left == messages:
                    continue
                try:
                    outbox.write(self.cloud, region, image, left)
                except CloudError as exc:
                    say(f"notify: cannot update {outbox.parameter_name(image)} in {region}: {exc.message}")
        return outcome

    def _releases(
        self, releases: Iterable[tuple[str, int]] | None, images: Sequence[str] | None
    ) -> list[tuple[str, Release]]:
        if releases is None:
            names = self.catalog.topo_order() if images is None else list(images)
            return [(name, r) for name in names for r in self.catalog.releases.get(name, ())]
        wanted = set(releases)
        return [
            (name, r) for name, items in self.catalog.releases.items() for r in items if (name, r.version) in wanted
        ]

    def _when(self, event: Event) -> str:
        """When the catalog says the event happened, for the order of delivery; _LATER when it does not say."""
        release = event.release
        if event.channel is not None:
            return entered(release, event.channel) or _LATER
        if event.key in ("recorded", "source"):
            first = next(iter(channels_of(self.catalog, event.image)), None)
            return (entered(release, first) if first else None) or release.built_at
        return _LATER

    def _first_region(self, image: str) -> str:
        found = self.catalog.images.get(image)
        return found.regions[0] if found is not None else self.catalog.defaults.regions[0]


_AGAIN = "the next `stamp publish` delivers them again"
