"""`stamp workspace DIR`: a scratch copy of the repository, with its own git history, where local-cloud releases may
be recorded (docs/local-cloud.md, Workspaces)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from stamp.commands.demo import copy_repository
from stamp.commands.record import WORKSPACE_MARKER
from stamp.drivers import proc
from stamp.errors import ProcessError, StampError
from stamp.output import say

# The one commit of a workspace is made under this name, whoever runs it; later commits are the user's own.
AUTHOR = ("-c", "user.name=stamp workspace", "-c", "user.email=workspace@stamp.invalid")


def make_workspace(source: Path, workspace: Path) -> str:
    """Copy `source` (what git lists: tracked and untracked-but-not-ignored files) into `workspace`, give it a git
    history of one commit and the marker that lets local-cloud releases be recorded there; returns that commit.

    `workspace` must not exist, or be an empty folder: nothing in it is ever overwritten (exit 1).
    """
    if workspace.exists() and (not workspace.is_dir() or any(workspace.iterdir())):
        raise StampError(
            f"{workspace} exists and is not an empty folder: a workspace is made only where nothing would be"
            " overwritten",
            hint="name a new folder (or an empty one)",
        )
    if source.resolve() == workspace.resolve():
        raise StampError(f"{workspace} is the repository itself", hint="name a new folder for the workspace")
    made = not workspace.exists()
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        copy_repository(source, workspace)
        marker = workspace / WORKSPACE_MARKER
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

        def git(*args: str) -> str:
            return proc.run(["git", "-C", str(workspace), *args], echo=False).stdout.strip()

        git("init", "-q", "-b", "main")
        git("add", "-A")
        git(*AUTHOR, "commit", "-q", "-m", f"stamp workspace: a copy of {source.name}{_at(source)}")
        return git("rev-parse", "HEAD")
    except (OSError, ProcessError) as exc:
        if made:
            shutil.rmtree(workspace, ignore_errors=True)
        else:
            for child in workspace.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        if isinstance(exc, ProcessError):
            raise
        raise StampError(
            f"cannot make the workspace {workspace}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else ""),
            hint=f"nothing was left in {workspace}; make room or name a folder elsewhere, then run it again",
        ) from None


def _at(source: Path) -> str:
    """` at <commit>` of the source repository (`+ changes` when its working tree differs), or "" without git."""
    head = proc.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], check=False, echo=False)
    if head.returncode != 0:
        return ""
    dirty = proc.run(["git", "-C", str(source), "status", "--porcelain"], check=False, echo=False).stdout.strip()
    return f" at {head.stdout.strip()}" + (" + uncommitted changes" if dirty else "")


def run(args: argparse.Namespace) -> int:
    catalog = Path(args.catalog)
    if not catalog.is_file():
        raise StampError(
            f"no catalog at {catalog.absolute()}: a workspace is a copy of a stamp repository",
            hint="run it in the repository (the folder of catalog.yaml), or pass --catalog PATH",
        )
    source = catalog.resolve().parent
    workspace = Path(args.dir)
    commit = make_workspace(source, workspace)
    say(f"workspace {workspace}: a copy of {source} with its own git history (commit {commit[:12]})")
    say(
        f"  local-cloud releases may be recorded there ({WORKSPACE_MARKER} marks it): cd {workspace} &&"
        " stamp release --cloud local IMAGE"
    )
    print(workspace.resolve())
    return 0
