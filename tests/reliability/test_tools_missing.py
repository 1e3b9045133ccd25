"""Missing or broken tools and a dead local cloud: a clear error and exit code, nothing left running."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from test_hostile import ROW, Guard, assert_refused, make_repo, run_stamp

import stamp.drivers.packer
from conftest import MotoEndpoint
from scoreboard import Scoreboard

INSTALL_PACKER = "apt-get install packer"
INSTALL_PODMAN = "apt-get install -y podman"
BASE_IMAGE = "localhost/stamp/debian-base:bookworm"


@pytest.fixture
def guard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scoreboard: Scoreboard, monkeypatch: pytest.MonkeyPatch
) -> Guard:
    repo = make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    return Guard(repo, capsys, scoreboard)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the shims a test writes: no packer, no podman, no docker unless it adds one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def shim(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def all_dead(pids: list[int], wait: float = 3.0) -> bool:
    """Whether every pid is gone (or a zombie nobody has reaped yet), allowing `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive or time.monotonic() > deadline:
            return not alive
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# -- Packer ---------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("bin_dir")
@pytest.mark.parametrize("command", [["validate"], ["render", "--out", "build"]])
def test_no_packer_on_path(command: list[str], guard: Guard) -> None:
    outcome = guard.run(command)
    assert_refused(outcome, 3, "packer is not installed (not found on PATH)", INSTALL_PACKER, where=None)


def test_no_packer_in_a_real_process(guard: Guard, bin_dir: Path) -> None:
    done = run_stamp(["validate"], cwd=guard.repo, env={"PATH": str(bin_dir)})
    bad = done.returncode != 3 or "Traceback" in done.stderr or (guard.repo / "build").exists()
    guard.scoreboard.add(ROW, tried=1, bad=int(bad))
    assert done.returncode == 3 and INSTALL_PACKER in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (guard.repo / "build").exists()


BROKEN_PACKERS = {
    "exits 1": (
        'echo "Error: plugin crashed" >&2\nexit 1\n',
        "`packer version` failed (exit 1): Error: plugin crashed",
    ),
    "answers nonsense": ("echo 'hello, world'\n", "cannot read Packer's version from 'hello, world'"),
    "dies of a signal": ("kill -SEGV $$\n", "`packer version` failed (exit -11)"),
    "is not executable": (None, "`packer version` failed (exit 126): packer: not executable"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PACKERS))
def test_a_broken_packer(case: str, guard: Guard, bin_dir: Path) -> None:
    body, fragment = BROKEN_PACKERS[case]
    if body is None:
        (bin_dir / "packer").write_text("not a program\n")  # exists, but cannot be run
        (bin_dir / "packer").chmod(0o644)
    else:
        shim(bin_dir, "packer", body)
    assert_refused(guard.run(["validate"]), 3, fragment, where=None)


def test_a_hanging_packer_is_stopped_with_everything_it_started(
    guard: Guard, bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    # A shell that starts a child and waits: killing only the shell would leave the child running.
    shim(bin_dir, "packer", f"/bin/sleep 300 &\necho $! >> {pids}\necho $$ >> {pids}\nwait\n")
    monkeypatch.setattr(stamp.drivers.packer, "VERSION_TIMEOUT", 1.0)
    outcome = guard.run(["render", "--out", "build"])
    started = [int(line) for line in pids.read_text().split()]
    gone = all_dead(started)
    guard.scoreboard.add(ROW, tried=0, bad=int(not gone))
    assert_refused(outcome, 3, "`packer version` did not answer within 1 s", "command -v packer", where=None)
    assert outcome.seconds < 5
    assert gone, f"left running: {started}"


def test_a_failing_packer_build(
    guard: Guard, bin_dir: Path, moto: MotoEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    keygen = shutil.which("ssh-keygen", path=os.defpath)
    assert keygen is not None
    (bin_dir / "ssh-keygen").symlink_to(keygen)
    # The moto server runs in this process: its request log is not stamp's output.
    monkeypatch.setattr(logging.getLogger("werkzeug"), "disabled", True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    shim(
        bin_dir,
        "packer",
        'case "$1" in\n'
        "  version) echo 'Packer v1.6.6' ;;\n"
        '  build) echo "==> stamp.amazon-ebs.image: Error launching source instance: Unsupported"; exit 1 ;;\n'
        "  *) exit 0 ;;\n"
        "esac\n",
    )
    outcome = guard.run(["build", "web", "--out", "build"], may_create=("build",))
    assert_refused(outcome, 3, "packer build of image 'web' failed (exit 1)", "Unsupported", where=None)
    assert not (guard.repo / "build" / "web" / "result.json").exists()
    assert (guard.repo / "build" / "web" / "logs" / "packer.log").is_file(), "the log a failure points to is kept"


# -- container engine ----------------------------------------------------------------------------------------


def _no_state(repo: Path) -> bool:
    return not (repo / ".stamp" / "local" / "state.json").exists()


@pytest.mark.usefixtures("bin_dir")
@pytest.mark.parametrize("command", [["local", "up"], ["build", "base", "--cloud", "local"]])
def test_no_container_engine(command: list[str], guard: Guard) -> None:
    outcome = guard.run(command, may_create=(".stamp",))
    assert_refused(outcome, 5, "no working container engine", INSTALL_PODMAN, where=None)
    assert _no_state(guard.repo)


def test_container_engines_that_do_not_work(guard: Guard, bin_dir: Path) -> None:
    shim(bin_dir, "podman", 'echo "Error: unable to connect to Podman socket" >&2\nexit 125\n')
    shim(bin_dir, "docker", 'echo "Cannot connect to the Docker daemon. Is the docker daemon running?" >&2\nexit 1\n')
    outcome = guard.run(["local", "up"], may_create=(".stamp",))
    assert_refused(
        outcome,
        5,
        "podman: Error: unable to connect to Podman socket",
        "docker: Cannot connect to the Docker daemon",
        where=None,
    )
    assert _no_state(guard.repo)


# -- a local cloud whose moto server died ---------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen(["/bin/true"])
    child.wait()
    return child.pid


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_dead_cloud(repo: Path) -> None:
    root = repo / ".stamp" / "local"
    (root / "ssh").mkdir(parents=True)
    state = {
        "root": str(root),
        "endpoint_url": f"http://127.0.0.1:{_closed_port()}",
        "moto_pid": _dead_pid(),
        "engine": "podman",
        "engine_env": {},
        "base_image": BASE_IMAGE,
        "ssh_private_key": str(root / "ssh" / "id_ed25519"),
        "ssh_public_key": str(root / "ssh" / "id_ed25519.pub"),
        "ssh_config": str(root / "ssh" / "ssh_config"),
        "seeds": [],
    }
    (root / "state.json").write_text(json.dumps(state))


@pytest.mark.usefixtures("bin_dir")
def test_a_dead_local_cloud_is_named_and_how_to_fix_it(guard: Guard) -> None:
    _write_dead_cloud(guard.repo)
    env = guard.run(["local", "env"], may_create=(".stamp",))
    assert_refused(env, 5, "local cloud: not running (start it with `stamp local up`)", where=None)
    status = guard.run(["local", "status"], may_create=(".stamp",))
    assert (status.code, status.problems) == (0, []) and "not running" in status.err
    publish = guard.run(["publish", "--dry-run", "--cloud", "local"], may_create=(".stamp",))
    assert_refused(publish, 5, "has stopped (its moto server is gone)", "stamp release IMAGE", where=None)


@pytest.mark.e2e
def test_a_killed_moto_server(guard: Guard) -> None:
    """A real local cloud, its moto server killed: commands say what happened and exit 5, never hang."""
    try:
        up = run_stamp(["local", "up"], cwd=guard.repo, timeout=120)
        assert up.returncode == 0, up.stderr
        state = json.loads((guard.repo / ".stamp" / "local" / "state.json").read_text())
        os.kill(state["moto_pid"], signal.SIGKILL)
        assert all_dead([state["moto_pid"]])
        # (publish would wait out its eventual-consistency timeout for the lost AMIs first; launch looks at once.)
        launch = run_stamp(["launch", "base", "--cloud", "local"], cwd=guard.repo, timeout=60)
        bad = launch.returncode != 5 or "Traceback" in launch.stderr
        guard.scoreboard.add(ROW, tried=1, bad=int(bad))
        assert launch.returncode == 5, launch.stderr
        assert "has stopped (its moto server is gone)" in launch.stderr
        assert "AMIs of a local cloud that was restarted since are gone" in launch.stderr
    finally:
        state_file = guard.repo / ".stamp" / "local" / "state.json"
        started = [json.loads(state_file.read_text())["moto_pid"]] if state_file.is_file() else []
        down = run_stamp(["local", "down"], cwd=guard.repo, timeout=120)
        assert down.returncode == 0 and not state_file.exists(), down.stderr
        assert all_dead(started), f"moto left running: {started}"
