"""Stopping builds on request (SIGTERM, Ctrl-C): no new phase starts, and each running Packer is told to clean up."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

from stamp.errors import Stopped

# Set once stamp is asked to stop (SIGTERM, Ctrl-C): no build starts another phase after it.
_stopping = threading.Event()
_signalled: set[int] = set()
_signalled_lock = threading.Lock()


def stop_builds(signum: int = signal.SIGTERM) -> None:
    """Stop every build of this process: none starts another phase, and each running Packer gets `signum`.

    A signal sent to stamp alone never reaches Packer, and Packer cleans up only when told: on SIGTERM or
    SIGINT it terminates its instance, deletes its temporary key pair and security group, and deregisters an
    AMI it made. Builds run in worker threads, where no exception raised by a signal handler can reach them.
    """
    _stopping.set()
    signal_packer(signum)


def clear_stop() -> None:
    """Forget an earlier `stop_builds` (for a process that goes on, such as a test calling `cli.main`)."""
    _stopping.clear()
    with _signalled_lock:
        _signalled.clear()


def signal_packer(signum: int) -> None:
    """Send `signum` once to each `packer` this process started; found through /proc, so Linux only.

    Packer handles its first signal by cancelling and cleaning up; later ones would be ignored, but each gets
    one anyway, so a Packer that started just after the first call is stopped by the next.
    """
    me = os.getpid()
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            command = stat[stat.find("(") + 1 : stat.rfind(")")]
            fields = stat[stat.rfind(")") + 2 :].split()
            if command != "packer" or len(fields) < 2 or fields[1] != str(me):
                continue
            pid = int(entry.name)
            with _signalled_lock:
                if pid in _signalled:
                    continue
                _signalled.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def check_stop(name: str, build_id: str) -> None:
    if _stopping.is_set():
        raise Stopped(
            f"[{name}] build {build_id} stopped: stamp was asked to stop",
            hint=f"run it again: `stamp build {name} --build-id {build_id}` adopts what it finished",
        )


def is_stopping() -> bool:
    return _stopping.is_set()
