"""The only place stamp starts processes: captures output, raises with everything on failure.

Each command is echoed as `+ cmd` through stamp.output: into the running build's log, and on stderr only with
`-v`. Long commands (Packer, pytest) stream their output into a log file; see `run_logged`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stamp import output
from stamp.errors import ProcessError


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    echo: bool = True,
    timeout: float | None = None,
    input_text: str | None = None,
) -> Completed:
    """Run a command to completion, capturing its output. `env` entries are added to the current environment."""
    if echo:
        output.command(args)
    full_env = {**os.environ, **env} if env else None
    try:
        child = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input_text is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError as exc:
        raise ProcessError(args, 127, "", f"{args[0]}: not found ({exc})") from exc
    except PermissionError as exc:  # found, but not executable (the shell's exit 126)
        raise ProcessError(args, 126, "", f"{args[0]}: not executable ({exc})") from exc
    with child:
        try:
            stdout, stderr = child.communicate(input_text, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            # subprocess.run would kill only the child, leaving what it started (a shell's commands, Packer's
            # plugins) running and holding the output pipes.
            _kill_tree(child)
            child.wait()  # not communicate(): a daemon that escaped the tree may hold the pipes open forever
            raise ProcessError(args, 124, "", f"timed out after {timeout:g} s", timed_out=True) from exc
        except BaseException:  # Ctrl-C: as subprocess.run does
            child.kill()
            raise
    result = Completed(tuple(args), child.returncode, stdout, stderr)
    if echo and child.returncode != 0:
        output.log_line(f"  exit {child.returncode}\n" + output.last_lines((stderr or stdout).splitlines(), 15))
    if check and child.returncode != 0:
        raise ProcessError(args, child.returncode, stdout, stderr)
    return result


def _kill_tree(child: subprocess.Popen[str]) -> None:
    """SIGKILL `child` and every process below it (found through /proc, where there is one)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGSTOP)  # no new children while the tree is read
    parents: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                parents.setdefault(ppid, []).append(int(entry.name))
    tree, queue = [], [child.pid]
    while queue:
        below = parents.get(queue.pop(), [])
        tree += below
        queue += below
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child.kill()


def start(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a long-running process in the background, its output going to `log` (or discarded)."""
    output.command(args, suffix=" &")
    full_env = {**os.environ, **env} if env else None
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            list(args),
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=new_session,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def run_logged(
    args: Sequence[str],
    *,
    log: Path,
    prefix: str = "",
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    show: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> Completed:
    """Run a long command, writing each output line to `log` as it comes (so the log survives a failure).

    The lines reach stderr (with `prefix`) only with `show` or `-v`; `on_line` sees each one (a step's live
    note, a failure's diagnosis). Used for Packer builds, test runs and the demo's commands.
    """
    output.command(args)
    full_env = {**os.environ, **env} if env else None
    lines: list[str] = []
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    except FileNotFoundError as exc:
        raise ProcessError(args, 127, "", f"{args[0]}: not found ({exc})") from exc
    assert proc.stdout is not None
    with log.open("a", encoding="utf-8") as sink:
        try:
            for line in proc.stdout:
                lines.append(line)
                sink.write(line)
                sink.flush()
                if show or output.verbose():
                    output.say(f"{prefix}{line.rstrip()}")
                if on_line is not None:
                    on_line(line)
            proc.wait()
        except BaseException:
            # Ctrl-C or a kill of stamp must not leave Packer running unattended.
            proc.terminate()
            proc.wait()
            raise
    text = "".join(lines)
    if check and proc.returncode != 0:
        raise ProcessError(args, proc.returncode, text, "")
    return Completed(tuple(args), proc.returncode, text, "")
