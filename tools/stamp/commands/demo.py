"""`stamp demo`: the whole GitOps flow on the local cloud, in a scratch copy of the repository."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from stamp import clock, output
from stamp.catalog.load import Catalog, load_catalog
from stamp.catalog.results import read_result
from stamp.commands.record import WORKSPACE_MARKER
from stamp.commands.verify import read_junit
from stamp.drivers import proc
from stamp.errors import StampError

CHANGED_SCRIPT = "images/base/scripts/10-upgrade.sh"
CHANGE = """
# Added by `stamp demo`, the way a pull request would change the image.
install -d -m 0755 /etc/stamp
echo "base image patched by a pull request" > /etc/stamp/demo-change
"""
CHANNELS = "  channels: {candidate: {}, stable: {after: candidate, soak_days: 7}}   # added by `stamp demo`\n"
SKIP_COPY = {".git", ".venv", "build", ".stamp", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


@dataclass
class Demo:
    source: Path
    workspace: Path
    timings: list[tuple[str, float]] = field(default_factory=list)

    def step(self, title: str, *args: str, env: dict[str, str] | None = None) -> proc.Completed:
        """Run one `stamp` command in the workspace and time it; its own step lines are shown, indented (with
        `-v`, everything it prints: it gets `-v` too). On a terminal, a live line counts the step's time."""
        banner(title)
        started = time.monotonic()
        verbose = ["-v"] if output.verbose() else []
        with output.step("", title) as step:
            step.silent = True  # the timings table at the end has it
            done = proc.run_logged(
                [sys.executable, "-m", "stamp", *verbose, *args],
                log=self.workspace / ".stamp" / "demo.log",
                prefix="  ",
                cwd=self.workspace,
                env={"STAMP_CLOUD": "local", **(env or {})},
                show=True,
            )
        self.timings.append((title, time.monotonic() - started))
        return done

    def git(self, *args: str) -> str:
        return proc.run(["git", "-C", str(self.workspace), *args]).stdout


def banner(title: str) -> None:
    output.say(f"==> {title}")


def copy_repository(source: Path, workspace: Path) -> None:
    """Copy the tracked and untracked-but-not-ignored files, so the demo runs what is checked out here."""
    listed = proc.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=False,
        echo=False,
    )
    if listed.returncode == 0:
        files = [f for f in listed.stdout.split("\0") if f]
    else:
        files = [
            str(p.relative_to(source))
            for p in source.rglob("*")
            if p.is_file() and not SKIP_COPY.intersection(p.relative_to(source).parts)
        ]
    for relative in files:
        src = source / relative
        if not src.is_file():
            continue  # deleted in the working tree but still in the index
        dst = workspace / relative
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def adopt_channels(workspace: Path) -> None:
    """The demo's catalog rolls out through two channels: every release enters candidate, stable after a
    7-day soak (docs/rollout.md)."""
    path = workspace / "catalog.yaml"
    text = path.read_text(encoding="utf-8")
    marker = "\ndefaults:"
    start = text.index(marker) + len(marker)
    end = text.index("\n", start) + 1
    path.write_text(text[:end] + CHANNELS + text[end:], encoding="utf-8")


def init_git(demo: Demo) -> None:
    demo.git("init", "-q", "-b", "main")
    demo.git("config", "user.name", "stamp demo")
    demo.git("config", "user.email", "demo@stamp.invalid")
    demo.git("add", "-A")
    demo.git("commit", "-q", "-m", "catalog as checked out")


def commit_records(demo: Demo, message: str) -> None:
    """What the merge workflow's final job does: one commit with every recorded release."""
    demo.git("add", "catalog.yaml")
    demo.git("commit", "-q", "-m", message)
    output.say(f"==> git commit -m '{message}'")


