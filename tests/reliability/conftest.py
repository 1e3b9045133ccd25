"""The reliability suite's scoreboard: tests report what they tried and what went wrong; the run prints a table."""

from __future__ import annotations

import pytest
from scoreboard import ROWS, Scoreboard

_SCOREBOARD = Scoreboard()


@pytest.fixture
def scoreboard() -> Scoreboard:
    return _SCOREBOARD


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SCOREBOARD.tried:
        return
    labels = dict(ROWS)
    rows = [name for name, _ in ROWS if name in _SCOREBOARD.tried]
    rows += sorted(set(_SCOREBOARD.tried) - set(rows))
    terminalreporter.section("reliability")
    terminalreporter.write_line(f"{'what':<24} {'tried':>6}   {'what went wrong':<28} {'count':>5}  target")
    for row in rows:
        bad = _SCOREBOARD.bad[row]
        verdict = "ok" if bad == 0 else "MISSED"
        terminalreporter.write_line(
            f"{row:<24} {_SCOREBOARD.tried[row]:>6}   {labels.get(row, 'failures'):<28} {bad:>5}  0 {verdict}"
        )
