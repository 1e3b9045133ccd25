"""Reads catalog.yaml's text: only a regular UTF-8 file within the size limit, looked at before it is read."""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path

from stamp.catalog import yamlsafe
from stamp.catalog.problem_text import display
from stamp.errors import CatalogProblems


def read_text(path: Path) -> str:
    """The catalog's text: a regular UTF-8 file within the size limit, looked at (stat) before it is read."""
    where = display(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CatalogProblems(
            [f"{where}: no such file (pass --catalog PATH, or run stamp from the repository root)"]
        ) from None
    except OSError as exc:
        raise CatalogProblems([f"{where}: cannot read: {exc.strerror}"]) from None
    _refuse_special(info, where)
    try:
        # Non-blocking, so a pipe swapped in after the stat cannot hang the open; fstat checks what was opened.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CatalogProblems([f"{where}: cannot read: {exc.strerror}"]) from None
    with os.fdopen(fd, "rb") as handle:
        _refuse_special(os.fstat(handle.fileno()), where)
        raw = handle.read(yamlsafe.MAX_BYTES + 1)
    if len(raw) > yamlsafe.MAX_BYTES:
        raise CatalogProblems([_too_big(where, len(raw))])
    for bom, encoding in _FOREIGN_BOMS:
        if raw.startswith(bom):
            raise CatalogProblems(
                [f"{where}:1:1: the file is {encoding} (it starts with that byte-order mark); save it as UTF-8"]
            )
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw[:nul].count(b"\n") + 1
        raise CatalogProblems([f"{where}:{line}: contains NUL bytes; it is not a text file"])
    try:
        # A UTF-8 byte-order mark is accepted (YAML allows it) and kept, so `stamp record` keeps it too.
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogProblems([f"{where}:{line}: not valid UTF-8 (byte {exc.start}); save it as UTF-8"]) from None


# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _refuse_special(info: os.stat_result, where: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise CatalogProblems([f"{where}: is a folder; pass the catalog file itself (--catalog PATH/catalog.yaml)"])
    if not stat.S_ISREG(info.st_mode):
        raise CatalogProblems(
            [f"{where}: is not a regular file (a pipe, socket or device); save the catalog as a file and pass that"]
        )
    if info.st_size > yamlsafe.MAX_BYTES:
        raise CatalogProblems([_too_big(where, info.st_size)])


def _too_big(where: str, size: int) -> str:
    return f"{where}: {size} bytes is more than the {yamlsafe.MAX_BYTES}-byte limit for a catalog"
