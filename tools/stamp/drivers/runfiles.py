"""Per-run private directories for SSH keys and ssh control sockets: 0700, never under build/, gone with the run."""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "stamp-run-"
# "<pid> <start time>": the start time tells a reused pid from the process that made the directory.
OWNER_FILE = "owner"
# The owner file is written right after the directory is made; without one for this long, it never will be.
UNCLAIMED_SECONDS = 60.0

# Run directories this process made and has not removed yet, with the pid that made them (a forked child exits
# without touching its parent's).
_live: dict[Path, int] = {}
_live_lock = threading.Lock()


def base_dirs() -> list[Path]:
    """Where run directories go (the first) and are looked for: a private $XDG_RUNTIME_DIR, then the temp dir."""
    found: list[Path] = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_absolute() and _is_private_dir(Path(runtime)):
        found.append(Path(runtime))
    temp = Path(tempfile.gettempdir())
    if temp not in found:
        found.append(temp)
    return found


def make_run_dir() -> Path:
    """A new 0700 directory owned by this process; `remove_run_dir`, or the interpreter's exit, removes it."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base_dirs()[0]))
    with _live_lock:
        _live[path] = os.getpid()
    try:
        path.chmod(0o700)
        pending = path / f".{OWNER_FILE}.tmp"
        pending.write_text(f"{os.getpid()} {_start_time(os.getpid())}\n", encoding="utf-8")
        pending.replace(path / OWNER_FILE)
    except BaseException:
        remove_run_dir(path)
        raise
    return path


def remove_run_dir(path: Path) -> None:
    """Remove a run directory and everything in it (keys, sockets); one already gone is fine."""
    with _live_lock:
        _live.pop(path, None)
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def run_dir() -> Iterator[Path]:
    """A private run directory for the `with` block: removed on success, error, Ctrl-C or SIGTERM alike."""
    path = make_run_dir()
    try:
        yield path
    finally:
        remove_run_dir(path)


def stale_run_dirs() -> list[Path]:
    """This user's run directories whose process is gone (a SIGKILLed run never reaches its `finally`)."""
    stale: list[Path] = []
    for base in base_dirs():
        try:
            entries = sorted(base.iterdir())
        except OSError:
            continue
        for path in entries:
            if path.name.startswith(PREFIX) and _is_private_dir(path) and not _owner_alive(path):
                stale.append(path)
    return stale


def remove_stale_run_dirs() -> list[Path]:
    """Remove the run directories of processes that are gone; returns those removed."""
    removed: list[Path] = []
    for path in stale_run_dirs():
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def _is_private_dir(path: Path) -> bool:
    """A real directory (not a link) of this user that nobody else may enter."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077 == 0


def _owner_alive(path: Path) -> bool:
    try:
        fields = (path / OWNER_FILE).read_text(encoding="utf-8").split()
        pid = int(fields[0])
    except FileNotFoundError:
        try:
            return time.time() - path.lstat().st_mtime < UNCLAIMED_SECONDS
        except OSError:
            return False
    except (OSError, ValueError, IndexError):
        return True  # unreadable: keep it rather than guess
    return _pid_alive(pid, fields[1] if len(fields) > 1 else "")


def _pid_alive(pid: int, started: str) -> bool:
    if pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return False
        except (OSError, IndexError):
            return True
        # fields[0] is the state (Z: exited, not yet reaped); fields[19] the start time in clock ticks since boot.
        if fields[0] == "Z":
            return False
        return not started or len(fields) < 20 or fields[19] == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return fields[19] if len(fields) > 19 else ""


@atexit.register
def _remove_live() -> None:
    # A safety net for a run directory whose owner never got to remove it (the interpreter exits normally on
    # SIGTERM too: the CLI turns it into an exception). SIGKILL skips this; `stamp gc` removes those.
    with _live_lock:
        left = [path for path, pid in _live.items() if pid == os.getpid()]
    for path in left:
        remove_run_dir(path)
