"""Ten `stamp record` processes at once into one catalog: every release lands, the file stays valid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_hostile import CATALOG, make_repo

from builders import build_result
from conftest import MakeAmi, MotoEndpoint
from scoreboard import Scoreboard
from stamp.catalog.load import load_catalog
from stamp.catalog.results import BuildResult, write_result
from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG

WRITERS = 10


def _result(index: int, amis: dict[str, str]) -> BuildResult:
    # Start times in a scrambled order, so the newest build is not always the last one to finish recording.
    minute = (index * 7) % WRITERS
    return build_result(
        build_id=f"web-par-{index}",
        amis=amis,
        commit=f"{index:02d}a1b2c3d4",
        started_at=f"2026-11-21T15:{minute:02d}:00Z",
    )


def test_concurrent_record_processes_lose_no_update(
    tmp_path: Path, scoreboard: Scoreboard, make_ami: MakeAmi, moto: MotoEndpoint
) -> None:
    repo = make_repo(tmp_path / "repo")
    catalog = repo / "catalog.yaml"
    prefix = CATALOG[: CATALOG.index("releases:")]
    outs = []
    for index in range(WRITERS):
        # Verified AMIs in the moto server, so record's cloud checks (tests/test_custody.py) pass.
        tags = {BUILD_ID_TAG: f"web-par-{index}", VERIFIED_TAG: VERIFIED}
        amis = {region: make_ami(region, f"web-par-{index}", tags) for region in ("us-east-1", "eu-west-1")}
        out = tmp_path / f"out-{index}"
        write_result(out, _result(index, amis))
        outs.append(out)
    env = os.environ | {"AWS_ENDPOINT_URL": moto.url}
    # All ten start before any finishes: each loads the catalog, then waits for the lock to write.
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "stamp", "record", "--catalog", str(catalog), "--out", str(out)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
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
