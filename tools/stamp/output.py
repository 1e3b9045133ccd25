"""The one output channel: people read stderr, machines read stdout (`--format json`)."""

from __future__ import annotations

import json
import sys
from typing import Any, Protocol


def say(message: str) -> None:
    """Human output goes to stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr)


def emit(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


class Report(Protocol):
    def lines(self) -> list[str]: ...

    def as_dict(self) -> dict[str, Any]: ...


def show(report: Report, output: str) -> None:
    """A command's report: JSON on stdout for machines, or lines on stderr for people."""
    if output == "json":
        emit(report.as_dict())
    else:
        for line in report.lines():
            say(line)
