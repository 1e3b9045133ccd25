"""What the reliability tests tried and what went wrong, per row of the printed table."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

# The rows the issue asks for, in this order; tests may add others.
ROWS = (
    ("builds killed", "orphans left after gc"),
    ("private keys left in build/", "keys found"),
    ("concurrent writers", "lost updates"),
    ("throttles injected", "failures below the bound"),
    ("hostile inputs tried", "tracebacks or side effects"),
    ("verified builds at gc", "removed"),
    ("reverted revocations", "shared again"),
    ("dead or foreign AMIs", "recorded"),
    ("re-run scenarios", "did not converge"),
)


@dataclass
class Scoreboard:
    tried: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bad: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, row: str, *, tried: int, bad: int) -> None:
        """Count `tried` attempts and `bad` outcomes under `row` (one of ROWS' first column)."""
        self.tried[row] += tried
        self.bad[row] += bad
