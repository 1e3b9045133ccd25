"""What publish changed, or in a dry run would change: per release AMI and region, and in all, as printable
lines and as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stamp.cloud.protocol import ShareDiff, ShareSet
from stamp.cloud.publish_policy import REMOVED


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
