"""Builders of what tests need again and again: a build result, a release entry, a catalog with releases, a
committed repository. Tests say only what differs from an ordinary verified build of `web` on `base` v1."""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stamp.catalog.edit import with_release
from stamp.catalog.load import Catalog, build_catalog, parse
from stamp.catalog.models import Release
from stamp.catalog.results import BuildResult

AMIS = {"us-east-1": "ami-0123456789abcdef1", "eu-west-1": "ami-0fedcba987654321f"}


def build_result(image: str = "web", build_id: str = "web-20261126150000-abcdef", **changes: Any) -> BuildResult:
    """A verified result of a build of `image` from `base` v1, as `stamp verify` leaves it; `changes` override."""
    fields: dict[str, Any] = {
        "image": image,
        "build_id": build_id,
        "cloud": "aws",
        "amis": dict(AMIS),
        "source": {"image": "base", "version": 1},
        "commit": "0a1b2c3d",
        "started_at": "2026-11-26T15:00:00Z",
        "finished_at": "2026-11-26T15:09:00Z",
        "packer_version": "1.6.6",
        "verified": "passed",
    }
    return BuildResult.model_validate(fields | changes)


def release_entry(version: int, amis: dict[str, str], status: str = "current") -> dict[str, Any]:
    """A `releases:` list item of image `web`, built from `base` version 1, as catalog.yaml holds it."""
    return {
        "version": version,
        "amis": amis,
        "built_at": f"2026-11-{version:02d}T12:00:00Z",
        "commit": "1a2b3c4d5e6f",
        "build_id": f"web-{version}-abcdef",
        "source": {"image": "base", "version": 1},
        "verified": "passed",
        "status": status,
    }


def with_releases(head: str, releases: Mapping[str, Sequence[Release]]) -> str:
    """`head` with these releases, written by stamp's own editor (oldest first, as records happen)."""
    text = head
    for image, items in releases.items():
        for release in sorted(items, key=lambda r: r.version):
            text = with_release(text, image, release)
    return text


def load_text(text: str, path: Path = Path("catalog.yaml")) -> Catalog:
    """The catalog a text says, without checking that the files it names exist."""
    return build_catalog(parse(text, path), text, path, check_files=False)


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(lines only in before, lines only in after), from a line diff."""
    removed: list[str] = []
    added: list[str] = []
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


def commit_all(root: Path) -> None:
    """`root` as a git repository with everything in it committed once, as a scratch workspace is."""
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(
            ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
            check=True,
            capture_output=True,
        )


def run_step_script(
    script: Path, *, cwd: Path, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """A workflow step's `run:` as GitHub runs one without `shell:`: `bash -e`, no profile or rc files."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", str(script)],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
