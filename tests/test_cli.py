"""The command line's manners: exit codes for bugs, interrupts and SIGTERM, and the layering contract."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import REPO
from stamp import clock
from stamp.cli import BUG_EXIT_CODE, main


def test_an_unexpected_error_prints_one_line_and_leaves_the_traceback_in_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_path: object) -> None:
        raise KeyError("no such key")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("stamp.commands.common.load_catalog", broken)
    assert main(["lookup", "web"]) == BUG_EXIT_CODE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("stamp lookup: unexpected error (a bug in stamp); the traceback is in ")
    log = Path(err.strip().rsplit(" ", 1)[1])
    assert log.parent == (tmp_path / ".stamp" / "logs").resolve()
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "KeyError: 'no such key'" in text


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_path: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("stamp.commands.common.load_catalog", interrupted)
    assert main(["lookup", "web"]) == 130
    assert capsys.readouterr().err == "stamp lookup: interrupted\n"


def test_the_layering_contract_holds_and_there_are_no_import_cycles() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_stamp_now_fixes_the_clock_and_a_bad_value_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STAMP_NOW", "2026-12-08T12:00:00Z")
    assert clock.utc_now() == datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    monkeypatch.setenv("STAMP_NOW", "next tuesday")
    assert main(["lookup", "web"]) == 2
    assert "STAMP_NOW='next tuesday' is not a time" in capsys.readouterr().err
