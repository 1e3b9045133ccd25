"""`stamp workspace DIR` refuses what is not a repository and leaves nothing behind when the copy fails; the copy
itself is tested end to end in tests/test_local_cloud_cli.py."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import pytest

from stamp.cli import main


def test_a_folder_without_a_catalog_is_refused_and_nothing_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("not a stamp repository\n")
    monkeypatch.chdir(tmp_path)
    assert main(["workspace", str(tmp_path / "ws")]) == 1
    err = capsys.readouterr().err
    assert f"no catalog at {tmp_path / 'catalog.yaml'}: a workspace is a copy of a stamp repository" in err
    assert "Traceback" not in err and not (tmp_path / "ws").exists()


def test_a_copy_that_fails_is_an_error_naming_the_file_and_leaves_no_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "repo"
    (source / "images").mkdir(parents=True)
    (source / "catalog.yaml").write_text("version: 1\nimages: {}\n")
    (source / "images" / "big.img").write_text("x")
    copy = shutil.copy2

    def full_disk(src: Any, dst: Any, **kwargs: Any) -> Any:
        if Path(src).name == "big.img":
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return copy(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copy2", full_disk)
    target = tmp_path / "ws"
    assert main(["workspace", str(target), "--catalog", str(source / "catalog.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"cannot make the workspace {target}: No space left on device ({source / 'images' / 'big.img'})" in err
    assert "Traceback" not in err and not target.exists()
