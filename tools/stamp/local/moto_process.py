"""The local cloud's moto server as a process: started in its own session, asked whether it answers, told apart
from a paused or hung one, and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from stamp.drivers import proc
from stamp.errors import CloudError
from stamp.local.state_file import LocalCloud

MOTO_START_TIMEOUT = 30.0
# How long a running (not paused) moto server that does not answer gets before it is reported hung: long enough
# for one busy with other requests on a loaded 2-core machine (10 s proved too short in the full suite).
MOTO_ANSWER_GRACE = 30.0


def moto_answers(endpoint_url: str, timeout: float = 2.0) -> bool:
    """Whether the moto server's dashboard answers (Packer would retry ~50 s against a dead endpoint)."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def pid_is_moto(pid: int) -> bool:
    """Whether `pid` is alive and is our moto server (not an unrelated process that reused the pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"stamp.local.motoserver" in cmdline.read_bytes()
        except OSError:
            return False
    return True


def _process_state(pid: int) -> str | None:
    """The one-letter state of `pid` in /proc (`T` stopped, `t` traced, `Z` zombie…), or None if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def check_answers(cloud: LocalCloud) -> bool:
    """True once the live moto server answers, False if it died meanwhile (a kill is not instant); a busy one gets
    MOTO_ANSWER_GRACE, then a CloudError."""
    pid, url = cloud.moto_pid, cloud.endpoint_url
    deadline = time.monotonic() + MOTO_ANSWER_GRACE
    while True:
        paused = _process_state(pid) in ("T", "t")
        if paused or time.monotonic() > deadline:
            break
        if moto_answers(url, timeout=min(MOTO_ANSWER_GRACE, 3.0)):
            return True
        if not pid_is_moto(pid) or not pid_alive(pid):
            return False
        time.sleep(0.2)
    how = (
        f"it is paused (stopped by a signal): `kill -CONT {pid}` resumes it, or restart it with"
        if paused
        else "it is hung:"
    )
    raise CloudError(
        f"the local cloud's EC2 API at {url} (moto, pid {pid}) does not answer; {how} "
        "`stamp local down && stamp local up` (every AMI built in it is lost)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Path, lines: int = 15) -> str:
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def start_moto(root: Path, amis_path: Path, *, enforce_iam: bool = False) -> tuple[str, int]:
    """Start the moto server in its own session (it outlives stamp) and wait until it answers."""
    log = root / "moto.log"
    last_error = ""
    for _attempt in range(3):
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        child = proc.start(
            [
                sys.executable,
                "-m",
                "stamp.local.motoserver",
                "--port",
                str(port),
                *(["--enforce-iam"] if enforce_iam else []),
            ],
            env={"MOTO_AMIS_PATH": str(amis_path)},
            log=log,
            new_session=True,
        )
        deadline = time.monotonic() + MOTO_START_TIMEOUT
        while time.monotonic() < deadline:
            if moto_answers(endpoint, timeout=1.0):
                return endpoint, child.pid
            if child.poll() is not None:
                break
            time.sleep(0.1)
        if child.poll() is None:
            child.kill()
            child.wait()
            last_error = f"it did not answer on {endpoint}/moto-api/ within {MOTO_START_TIMEOUT:.0f} s"
            break
        # Most likely another process took the port between choosing it and binding it: try another.
        last_error = f"it exited with code {child.returncode}"
    raise CloudError(
        f"local cloud: the moto server did not start ({last_error})\n{_log_tail(log)}",
        hint=f"see {log}; check that moto is installed in stamp's environment (`pip install 'moto[server]'`)",
    )


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a paused server acts on the SIGTERM only once it runs again
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    # A child of ours that exited stays a zombie until reaped: count it as gone.
    with contextlib.suppress(ChildProcessError):
        waited, _status = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
