"""The one clock and time format: UTC, to the second, written as 2026-11-26T15:00:00Z everywhere."""

from __future__ import annotations

import os
from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# A fixed "now" for rehearsals and the demo (`STAMP_NOW=2026-12-08T12:00:00Z stamp promote --due`): what soak
# times, grace periods and scheduled revocations will say then, without waiting (docs/contract.md, Time).
NOW_VARIABLE = "STAMP_NOW"


def utc_now() -> datetime:
    """Now, in UTC, to the second (or STAMP_NOW); tests replace this one function to move time."""
    fixed = os.environ.get(NOW_VARIABLE, "").strip()
    if fixed:
        moment = parse_time(fixed)
        if moment is None:
            raise ValueError(f"{NOW_VARIABLE}={fixed!r} is not a time such as 2026-12-08T12:00:00Z")
        return moment.replace(microsecond=0)
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """`moment` in UTC as stamp writes times; a naive datetime is taken to be UTC already."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime(FORMAT)


def parse_time(value: str) -> datetime | None:
    """A UTC time written by stamp (or a person), or None when it is not one: the caller restarts the clock."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
