"""Writing the site's folder: built beside it, then swapped in, so a reader never sees half a site.

A folder is replaced only when it is empty or a site stamp wrote (it holds MARKER): `stamp site --out .` must
not delete a repository.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from stamp.errors import StampError, UsageError

MARKER = ".stamp-site"
MARKER_TEXT = "Written by `stamp site` (docs/site.md); the whole folder is replaced each time it runs.\n"


def write_site(out: Path, files: Mapping[str, str]) -> Path:
    """Every file (relative path → text, UTF-8) in `out`, which is replaced as a whole."""
    if out.exists() and not _replaceable(out):
        raise UsageError(
            f"{out} is not a folder `stamp site` wrote (no {MARKER} in it), and not empty: not replacing it",
            hint="pass --out a new folder, or the site folder of an earlier run",
        )
    parent = out.absolute().parent
    fresh = parent / f".{out.name}.new-{os.getpid()}"
    old = parent / f".{out.name}.old-{os.getpid()}"
    moved = False
    try:
        parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(fresh, ignore_errors=True)
        for relative, text in {**files, MARKER: MARKER_TEXT}.items():
            path = fresh / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if out.exists():
            out.rename(old)
            moved = True
        fresh.rename(out)
    except OSError as exc:
        if moved and not out.exists():
            old.rename(out)  # the earlier site stays as it was
        raise StampError(f"cannot write the site to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out


def _replaceable(out: Path) -> bool:
    if not out.is_dir() or out.is_symlink():
        return False
    return (out / MARKER).is_file() or not any(out.iterdir())
