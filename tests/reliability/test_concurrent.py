"""Ten `stamp record` processes at once into one catalog: every release lands, the file stays valid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_hostile import CATALOG, make_repo

from scoreboard import Scoreboard
from stamp.catalog import load_catalog
from stamp.results import BuildResult, write_result

WRITERS = 10


def _result(index: int) -> BuildResult:
    # Start times in a scrambled order, so the newest build is not always the last one to finish recording.
    minute = (index * 7) % WRITERS
    return BuildResult(
        image="web",
        build_id=f"web-par-{index}",
        cloud="aws",
        amis={"us-east-1": f"ami-0{index:016x}", "eu-west-1": f"ami-1{index:016x}"},
        source={"image": "base", "version": 1},
        commit=f"{index:02d}a1b2c3d4",
        started_at=f"2026-11-21T15:{minute:02d}:00Z",
        finished_at="2026-11-21T16:00:00Z",
        packer_version="1.6.6",
        verified="passed",
    )


def test_concurrent_record_processes_lose_no_update(tmp_path: Path, scoreboard: Scoreboard) -> None:
    repo = make_repo(tmp_path / "repo")
    catalog = repo / "catalog.yaml"
    prefix = CATALOG[: CATALOG.index("releases:")]
    outs = []
    for index in range(WRITERS):
        out = tmp_path / f"out-{index}"
        write_result(out, _result(index))
        outs.append(out)
    # All ten start before any finishes: each loads the catalog, then waits for the lock to write.
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "stamp", "record", "--catalog", str(catalog), "--out", str(out)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    answers = [writer.communicate(timeout=120) for writer in writers]
    codes = [writer.returncode for writer in writers]

    text = catalog.read_text(encoding="utf-8")
    releases = load_catalog(catalog).releases.get("web", ())
    recorded = {release.build_id for release in releases}
    lost = sum(1 for index in range(WRITERS) if f"web-par-{index}" not in recorded)
    scoreboard.add("concurrent writers", tried=WRITERS, bad=lost)

    assert codes == [0] * WRITERS, [err for _out, err in answers]
    assert all("Traceback" not in err for _out, err in answers)
    assert lost == 0, sorted(recorded)
    assert sorted(r.version for r in releases) == list(range(1, WRITERS + 1)), "versions unique, none skipped"
    current = [r for r in releases if r.status == "current"]
    assert len(current) == 1 and current[0].built_at == max(r.built_at for r in releases)
    assert text.startswith(prefix), "only releases: changed"
    assert [r.version for r in releases] == sorted((r.version for r in releases), reverse=True), "newest first"
    leftovers = sorted(p.name for p in repo.iterdir() if p.name.endswith(".tmp"))
    assert leftovers == [] and os.access(catalog, os.R_OK)
