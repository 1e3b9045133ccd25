"""One build of an image at a time per workspace: an flock on `build/<image>/.build.lock`."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from stamp.errors import PolicyError

LOCK_FILE = ".build.lock"


def lock_path(build_root: Path, image: str) -> Path:
    return build_root / image / LOCK_FILE


@contextlib.contextmanager
def build_lock(build_root: Path, image: str) -> Iterator[None]:
    """Hold the image's build lock for the block, or refuse at once (exit 6) while another build holds it.

    Two builds of one image in one workspace would render into the same folder, share its Packer manifest and
    overwrite each other's result.json. The lock is an flock: it goes with the process that holds it, so a
    killed build never leaves the image locked. The holder's pid is written into the file for the message.
    """
    path = lock_path(build_root, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise PolicyError(
                f"build in progress: another build of '{image}' in this workspace holds {path}"
                + (f" (pid {holder})" if holder else "")
                + "; wait for it to finish, or stop it, then build again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> int | None:
    """The pid the holder wrote, when it did."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
