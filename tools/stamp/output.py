"""The one output channel: people read stderr, machines read stdout (`--format json`).

Long commands print one line per step with its elapsed time (`[web] packer build … 5.1 s`): on a terminal a
live line counts up while steps run; elsewhere (a pipe, a file, CI=true) each step is one plain line when it
ends. What tools print (Packer, apt, pytest, the container engine) goes to log files, and to stderr only with
`-v` (`set_verbose`); so do the commands stamp runs (`+ podman …`). docs/output.md has the rules.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

# Every write to stderr goes through this lock, so lines of parallel builds never mix and the live line is
# cleared before, and drawn again after, each of them.
_lock = threading.RLock()
_verbose = False


def set_verbose(on: bool) -> bool:
    """Show tool output and the commands stamp runs (`-v`); returns the previous setting."""
    global _verbose
    previous, _verbose = _verbose, on
    return previous


def verbose() -> bool:
    return _verbose


def say(message: str) -> None:
    """Human output goes to stderr so stdout stays machine-readable."""
    with _lock:
        _live.clear()
        stream = _live.real or sys.stderr
        stream.write(message + "\n")
        stream.flush()
        _live.at_line_start = True
        _live.draw()


def detail(message: str) -> None:
    """A line of a tool's output: in the current thread's log (`logging_to`), and on stderr only with `-v`."""
    log_line(message)
    if _verbose:
        say(message)


def command(args: Sequence[str], *, suffix: str = "") -> None:
    """`+ cmd`, as a shell's `set -x` prints it: in the current thread's log, and on stderr only with `-v`."""
    detail(f"+ {shlex.join(args)}{suffix}")


def emit(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


class Report(Protocol):
    def lines(self) -> list[str]: ...

    def as_dict(self) -> dict[str, Any]: ...


def show(report: Report, output: str) -> None:
    """A command's report: JSON on stdout for machines, or lines on stderr for people."""
    if output == "json":
        emit(report.as_dict())
    else:
        for line in report.lines():
            say(line)


# -- logs: what a build's thread ran, in build/<image>/logs/ ------------------------------------------------------

_thread = threading.local()


@contextmanager
def logging_to(path: Path) -> Iterator[Path]:
    """Within the block, every command this thread runs (and every `detail`) is also appended to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous: Path | None = getattr(_thread, "log", None)
    _thread.log = path
    try:
        yield path
    finally:
        _thread.log = previous


def log_line(text: str) -> None:
    path: Path | None = getattr(_thread, "log", None)
    if path is not None:
        try:
            with path.open("a", encoding="utf-8") as sink:
                sink.write(text.rstrip("\n") + "\n")
        except OSError:
            pass  # a log that cannot be written must not fail the build it describes


def last_lines(lines: Sequence[str], count: int = 30, *, indent: str = "    | ") -> str:
    """The last `count` non-blank lines, indented, for an error message."""
    shown = [line.rstrip() for line in lines if line.strip()][-count:]
    return "\n".join(indent + line for line in shown)


def elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


# -- steps: one line each, with elapsed time; a live line on a terminal -------------------------------------------


@dataclass(eq=False)
class Step:
    """One step of a long command (`[web] packer build`); `note` says what it is doing now, on the live line."""

    label: str
    what: str
    started: float = field(default_factory=time.monotonic)
    note: str = ""
    # Set when the step turned out to do nothing worth a line (it still gets one if it fails).
    silent: bool = False

    def update(self, note: str) -> None:
        with _lock:
            self.note = note
            _live.draw()

    def line(self, outcome: str = "") -> str:
        prefix = f"[{self.label}] " if self.label else ""
        took = elapsed(time.monotonic() - self.started)
        return f"{prefix}{self.what} … {f'{outcome} after {took}' if outcome else took}"

    def status(self) -> str:
        prefix = f"[{self.label}] " if self.label else ""
        now = f": {self.note}" if self.note else ""
        return f"{prefix}{self.what}{now} {int(time.monotonic() - self.started)} s"


def live_terminal(stream: IO[str] | None = None) -> bool:
    """Whether steps get a live line: stderr is a terminal, and not a CI runner's (CI=true) or a dumb one."""
    stream = stream if stream is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return tty and not ci and os.environ.get("TERM", "") != "dumb"


