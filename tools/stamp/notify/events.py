"""Release events: what happened to which release, as the versioned JSON every target receives (docs/events.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from stamp.catalog.models import Release

# The payload's `format`: a receiver checks it before reading anything else; docs/events.schema.json describes it.
FORMAT = 1
# EventBridge's `Source` of every event stamp puts.
SOURCE = "stamp"

EventType = Literal[
    "release.recorded",
    "release.published",
    "release.promoted",
    "release.revoked",
    "release.restored",
    "release.deprecated",
    "release.retired",
    "source.updated",
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

# The status a retired release's events carry: it has left the catalog, so it has none there.
RETIRED = "retired"


@dataclass(frozen=True)
class SourceChange:
    """A root image's new release was built from other vendor AMIs than the release before it."""

    previous_version: int
    old: Mapping[str, str]
    new: Mapping[str, str]


@dataclass(frozen=True)
class Message:
    """One event as it goes out: its type, its ID, the JSON body every target receives, and a label for lines."""

    type: str
    id: str
    body: bytes
    label: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> Message:
        """The message of a payload, in the one serialisation stamp signs and sends."""
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        channel = f" to {payload['channel']}" if payload.get("channel") else ""
        label = f"{payload['type']} {payload['image']} v{payload['version']}{channel}"
        return cls(str(payload["type"]), str(payload["id"]), body, label)


@dataclass(frozen=True)
class Event:
    """One event of one release. `key` names it in the release's ledger of delivered events (ledger.py): `recorded`,
    `promoted:stable`, `revoked#2` (a second revocation after a restore); with the release's build ID it makes the
    event's ID, so a redelivery carries the ID of the first attempt."""

    type: EventType
    image: str
    release: Release
    key: str
    status: str
    channel: str | None = None
    reasons: tuple[str, ...] = ()
    notes: str | None = None
    source: SourceChange | None = None

    @property
    def id(self) -> str:
        seed = [FORMAT, self.type, self.image, self.release.version, self.release.build_id, self.key]
        return hashlib.sha256(json.dumps(seed).encode("utf-8")).hexdigest()[:32]

    def payload(self, *, time: str, run: str | None) -> dict[str, Any]:
        release = self.release
        source = None
        if self.source is not None:
            source = {
                "previous_version": self.source.previous_version,
                "old": dict(self.source.old),
                "new": dict(self.source.new),
            }
        return {
            "format": FORMAT,
            "id": self.id,
            "type": self.type,
            "time": time,
            "image": self.image,
            "version": release.version,
            "status": self.status,
            "amis": dict(release.amis),
            "build_id": release.build_id,
            "commit": release.commit,
            "channel": self.channel,
            "reasons": list(self.reasons),
            "notes": self.notes,
            "source": source,
            "run": run,
        }

    def message(self, *, time: str, run: str | None) -> Message:
        return Message.of(self.payload(time=time, run=run))


def run_link(environ: Mapping[str, str]) -> str | None:
    """The CI run that caused the event, from the variables GitHub Actions sets; None outside such a run."""
    server = environ.get("GITHUB_SERVER_URL", "").rstrip("/")
    repository = environ.get("GITHUB_REPOSITORY", "")
    run_id = environ.get("GITHUB_RUN_ID", "")
    if not (server and repository and run_id):
        return None
    return f"{server}/{repository}/actions/runs/{run_id}"
