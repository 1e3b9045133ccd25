"""merge.yml's record job, run for real: its `run:` scripts under bash, with the env the job gives them, the real
`stamp record` (against moto), a bare git repository as origin and a stub `gh`, each scenario twice in a row.

A re-run of a failed job starts from a fresh checkout of main with the same build results: the second run of every
scenario must succeed and leave origin as the first run left it (docs/adopting.md, "Re-running a run").
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from builders import run_step_script
from conftest import MakeAmi, MotoEndpoint
from scoreboard import Scoreboard
from stamp.catalog import inventory as inv
from stamp.catalog.load import load_catalog
from stamp.catalog.results import BuildResult
from stamp.cloud.aws import AwsCloud
from stamp.commands import notes as notes_module
from stamp.commands.inventory import parse_inventory, take
from stamp.commands.record import SUMMARY_FILE_ENV
from test_inventory import SCRIPT_OUTPUT

REPO = Path(__file__).resolve().parent.parent
MERGE = REPO / ".github" / "workflows" / "merge.yml"
ROW = "re-run scenarios"
RUN_ID = "4242"
RUN_URL = f"https://github.invalid/example-org/images/actions/runs/{RUN_ID}"
BRANCH = f"stamp/record-{RUN_ID}"
APP = "stamp-images"
TIMEOUT = 180

CATALOG = """\
# A scratch catalog for the record job: a root image and a child, one region.
version: 1
defaults:
  regions: [us-east-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  base:
    description: Base image
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/base/setup.sh]
    tests: images/base/tests
  web:
    description: Web image
    parent: base
    provision: [images/web/install.sh]
    tests: images/web/tests
"""

# What another run recorded meanwhile, appended where `stamp record` appends: the two edits conflict.
OTHER_RELEASE = """\
releases:
  base:
    - version: 1
      amis: {us-east-1: ami-0123456789abcdef0}
      built_at: "2026-01-01T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: base-other-1
      source: {amis: {us-east-1: ami-0aaaaaaaaaaaaaaaa}}
      verified: passed
      status: current
"""

GH_STUB = """\
import json, os, sys
from pathlib import Path

state = Path(os.environ["GH_STUB_STATE"])
args = sys.argv[1:]
with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps(args) + "\\n")
file = state / "prs.json"
prs = json.loads(file.read_text()) if file.exists() else []


def opt(name):
    return args[args.index(name) + 1] if name in args else None


def open_for(head):
    return [pr for pr in prs if pr["head"] == head and pr["state"] == "open"]


if args[:2] == ["pr", "list"]:
    found = open_for(opt("--head"))
    if found:
        print(found[0]["number"])
elif args[:2] == ["pr", "create"]:
    if open_for(opt("--head")):
        print(f"a pull request for branch {opt('--head')!r} into branch 'main' already exists", file=sys.stderr)
        sys.exit(1)
    prs.append({"number": len(prs) + 1, "head": opt("--head"), "base": opt("--base"), "title": opt("--title"),
                "body": opt("--body"), "state": "open"})
    print(f"https://github.invalid/example-org/images/pull/{len(prs)}")
elif args[:2] == ["pr", "edit"]:
    pr = next(pr for pr in prs if pr["number"] == int(args[2]))
    pr.update(title=opt("--title"), body=opt("--body"))
else:
    print(f"gh stub: not a call the record job makes: {args}", file=sys.stderr)
    sys.exit(2)