class _LiveLine:
    """The status line at the bottom of a terminal. While steps run, sys.stderr is wrapped so that anything
    printed (by stamp or a library) clears the line first and draws it again after a complete line."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.real: IO[str] | None = None
        self.drawn = False
        self.at_line_start = True
        self.ticker: threading.Thread | None = None
        self.wake = threading.Event()

    def start(self, step: Step) -> None:
        with _lock:
            self.steps.append(step)
            if self.real is None and live_terminal():
                self.real = sys.stderr
                sys.stderr = _LiveStream(self.real)
                if self.ticker is None or not self.ticker.is_alive():
                    self.ticker = threading.Thread(target=self._tick, name="stamp-live-line", daemon=True)
                    self.ticker.start()
            self.draw()

    def stop(self, step: Step) -> None:
        with _lock:
            if step in self.steps:
                self.steps.remove(step)
            if not self.steps and self.real is not None:
                self.clear()
                if isinstance(sys.stderr, _LiveStream):
                    sys.stderr = self.real
                self.real = None
                self.wake.set()

    def clear(self) -> None:
        if self.drawn and self.real is not None:
            self.real.write("\r\x1b[K")
            self.real.flush()
            self.drawn = False

    def draw(self) -> None:
        if self.real is None or not self.steps or not self.at_line_start:
            return
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        text = " · ".join(step.status() for step in self.steps)
        if len(text) > width:
            text = text[: width - 1] + "…"
        self.real.write("\r\x1b[K" + text)
        self.real.flush()
        self.drawn = True

    def _tick(self) -> None:
        while True:
            self.wake.wait(1.0)
            with _lock:
                self.wake.clear()
                if self.real is None:
                    self.ticker = None
                    return
                self.draw()


class _LiveStream:
    """sys.stderr while the live line shows: every write goes above the line."""

    def __init__(self, real: IO[str]) -> None:
        self._real = real

    def write(self, text: str) -> int:
        with _lock:
            _live.clear()
            written = self._real.write(text)
            if text:
                _live.at_line_start = text.endswith("\n")
            if _live.at_line_start:
                _live.draw()
            return written

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_live = _LiveLine()


@contextmanager
def step(label: str, what: str) -> Iterator[Step]:
    """Time one step and print it as one line when it ends: `[label] what … 5.1 s`, or `… failed after 5.1 s`.

    With `-v` on a plain stream the step's start is a line too, so the tool output under it can be told apart.
    """
    current = Step(label, what)
    if _verbose and not live_terminal():
        say(f"[{label}] {what} …" if label else f"{what} …")
    _live.start(current)
    outcome = "failed"
    try:
        yield current
        outcome = ""
    except BaseException as exc:
        outcome = "failed" if isinstance(exc, Exception) else "interrupted"
        raise
    finally:
        _live.stop(current)
        if outcome or not current.silent:
            say(current.line(outcome))


# -- interruptions: what resumes the command -----------------------------------------------------------------------

# Per image, what is left to do if stamp is interrupted now, one command per phase, chained in this order.
# "start" runs the whole work again: it stands while nothing can be resumed yet (no build ID to adopt).
PHASES = ("start", "build", "verify", "record", "publish")
_resume: dict[str, dict[str, str]] = {}
_resume_lock = threading.Lock()


def resume_with(image: str, phase: str, command_line: str | None) -> None:
    """Register (or, with None, drop) the command that does `phase` of `image`'s work if stamp is interrupted."""
    with _resume_lock:
        phases = _resume.setdefault(image, {})
        if command_line is None:
            phases.pop(phase, None)
        else:
            phases[phase] = command_line
        if not phases:
            del _resume[image]


def forget_resume(image: str) -> None:
    """Drop every phase of `image`: it finished, or failed (a failure is fixed, not resumed)."""
    with _resume_lock:
        _resume.pop(image, None)


def resuming(image: str) -> bool:
    with _resume_lock:
        return image in _resume


def resume_commands(options: str = "") -> list[str]:
    """One command line per image with work left, each command given `options`."""
    suffix = f" {options}" if options else ""
    lines = []
    with _resume_lock:
        for phases in _resume.values():
            if "start" in phases and "build" not in phases:
                lines.append(phases["start"] + suffix)
                continue
            lines.append(" && ".join(phases[p] + suffix for p in PHASES if p in phases and p != "start"))
    return lines


@contextmanager
def interruptible(rerun: str | Callable[[], str] = "", *, options: str = "") -> Iterator[None]:
    """On Ctrl-C or SIGTERM, say "interrupted" and which commands resume the work; `rerun` covers the rest
    (a function: what is left to do is known only when the interruption comes).

    `options` (`--cloud local` …) are given to every suggested command, so it runs where this one did.
    """
    with _resume_lock:
        _resume.clear()
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, (Exception, SystemExit, GeneratorExit)):
            raise
        commands = resume_commands(options)
        rest = rerun() if callable(rerun) else rerun
        if rest:
            commands.append(rest + (f" {options}" if options else ""))
        with _resume_lock:
            _resume.clear()
        lines = ["interrupted" + ("; to resume:" if commands else "")]
        lines += [f"  {c}" for c in commands]
        say("\n".join(lines))
        raise
