"""catalog.yaml on disk: read and checked under a lock, written atomically, never half-written."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from stamp.catalog import file_reading
from stamp.catalog import load as catalog_module
from stamp.catalog.load import Catalog
from stamp.catalog.text_layout import Layout
from stamp.errors import CatalogError, CatalogProblems


def lock_path(catalog_path: Path) -> Path:
    return catalog_path.with_name(f".{catalog_path.name}.lock")


@contextlib.contextmanager
def catalog_lock(catalog_path: Path) -> Iterator[None]:
    """An exclusive lock beside the catalog, so concurrent `stamp record` runs apply one after another."""
    fd = os.open(lock_path(catalog_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_part(layout: Layout, path: Path, *, what: str) -> Catalog:
    """`check_text` of everything but the other images' releases: `images:`, `defaults:` and the like in full, and
    under `releases:` only the blocks of the images being recorded.

    Why not all of it: the releases section is nearly all of a large catalog (10 MB for 1,000 images with 10
    releases in 20 regions), and parsing it twice made `stamp record` take seconds. What is given up: a problem
    in another image's releases that is already in the file goes unnoticed here (record leaves those bytes as
    they are, `Layout.confined` makes sure of it, and `stamp validate` in the pull-request check reports them).
    Only when this partial read fails is the whole file read, so problems are reported at their real lines.
    """
    text, doc = layout.text, layout.doc
    if doc.line_start < 0:
        return check_text(text, path, what=what)
    blocks = sorted((b for b in layout.blocks.values() if b is not None), key=lambda b: b.start)
    body = "".join(text[b.start : b.end] for b in blocks)
    if body and not body.endswith("\n"):
        body += doc.newline
    releases = f"releases:{doc.newline}{body}" if body else f"releases: {{}}{doc.newline}"
    part = text[: doc.line_start] + releases + text[layout.end :]
    try:
        return catalog_module.build_catalog(catalog_module.parse(part, path), part, path, check_files=False)
    except CatalogProblems:
        return check_text(text, path, what=what)


def check_text(text: str, path: Path, *, what: str, command: str = "stamp record") -> Catalog:
    try:
        return catalog_module.build_catalog(catalog_module.parse(text, path), text, path, check_files=False)
    except CatalogProblems as exc:
        if what == "the catalog":
            raise
        raise CatalogError(
            f"{command} would write an invalid catalog; {path} was left unchanged:\n" + "\n".join(exc.problems),
            hint=f"this is a bug in {command}: please report it with the releases: section of the catalog",
        ) from None


def read_checked(catalog_path: Path) -> tuple[str, Catalog]:
    """The catalog's text and what it says, for a command about to edit it (hold `catalog_lock` around both)."""
    text = file_reading.read_text(catalog_path)
    return text, check_text(text, catalog_path, what="the catalog")


def write_checked(catalog_path: Path, original: str, text: str, *, command: str) -> Catalog:
    """Validates the edited text and replaces the file atomically (only when it changed); call under the lock."""
    catalog = check_text(text, catalog_path, what="the edited catalog", command=command)
    if text != original:
        write_atomically(catalog_path, text)
    return catalog


def edit_catalog(catalog_path: Path, edit: Callable[[str, Catalog], str], *, command: str) -> Catalog:
    """Locked read, `edit(text, catalog)`, check, atomic write: how revoke and rollback change `releases:`."""
    with catalog_lock(catalog_path):
        original, catalog = read_checked(catalog_path)
        return write_checked(catalog_path, original, edit(original, catalog), command=command)


def write_atomically(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename over: readers see the old file or the new one, never half.

    Call with `catalog_lock` held: temp files a killed writer left are removed first (see _remove_stale_temp_files).
    A write that fails (a full disk, a file-size limit) removes its temp file and becomes one CatalogError.
    """
    data = text.encode("utf-8")
    mode = stat.S_IMODE(path.stat().st_mode)
    _remove_stale_temp_files(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_failed(path, exc) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_failed(path, exc) from None
        raise
    # The rename is durable only once the folder's entry is on disk too.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _remove_stale_temp_files(path: Path) -> None:
    """Remove the temp files (`.catalog.yaml.XXXXXXXX.tmp`) that writers killed mid-write left beside `path`.

    Only stale ones: every writer holds `catalog_lock` from before it makes its temp file until the rename, so
    with the lock held no live writer has one. They are git-ignored too (.gitignore), so none gets committed.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    Path(entry.path).unlink()


def _write_failed(path: Path, exc: OSError) -> CatalogError:
    """One line for a write that failed: which file, the system's words, that it is intact, and what to do."""
    reason = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or 0)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        action = f"free space on the disk holding {path.parent} (or raise the quota)"
    elif exc.errno == errno.EFBIG:
        action = "raise the file-size limit (`ulimit -f`) above the catalog's size"
    else:
        action = f"check that {path.parent} is writable"
    what = f"{reason} ({code})" if code else reason
    return CatalogError(f"cannot write {path}: {what}; it was left unchanged: {action}, then run the command again")