file.write_text(json.dumps(prs))
"""


# -- the workflow's steps ------------------------------------------------------------------------------------


def _jobs() -> dict[str, Any]:
    data = yaml.safe_load(MERGE.read_text())
    assert isinstance(data, dict)
    jobs = data["jobs"]
    assert isinstance(jobs, dict)
    return jobs


def step(job: str, step_id: str) -> dict[str, Any]:
    found = [s for s in _jobs()[job]["steps"] if s.get("id") == step_id]
    assert len(found) == 1, f"merge.yml: job {job} needs exactly one step with id {step_id}"
    result = found[0]
    assert isinstance(result, dict)
    return result


# -- git ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    """What every process here sees: no global or system git configuration, the stubs first on PATH."""

    home: Path
    bin: Path
    gh_state: Path
    moto_url: str

    def base(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.home),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GH_STUB_STATE": str(self.gh_state),
            # The real `stamp record` asks the cloud about each AMI before it writes (stamp.custody): moto.
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }


def git(env: Env, cwd: Path, *args: str) -> str:
    """git as a person uses it in this test (setting up origin, looking at it); never inside the job's scripts."""
    who = {
        "GIT_AUTHOR_NAME": "A Person",
        "GIT_AUTHOR_EMAIL": "person@example.invalid",
        "GIT_COMMITTER_NAME": "A Person",
        "GIT_COMMITTER_EMAIL": "person@example.invalid",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env.base() | who, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass(frozen=True)
class Origin:
    bare: Path
    env: Env
    built: str  # where stamp/built points before the run: the commit before the change
    planned: str  # the commit the plan job planned: main's tip when the run started

    def refs(self) -> dict[str, str]:
        """Every branch and tag of origin, by name: equal before and after a run means the run changed nothing."""
        listing = git(self.env, self.bare, "for-each-ref", "--format=%(refname) %(objectname)")
        return {name: sha for name, sha in (line.split(" ", 1) for line in listing.splitlines())}

    def rev(self, ref: str) -> str:
        return git(self.env, self.bare, "rev-parse", ref)

    def file_at(self, ref: str, path: str) -> str:
        return git(self.env, self.bare, "show", f"{ref}:{path}")

    def checkout(self, name: str) -> Path:
        """What actions/checkout gives the job (ref: main, fetch-depth: 0): every branch and tag, on main."""
        work = self.bare.parent / name
        git(self.env, self.bare.parent, "clone", "-q", str(self.bare), str(work))
        return work

    def push_from_elsewhere(self, name: str, change: Callable[[Path], object], message: str) -> str:
        """Another person's commit reaching main while the job runs."""
        other = self.checkout(name)
        change(other)
        git(self.env, other, "add", "-A")
        git(self.env, other, "commit", "-q", "-m", message)
        git(self.env, other, "push", "-q", "origin", "HEAD:refs/heads/main")
        return git(self.env, other, "rev-parse", "HEAD")


def make_repo(root: Path) -> None:
    for script in ("images/base/setup.sh", "images/web/install.sh"):
        (root / script).parent.mkdir(parents=True, exist_ok=True)
        (root / script).write_text("#!/usr/bin/env bash\nset -euo pipefail\necho hi\n")
    for folder in ("images/base/tests", "images/web/tests"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "test_it.py").write_text("def test_it(host):\n    assert host\n")
    (root / "catalog.yaml").write_text(CATALOG, encoding="utf-8")


def write_stub(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def origin(tmp_path: Path, moto: MotoEndpoint) -> Iterator[Origin]:
    """A bare origin whose main has two commits: stamp/built on the first, the planned change on the second."""
    env = Env(home=tmp_path / "home", bin=tmp_path / "bin", gh_state=tmp_path / "gh", moto_url=moto.url)
    for folder in (env.home, env.bin, env.gh_state):
        folder.mkdir()
    write_stub(env.bin / "stamp", f'#!/bin/sh\nexec "{sys.executable}" -m stamp "$@"\n')
    write_stub(env.bin / "gh", f"#!{sys.executable}\n{GH_STUB}")
    # The push loop waits between attempts; here the wait is logged instead of slept.
    write_stub(env.bin / "sleep", f'#!/bin/sh\necho "$@" >> "{tmp_path / "slept"}"\n')
    bare = tmp_path / "origin.git"
    git(env, tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git(env, tmp_path, "init", "-q", "--initial-branch=main", str(seed))
    make_repo(seed)
    git(env, seed, "add", "-A")
    git(env, seed, "commit", "-q", "-m", "the catalog")
    built = git(env, seed, "rev-parse", "HEAD")
    (seed / "images" / "base" / "setup.sh").write_text("#!/usr/bin/env bash\nset -euo pipefail\necho hello\n")
    git(env, seed, "commit", "-q", "-am", "base: say hello")
    planned = git(env, seed, "rev-parse", "HEAD")
    git(env, seed, "tag", "stamp/built", built)
    git(env, seed, "push", "-q", str(bare), "main", "refs/tags/stamp/built")
    yield Origin(bare=bare, env=env, built=built, planned=planned)


# -- build results, as the layer jobs upload them ---------------------------------------------------------


Artifacts = dict[str, BuildResult]


@pytest.fixture
def artifacts(origin: Origin, make_ami: MakeAmi) -> Artifacts:
    """One verified build of each image at the planned commit, its AMI real (in moto) and tagged as stamp's."""
    started = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    found: Artifacts = {}
    for image in ("base", "web"):
        build_id = f"{image}-{RUN_ID}-1"
        ami = make_ami(name=build_id, tags={"stamp:build-id": build_id, "stamp:verified": "passed"})
        source = {"amis": {"us-east-1": "ami-0aaaaaaaaaaaaaaaa"}} if image == "base" else {"image": "base"}
        found[image] = BuildResult.model_validate(
            {
                "image": image,
                "build_id": build_id,
                "cloud": "aws",
                "amis": {"us-east-1": ami},
                "source": source,
                "commit": origin.planned,
                "started_at": started,
                "finished_at": started,
                "packer_version": "1.11.2",
                "verified": "passed",
            }
        )
    return found


def place(work: Path, results: list[BuildResult]) -> None:
    """What the "download every build result" step leaves: artifacts/build-<image>/result.json."""
    for result in results:
        folder = work / "artifacts" / f"build-{result.image}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(result.model_dump_json(indent=2) + "\n")


# -- running a step ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    outputs: dict[str, str]
    summary: str  # what the step appended to $GITHUB_STEP_SUMMARY, the run's summary page


def run_step(origin: Origin, work: Path, job: str, step_id: str, given: dict[str, str]) -> Ran:
    """The step's script as GitHub runs a `run:` without `shell:` (bash -e), with its `env:` filled in."""
    found = step(job, step_id)
    assert set(found.get("env", {})) == set(given), f"{step_id}: the test gives {sorted(given)}"
    script = work.parent / f"{work.name}-{step_id}.sh"
    script.write_text(found["run"])
    outputs = work.parent / f"{work.name}-{step_id}.out"
    outputs.write_text("")
    summary = work.parent / f"{work.name}-{step_id}.summary.md"
    summary.write_text("")
    runner_temp = work.parent / f"{work.name}-{step_id}.tmp"
    runner_temp.mkdir()
    env = origin.env.base() | given
    env |= {"GITHUB_RUN_ID": RUN_ID, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary)}
    env |= {"RUNNER_TEMP": str(runner_temp)}
    done = run_step_script(script, cwd=work, env=env, timeout=TIMEOUT)
    pairs = (line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
    return Ran(done.returncode, done.stdout + done.stderr, dict(pairs), summary.read_text())


def record(
    origin: Origin,
    name: str,
    results: list[BuildResult],
    *,
    mode: str,
    app: str = "",
    complete: bool = True,
    before: Callable[[Path], None] | None = None,
) -> Ran:
    """One attempt of the record job's `stamp record` step, in a fresh checkout with these build results."""
    work = origin.checkout(name)
    place(work, results)
    if before is not None:
        before(work)
    given = {
        "APP_SLUG": app,
        "COMPLETE": "true" if complete else "false",
        "GH_TOKEN": "a-token-git-never-needs-here",
        "HEAD_SHA": origin.planned,
        "RECORD_MODE": mode,
        "RUN_URL": RUN_URL,
    }
    return run_step(origin, work, "record", "record", given)


def plan_base(origin: Origin, name: str) -> str:
    """The plan job's "last built commit" step in a fresh checkout: the commit the next plan diffs from."""
    ran = run_step(origin, origin.checkout(name), "plan", "base", {"BEFORE": ""})
    assert ran.code == 0, ran.out
    return ran.outputs["base"]


def gh_calls(origin: Origin) -> list[list[str]]:
    log = origin.env.gh_state / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def prs(origin: Origin) -> list[dict[str, Any]]:
    file = origin.env.gh_state / "prs.json"
    found = json.loads(file.read_text()) if file.exists() else []
    assert isinstance(found, list)
    return found


def releases_at(origin: Origin, ref: str) -> dict[str, list[tuple[int, str]]]:
    """(version, build_id) per image in catalog.yaml at `ref`, read with stamp's own loader."""
    scratch = origin.bare.parent / f"catalog-{ref.replace('/', '-')}"
    make_repo(scratch)
    (scratch / "catalog.yaml").write_text(origin.file_at(ref, "catalog.yaml"))
    catalog = load_catalog(scratch / "catalog.yaml")
    return {name: [(r.version, r.build_id) for r in found] for name, found in catalog.releases.items()}


def converged(before: dict[str, str], origin: Origin, ran: Ran) -> bool:
    return ran.code == 0 and origin.refs() == before


# -- the scenarios -----------------------------------------------------------------------------------------


def test_commit_mode_pushes_one_commit_and_a_rerun_changes_nothing(
    origin: Origin, artifacts: Artifacts, scoreboard: Scoreboard
) -> None:
    first = record(origin, "run-1", list(artifacts.values()), mode="commit", app=APP)
    after_first = origin.refs()
    second = record(origin, "run-1-again", list(artifacts.values()), mode="commit", app=APP)
    scoreboard.add(ROW, tried=1, bad=0 if converged(after_first, origin, second) else 1)

    assert first.code == 0, first.out
    commits = git(origin.env, origin.bare, "rev-list", f"{origin.planned}..main").split()
    assert len(commits) == 1, "one record commit on top of the planned commit"
    (commit,) = commits
    assert git(origin.env, origin.bare, "rev-parse", f"{commit}^") == origin.planned
    assert git(origin.env, origin.bare, "diff-tree", "--no-commit-id", "--name-only", "-r", commit) == "catalog.yaml"
    message = git(origin.env, origin.bare, "log", "-1", "--format=%B", commit)
    assert message.startswith("stamp record: base web\n")
    assert RUN_URL in message
    assert f"Stamp-Built: {origin.planned}" in message.splitlines()
    assert git(origin.env, origin.bare, "log", "-1", "--format=%an <%ae>", commit) == (
        f"{APP}[bot] <{APP}[bot]@users.noreply.github.com>"
    )
    assert releases_at(origin, "main") == {"base": [(1, f"base-{RUN_ID}-1")], "web": [(1, f"web-{RUN_ID}-1")]}
    assert origin.rev("stamp/built") == origin.planned, "every layer built: the tag moves to the planned commit"
    assert gh_calls(origin) == [], "commit mode opens no pull request"

    assert second.code == 0, second.out
    assert origin.refs() == after_first, "the re-run changed nothing on origin"
    assert "nothing to commit" in second.out
    assert "nothing to push" in second.out


def test_pr_mode_rerun_updates_the_same_branch_and_pull_request(
    origin: Origin, artifacts: Artifacts, scoreboard: Scoreboard
) -> None:
    first = record(origin, "run-1", list(artifacts.values()), mode="pr")
    after_first = origin.refs()
    calls_first = gh_calls(origin)
    second = record(origin, "run-1-again", list(artifacts.values()), mode="pr")
    scoreboard.add(ROW, tried=1, bad=0 if converged(after_first, origin, second) else 1)

    assert first.code == 0, first.out
    assert origin.rev("main") == origin.planned, "pr mode leaves main alone"
    assert origin.rev("stamp/built") == origin.built, "the tag waits for the record pull request to merge"
    assert git(origin.env, origin.bare, "rev-list", f"main..{BRANCH}").split() == [origin.rev(BRANCH)]
    assert git(origin.env, origin.bare, "rev-parse", f"{BRANCH}^") == origin.planned
    assert releases_at(origin, BRANCH) == {"base": [(1, f"base-{RUN_ID}-1")], "web": [(1, f"web-{RUN_ID}-1")]}
    assert [call[:2] for call in calls_first] == [["pr", "list"], ["pr", "create"]]
    (pr,) = prs(origin)
    assert pr["head"] == BRANCH and pr["base"] == "main" and pr["title"] == "stamp record: base web"
    assert pr["body"].splitlines()[-1] == f"Stamp-Built: {origin.planned}", "a squash merge keeps the trailer"

    assert second.code == 0, second.out
    assert origin.refs() == after_first, "same branch, same commit, main and the tag untouched"
    calls_again = gh_calls(origin)[len(calls_first) :]
    assert [call[:2] for call in calls_again] == [["pr", "list"], ["pr", "edit"]]
    assert calls_again[1][2] == "1", "the pull request the first attempt opened"
    assert [p["number"] for p in prs(origin)] == [1], "the re-run updated the pull request instead of a second one"
    assert f"{BRANCH} already holds this record" in second.out

    # Until it merges, the next plan still starts from stamp/built; once merged, from the planned commit.
    assert plan_base(origin, "plan-before-merge") == origin.built
    git(origin.env, origin.bare, "update-ref", "refs/heads/main", origin.rev(BRANCH), origin.planned)
    assert plan_base(origin, "plan-after-merge") == origin.planned

    # A re-run of the record job after the merge: nothing left to propose, and now the tag moves.
    third = record(origin, "run-1-after-merge", list(artifacts.values()), mode="pr")
    assert third.code == 0, third.out
    assert origin.rev("main") == origin.rev(BRANCH)
    assert origin.rev("stamp/built") == origin.planned
    assert [p["number"] for p in prs(origin)] == [1]


def test_commit_mode_without_the_app_opens_a_pull_request_instead(origin: Origin, artifacts: Artifacts) -> None:
    ran = record(origin, "run-1", list(artifacts.values()), mode="commit", app="")
    assert ran.code == 0, ran.out
    assert "::warning::RECORD_MODE=commit needs the stamp GitHub App" in ran.out
    assert origin.rev("main") == origin.planned, "only the App may push to main"
    assert origin.rev("stamp/built") == origin.built
    assert [p["head"] for p in prs(origin)] == [BRANCH]


def refuse_pushes(origin: Origin, count: int) -> None:
    """origin refuses the next `count` pushes, as when other merges keep landing on main first."""
    (origin.bare / "refusals-left").write_text(f"{count}\n")
    write_stub(
        origin.bare / "hooks" / "pre-receive",
        "#!/bin/sh\n"
        'left=$(cat refusals-left)\nif [ "$left" -gt 0 ]; then\n'
        '  echo $((left - 1)) > refusals-left\n  echo "refused, $left to go" >&2\n  exit 1\nfi\n',
    )


def test_the_last_push_attempt_pushes(origin: Origin, artifacts: Artifacts, scoreboard: Scoreboard) -> None:
    refuse_pushes(origin, 4)
    ran = record(origin, "run-1", list(artifacts.values()), mode="commit", app=APP)
    after = origin.refs()
    again = record(origin, "run-1-again", list(artifacts.values()), mode="commit", app=APP)
    scoreboard.add(ROW, tried=1, bad=0 if converged(after, origin, again) else 1)

    assert ran.code == 0, ran.out
    assert (origin.bare.parent / "slept").read_text().split() == ["5", "10", "15", "20"]
    assert git(origin.env, origin.bare, "rev-parse", "main^") == origin.planned
    assert releases_at(origin, "main")["base"] == [(1, f"base-{RUN_ID}-1")]
    assert origin.rev("stamp/built") == origin.planned
    assert again.code == 0, again.out
    assert origin.refs() == after


def test_five_refused_pushes_fail_without_a_wasted_rebase_and_a_rerun_then_pushes(
    origin: Origin, artifacts: Artifacts, scoreboard: Scoreboard
) -> None:
    refuse_pushes(origin, 5)
    refused = record(origin, "run-1", list(artifacts.values()), mode="commit", app=APP)
    assert refused.code == 1, refused.out
    assert "::error::could not push the record commit in 5 attempts" in refused.out
    # Every rebase is followed by a push: four waits between five pushes, none after the last.
    assert (origin.bare.parent / "slept").read_text().split() == ["5", "10", "15", "20"]
    assert origin.rev("main") == origin.planned
    assert origin.rev("stamp/built") == origin.built

    # The cause is gone: re-running the job records, pushes and marks built; once more changes nothing.
    rerun = record(origin, "run-1-again", list(artifacts.values()), mode="commit", app=APP)
    after = origin.refs()
    again = record(origin, "run-1-third", list(artifacts.values()), mode="commit", app=APP)
    scoreboard.add(ROW, tried=1, bad=0 if rerun.code == 0 and converged(after, origin, again) else 1)
    assert rerun.code == 0, rerun.out
    assert git(origin.env, origin.bare, "rev-parse", "main^") == origin.planned
    assert origin.rev("stamp/built") == origin.planned
    assert again.code == 0, again.out
    assert origin.refs() == after


def test_main_moved_with_a_conflicting_record_records_again_on_top(
    origin: Origin, artifacts: Artifacts, scoreboard: Scoreboard
) -> None:
    def other_run_recorded_first(_work: Path) -> None:
        def append(other: Path) -> None:
            with (other / "catalog.yaml").open("a") as catalog:
                catalog.write(OTHER_RELEASE)

        origin.push_from_elsewhere("other", append, "stamp record: base")

    ran = record(origin, "run-1", list(artifacts.values()), mode="commit", app=APP, before=other_run_recorded_first)
    after = origin.refs()
    again = record(origin, "run-1-again", list(artifacts.values()), mode="commit", app=APP)
    scoreboard.add(ROW, tried=1, bad=0 if converged(after, origin, again) else 1)

    assert ran.code == 0, ran.out
    assert "main moved on (attempt 1)" in ran.out
    assert git(origin.env, origin.bare, "log", "-1", "--format=%s", "main^") == "stamp record: base"
    assert releases_at(origin, "main") == {
        "base": [(2, f"base-{RUN_ID}-1"), (1, "base-other-1")],
        "web": [(1, f"web-{RUN_ID}-1")],
    }
    assert again.code == 0, again.out
    assert origin.refs() == after


def test_rerun_after_a_failed_layer_records_the_rest_then_marks_built(
    origin: Origin, artifacts: Artifacts, scoreboard: Scoreboard
) -> None:
    # Attempt 1: web's layer failed. base is recorded; the commit does not claim the plan built, the tag stays.
    partial = record(origin, "attempt-1", [artifacts["base"]], mode="commit", app=APP, complete=False)
    assert partial.code == 0, partial.out
    first_commit = origin.rev("main")
    assert "Stamp-Built" not in git(origin.env, origin.bare, "log", "-1", "--format=%B", first_commit)
    assert origin.rev("stamp/built") == origin.built
    assert plan_base(origin, "plan-after-partial") == origin.built

    # Attempt 2 (re-run of the failed jobs): web passed now; base's result is the same, already recorded.
    whole = record(origin, "attempt-2", list(artifacts.values()), mode="commit", app=APP)
    after = origin.refs()
    again = record(origin, "attempt-2-again", list(artifacts.values()), mode="commit", app=APP)
    scoreboard.add(ROW, tried=1, bad=0 if converged(after, origin, again) else 1)

    assert whole.code == 0, whole.out
    assert git(origin.env, origin.bare, "rev-parse", "main^") == first_commit
    assert git(origin.env, origin.bare, "log", "-1", "--format=%s", "main") == "stamp record: base web"
    assert releases_at(origin, "main") == {"base": [(1, f"base-{RUN_ID}-1")], "web": [(1, f"web-{RUN_ID}-1")]}
    assert origin.rev("stamp/built") == origin.planned
    assert again.code == 0, again.out
    assert origin.refs() == after


def test_nothing_verified_records_nothing_and_marks_built_only_when_complete(
    origin: Origin, artifacts: Artifacts
) -> None:
    failed = [artifacts["base"].model_copy(update={"verified": "failed"})]
    incomplete = record(origin, "run-1", failed, mode="commit", app=APP, complete=False)
    assert incomplete.code == 0, incomplete.out
    assert "no verified build to record" in incomplete.out
    assert origin.rev("main") == origin.planned
    assert origin.rev("stamp/built") == origin.built

    nothing_planned = record(origin, "run-2", [], mode="pr", complete=True)
    assert nothing_planned.code == 0, nothing_planned.out
    assert origin.rev("main") == origin.planned
    assert origin.rev("stamp/built") == origin.planned
    assert prs(origin) == []


def test_the_tag_never_moves_back(origin: Origin, artifacts: Artifacts) -> None:
    later = origin.push_from_elsewhere("later", lambda w: (w / "README").write_text("later\n"), "a later merge")
    git(origin.env, origin.bare, "update-ref", "refs/tags/stamp/built", later)
    ran = record(origin, "old-run-rerun", [], mode="commit", app=APP)
    assert ran.code == 0, ran.out
    assert origin.rev("stamp/built") == later, "a re-run of an older run keeps the newer run's mark"


def test_the_plan_honours_only_record_commits_that_change_the_catalog_alone(origin: Origin) -> None:
    def forged(other: Path) -> None:
        (other / "images" / "base" / "setup.sh").write_text("#!/usr/bin/env bash\necho unreviewed\n")
        (other / "catalog.yaml").write_text(CATALOG + "# touched\n")

    sneaky = origin.checkout("sneaky")
    forged(sneaky)
    git(origin.env, sneaky, "commit", "-q", "-am", "looks like a record", "-m", f"Stamp-Built: {origin.planned}")
    git(origin.env, sneaky, "push", "-q", "origin", "HEAD:refs/heads/main")
    assert plan_base(origin, "plan") == origin.built, "a trailer on a commit that changes more than catalog.yaml"


# -- release notes: the commit message's summary lines, the run summary's notes -------------------------------

BUCKET = "stamp-artifacts-workflow"
PREFIX = "golden"
OLD_BASE = "base-other-1"
NEW_BASE = f"base-{RUN_ID}-1"


def inventories() -> tuple[inv.Inventory, inv.Inventory]:
    """base 1's inventory (openssl one version older) and the one the new base build's verification took."""
    older = SCRIPT_OUTPUT.replace("3.0.15-1~deb12u1", "3.0.14-1~deb12u1")
    old = parse_inventory(older, image="base", build_id=OLD_BASE, ami_id="ami-0123456789abcdef0")
    new = parse_inventory(SCRIPT_OUTPUT, image="base", build_id=NEW_BASE, ami_id="ami-0123456789abcdef1")
    return old, new


def base_recorded_before(origin: Origin, *, sbom: bool) -> None:
    """main already has base 1 (OLD_BASE), with `sbom` stored beside its packages.json in S3 (defaults.artifacts)."""
    release = OTHER_RELEASE
    if sbom:
        line = f'      sbom: {{uri: "s3://{BUCKET}/{PREFIX}/base/1/sbom.cdx.json", sha256: "{"0" * 64}"}}\n'
        release = release.replace("      verified: passed\n", line + "      packages: 6\n      verified: passed\n")

    def change(other: Path) -> None:
        text = (other / "catalog.yaml").read_text()
        if sbom:
            text = text.replace("defaults:\n", f"defaults:\n  artifacts: {{bucket: {BUCKET}, prefix: {PREFIX}}}\n")
        (other / "catalog.yaml").write_text(text + release)

    origin.push_from_elsewhere("recorded-before", change, "stamp record: base")


def new_base_verified(work: Path, ami_id: str) -> None:
    """What verification of the new base build left beside its result.json: packages.json, the SBOM, the history."""
    out = work / "artifacts" / "build-base"
    take(SCRIPT_OUTPUT, image="base", instance="i-1", ami_id=ami_id, build_id=NEW_BASE, out=out)


def test_the_commit_message_carries_the_summary_and_the_run_summary_the_notes(
    origin: Origin, artifacts: Artifacts, aws: AwsCloud, scoreboard: Scoreboard
) -> None:
    """As CI runs it: the runner has the new build's inventory only; base 1's comes from S3, as record stored it."""
    old, new = inventories()
    aws.create_bucket("us-east-1", BUCKET)
    stored = old.model_dump_json(indent=2).encode()
    aws.put_object("us-east-1", BUCKET, f"{PREFIX}/base/1/packages.json", stored, content_type="application/json")
    base_recorded_before(origin, sbom=True)
    line = notes_module.release_notes("base", 2, 1, old, new).summary()
    assert line.startswith("base 2: 2 packages upgraded")

    def verified(work: Path) -> None:
        new_base_verified(work, artifacts["base"].amis["us-east-1"])

    first = record(origin, "run-1", list(artifacts.values()), mode="commit", app=APP, before=verified)
    after = origin.refs()
    again = record(origin, "run-1-again", list(artifacts.values()), mode="commit", app=APP, before=verified)
    scoreboard.add(ROW, tried=1, bad=0 if converged(after, origin, again) else 1)

    assert first.code == 0, first.out
    assert releases_at(origin, "main") == {
        "base": [(2, NEW_BASE), (1, OLD_BASE)],
        "web": [(1, f"web-{RUN_ID}-1")],
    }
    message = git(origin.env, origin.bare, "log", "-1", "--format=%B", "main")
    assert message.split("\n\n") == [
        "stamp record: base web",
        f"Verified builds from {RUN_URL}",
        line,  # web 1 is a first release: no line
        f"Stamp-Built: {origin.planned}",
    ]
    assert f"notes: {line}" in first.out
    # The notes of base 2, against base 1 read from S3 by record and kept in build/ for `stamp notes`.
    assert first.summary.startswith(f"## base 2 (against base 1)\n\n{line}\n")
    assert "| openssl | 3.0.14-1~deb12u1 | 3.0.15-1~deb12u1 |" in first.summary
    assert "## web" not in first.summary
    kept = inv.history_path(origin.bare.parent / "run-1" / "build", "base", OLD_BASE)
    assert kept.read_bytes() == stored
    uploaded = aws.get_object("us-east-1", BUCKET, f"{PREFIX}/base/2/packages.json")
    assert uploaded == (origin.bare.parent / "run-1" / "build" / "base" / "packages.json").read_bytes()
    assert "::warning::" not in first.out

    # The re-run records nothing new: no commit, no summary line, no notes.
    assert again.code == 0, again.out
    assert origin.refs() == after
    assert again.summary == ""


def test_notes_that_cannot_be_made_are_a_warning_and_the_pull_request_has_the_summary(
    origin: Origin, artifacts: Artifacts
) -> None:
    """Without defaults.artifacts: both inventories of base in build/; `stamp notes` fails, the job does not."""
    old, new = inventories()
    base_recorded_before(origin, sbom=False)
    line = notes_module.release_notes("base", 2, 1, old, new).summary()
    write_stub(
        origin.env.bin / "stamp",
        '#!/bin/sh\nif [ "$1" = notes ]; then echo "stamp notes: out of order" >&2; exit 1; fi\n'
        f'exec "{sys.executable}" -m stamp "$@"\n',
    )

    def verified(work: Path) -> None:
        new_base_verified(work, artifacts["base"].amis["us-east-1"])
        history = work / "artifacts" / "build-base" / inv.HISTORY_DIR
        inv.write_json(history / f"{OLD_BASE}.json", old.model_dump_json())

    ran = record(origin, "run-1", list(artifacts.values()), mode="pr", before=verified)

    assert ran.code == 0, ran.out
    assert "stamp notes: out of order" in ran.out
    assert "::warning::no release notes for base 2 in the run summary: stamp notes failed (above)" in ran.out
    assert ran.summary == ""
    (pr,) = prs(origin)
    assert pr["body"].split("\n\n")[1:] == [line, f"Stamp-Built: {origin.planned}"]
    message = git(origin.env, origin.bare, "log", "-1", "--format=%B", BRANCH)
    assert line in message.split("\n\n")
    assert releases_at(origin, BRANCH)["base"] == [(2, NEW_BASE), (1, OLD_BASE)]


def test_the_record_step_passes_the_summary_file_to_stamp_record() -> None:
    """The variable the script sets is the one `stamp record` reads."""
    script = step("record", "record")["run"]
    assert f'{SUMMARY_FILE_ENV}="$summaries" stamp record' in script
    assert 'stamp notes "$image" "$version" --format markdown' in script
