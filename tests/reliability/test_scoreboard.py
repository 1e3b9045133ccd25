"""The scoreboard adds up what each reliability test reports."""

from __future__ import annotations

from scoreboard import Scoreboard


def test_scoreboard_adds_per_row() -> None:
    board = Scoreboard()
    board.add("builds killed", tried=2, bad=0)
    board.add("builds killed", tried=3, bad=1)
    assert board.tried["builds killed"] == 5
    assert board.bad["builds killed"] == 1