def summary(catalog: Catalog, build_root: Path) -> str:
    rows = [("image", "version", "AMIs per region", "tests passed", "shared with")]
    for name in catalog.topo_order():
        release = catalog.current_release(name)
        if release is None:
            rows.append((name, "-", "-", "-", "-"))
            continue
        tests = "-"
        try:
            result = read_result(build_root, name)
            if result.verify_report:
                report = read_junit(catalog.root / result.verify_report)
                tests = f"{report.passed}/{report.total}"
        except StampError:
            tests = "? (no report)"
        share = catalog.images[name].share
        shared = ", ".join(
            f"{len(values)} {label}"
            for label, values in (
                ("accounts", share.accounts),
                ("orgs", share.organizations),
                ("OUs", share.organizational_units),
            )
            if values
        )
        amis = " ".join(f"{region}={ami}" for region, ami in release.amis.items())
        rows.append((name, str(release.version), amis, tests, shared or "nobody"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_demo(source: Path, *, keep: bool = False, workspace: Path | None = None) -> int:
    started = time.monotonic()
    scratch = workspace or Path(tempfile.mkdtemp(prefix="stamp-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    demo = Demo(source, scratch)
    banner(f"scratch workspace {scratch} (a copy of {source} with its own git history)")
    copy_repository(source, scratch)
    (scratch / WORKSPACE_MARKER).parent.mkdir(parents=True, exist_ok=True)
    (scratch / WORKSPACE_MARKER).touch()
    adopt_channels(scratch)
    init_git(demo)
    try:
        demo.step("local cloud up", "local", "up")
        demo.step("validate the catalog", "validate")
        demo.step("plan: what to build and why", "plan", "--base", "HEAD")
        demo.step("release every image: build, verify, record, publish", *release_changed("HEAD"))
        commit_records(demo, "stamp: record releases")
        banner(f"pull request: edit {CHANGED_SCRIPT}")
        demo.git("checkout", "-q", "-b", "change-base")
        with (scratch / CHANGED_SCRIPT).open("a", encoding="utf-8") as script:
            script.write(CHANGE)
        demo.git("commit", "-q", "-am", "base: record a demo change")
        for line in demo.git("show", "--stat", "--format=%s", "HEAD").strip().splitlines():
            if line.strip():
                output.say(f"  {line.strip()}")
        demo.step("plan for the pull request (table)", "plan", "--base", "main")
        demo.step("plan for the pull request (PR comment)", "plan", "--base", "main", "--format", "markdown")
        demo.git("checkout", "-q", "main")
        demo.git("merge", "-q", "--no-ff", "-m", "Merge pull request: change base", "change-base")
        demo.step("merge: release what changed", *release_changed("HEAD^1"))
        commit_records(demo, "stamp: record releases after the merge")
        demo.step("plan after the record commit: nothing to build", "plan", "--base", "HEAD^1")
        demo.step("publish again: nothing changes", "publish", "--dry-run")
        demo.step("stamp out 5 web servers", "launch", "web", "--count", "5")
        demo.step("lookup for consumers", "lookup", "web")
        demo.step("lookup as JSON", "lookup", "web", "--format", "json")
        demo.step("who launches each release", "usage")
        demo.step("promotions due now: none, stable soaks 7 days", "promote", "--due")
        later = clock.iso(clock.utc_now() + timedelta(days=8))
        demo.step(
            f"8 days later (STAMP_NOW={later}): promote what has soaked",
            *("promote", "--due", "--apply"),
            env={clock.NOW_VARIABLE: later},
        )
        commit_records(demo, "stamp: promote to stable")
        demo.step("publish: the stable channel's parameters", "publish")
        demo.step("lookup for consumers on the stable channel", "lookup", "web", "--channel", "stable")
        banner("summary")
        print(summary(load_catalog(scratch / "catalog.yaml"), scratch / "build"))
        demo.step("the catalog as a web site (docs/site.md)", "site", "--out", str(source / "site"))
    finally:
        demo.step("local cloud down", "local", "down")
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    banner("timings")
    for title, seconds in demo.timings:
        output.say(f"  {seconds:6.1f} s  {title}")
    output.say(f"  {time.monotonic() - started:6.1f} s  whole demo")
    if keep:
        output.say(f"workspace kept: {scratch}")
    return 0


def release_changed(base: str) -> Sequence[str]:
    return ("release", "--changed", "--base", base, "--parallel", "2")


def run(args: argparse.Namespace) -> int:
    # The scratch workspace and its local cloud are removed on the way out; a new demo starts afresh.
    with output.interruptible("stamp demo" + (" --keep" if args.keep else "")):
        return run_demo(Path(args.catalog).resolve().parent, keep=args.keep)
