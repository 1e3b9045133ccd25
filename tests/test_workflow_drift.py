"""schedule.yml's drift job, run for real: its `run:` scripts under bash in order, with the env the job gives them
and its `if:` conditions, the real `stamp plan` (vendor images in moto, apt indexes from a signed repository on
loopback, checked with gpgv), a bare git repository as origin and a stub `gh` that keeps what it was asked.

The test stands in for the steps that only prepare the runner: `uses:` steps (checkout, Python, AWS credentials:
a shallow clone of main and moto's endpoint in the env here) and the `run:` steps that install stamp and the apt
tools (the virtualenv's stamp, and gpgv and jq of this machine, are on PATH).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from aptrepo import AptRepo, Deb
from builders import run_step_script
from conftest import MakeAmi, MotoEndpoint
from stamp.catalog import inventory as inv
from stamp.cloud.aws import AwsCloud
from test_workflow_record import Env, git, write_stub

REPO = Path(__file__).resolve().parent.parent
SCHEDULE = REPO / ".github" / "workflows" / "schedule.yml"
JOB = "drift"
BRANCH = "stamp/drift"
TOKEN = "a-token-git-never-needs-here"  # noqa: S105 - what ${{ github.token }} stands for here
TIMEOUT = 180

PROBE = "stamp-probe"
BUILD_ID = "base-1-abc123"
VENDOR_FILTER = "debian-12-amd64-*"
BUCKET = "stamp-artifacts-drift"
PREFIX = "golden"

CATALOG = """\
# A scratch catalog for the drift job: a root image on a vendor image and a child, one region.
version: 1
defaults:
  regions: [us-east-1]
  apt_keyrings: [keys/archive.gpg]
{artifacts}images:
  base:
    description: Base image
    source:
      filter: {{name: "{filter}", owners: [self]}}
    provision: [images/base/setup.sh]
    tests: images/base/tests
  web:
    description: Web image
    parent: base
    provision: [images/web/install.sh]
    tests: images/web/tests
releases:
  base:
    - version: 1
      amis: {{us-east-1: ami-0123456789abcdef1}}
      built_at: "2026-11-29T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: {build_id}
      source: {{amis: {{us-east-1: {vendor}}}}}
{sbom}      verified: passed
      status: current
  web:
    - version: 1
      amis: {{us-east-1: ami-0123456789abcdef2}}
      built_at: "2026-11-29T11:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: web-1-abc123
      source: {{image: base, version: 1}}
      verified: passed
      status: current
"""

# A `gh` that answers the calls the drift job makes, keeps the pull requests in GH_STUB_STATE/prs.json and logs
# each call with the body file's text as it was read (the runner's temp folder is gone once a real job ends).
# Like gh, `pr create` refuses a head that has no commit beyond the base (read from the bare origin).
GH_STUB = """\
import json, os, subprocess, sys
from pathlib import Path

state = Path(os.environ["GH_STUB_STATE"])
args = sys.argv[1:]


def opt(name):
    return args[args.index(name) + 1] if name in args else None


body_file = opt("--body-file")
body = Path(body_file).read_text() if body_file else opt("--body")
with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps({"args": args, "body": body}) + "\\n")
file = state / "prs.json"
prs = json.loads(file.read_text()) if file.exists() else []


def open_for(head):
    return [pr for pr in prs if pr["head"] == head and pr["state"] == "open"]


if args[:2] == ["pr", "list"]:
    fields = opt("--json").split(",")
    found = json.dumps([{f: pr[f] for f in fields} for pr in open_for(opt("--head"))])
    query = opt("--jq")
    if query is None:
        print(found)
    else:
        sys.exit(subprocess.run(["jq", "-r", query], input=found, text=True).returncode)
elif args[:2] == ["pr", "create"]:
    head, base = opt("--head"), opt("--base")
    if open_for(head):
        print(f"a pull request for branch {head!r} into branch {base!r} already exists", file=sys.stderr)
        sys.exit(1)
    ahead = subprocess.run(
        ["git", "--git-dir", os.environ["GH_STUB_ORIGIN"], "rev-list", "--count", f"{base}..{head}"],
        capture_output=True, text=True,
    )
    if ahead.returncode != 0 or ahead.stdout.strip() == "0":
        print(f"pull request create failed: No commits between {base} and {head}", file=sys.stderr)
        sys.exit(1)
    prs.append({"number": len(prs) + 1, "head": head, "base": base, "title": opt("--title"), "body": body,
                "state": "open"})
    print(f"https://github.invalid/example-org/images/pull/{len(prs)}")
elif args[:2] == ["pr", "edit"]:
    pr = next(pr for pr in prs if pr["number"] == int(args[2]))
    pr.update({k: v for k, v in (("title", opt("--title")), ("body", body)) if v is not None})
elif args[:2] == ["pr", "close"]:
    pr = next(pr for pr in prs if pr["number"] == int(args[2]))
    pr.update({"state": "closed", "comment": opt("--comment")})
else:
    print(f"gh stub: not a call the drift job makes: {args}", file=sys.stderr)
    sys.exit(2)
file.write_text(json.dumps(prs))
"""


# -- the job, as the runner runs it ------------------------------------------------------------------------------


def job_steps(job: str = JOB) -> list[dict[str, Any]]:
    data = yaml.safe_load(SCHEDULE.read_text())
    assert isinstance(data, dict)
    steps = data["jobs"][job]["steps"]
    assert isinstance(steps, list)
    return steps


def provided_by_the_test(step: dict[str, Any]) -> bool:
    """Actions (checkout, setup-python, AWS credentials) and the installs of stamp and of the apt tools."""
    run = str(step.get("run", "")).strip()
    return "uses" in step or run.startswith(("python -m pip install", "sudo apt-get"))


_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_CONDITION = re.compile(r"(?P<left>\S+)\s*(?P<op>==|!=)\s*'(?P<right>[^']*)'")


def value_of(expression: str, outputs: dict[str, dict[str, str]]) -> str:
    """The expressions the drift job uses: the token, and outputs of earlier steps (empty when not set)."""
    if expression == "github.token":
        return TOKEN
    found = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expression)
    assert found, f"the test does not evaluate ${{{{ {expression} }}}}: teach value_of"
    return outputs.get(found[1], {}).get(found[2], "")


def fill(text: str, outputs: dict[str, dict[str, str]]) -> str:
    return _EXPRESSION.sub(lambda m: value_of(m[1], outputs), text)


def runs(condition: str, outputs: dict[str, dict[str, str]]) -> bool:
    """A step's `if:` (success() is implied: the job stops at the first failing step)."""
    bare = _EXPRESSION.fullmatch(condition.strip())
    found = _CONDITION.fullmatch(bare[1] if bare else condition.strip())
    assert found, f"the test does not evaluate `if: {condition}`: teach runs"
    equal = value_of(found["left"], outputs) == found["right"]
    return equal if found["op"] == "==" else not equal


def read_outputs(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT: `name=value` lines and `name<<DELIMITER` blocks."""
    found: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block: list[str] = []
            for inner in lines:
                if inner == delimiter:
                    break
                block.append(inner)
            found[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found


@dataclass(frozen=True)
class StepRun:
    name: str
    id: str | None
    code: int
    out: str
    outputs: dict[str, str]


@dataclass(frozen=True)
class JobRun:
    ran: list[StepRun]
    not_run: list[str]  # steps whose `if:` was false
    summary: str  # the run's summary page: each step's $GITHUB_STEP_SUMMARY, in order
    temp: Path  # $RUNNER_TEMP, shared by the job's steps

    @property
    def ok(self) -> bool:
        return all(s.code == 0 for s in self.ran)

    @property
    def out(self) -> str:
        return "".join(f"--- {s.name} (exit {s.code})\n{s.out}" for s in self.ran)

    def outputs(self, step_id: str) -> dict[str, str]:
        (found,) = [s for s in self.ran if s.id == step_id]
        return found.outputs

    def step(self, name: str) -> StepRun | None:
        return next((s for s in self.ran if s.name == name), None)


# -- the world the job runs in -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    root: Path
    env: Env
    bare: Path
    apt: AptRepo
    uri: str  # where the apt repository is served
    vendor: str  # the newest vendor image matching base's filter, the one its release was built from
    aws: AwsCloud

    def refs(self) -> dict[str, str]:
        listing = git(self.env, self.bare, "for-each-ref", "--format=%(refname) %(objectname)")
        return dict(line.split(" ", 1) for line in listing.splitlines())

    def rev(self, ref: str) -> str:
        return git(self.env, self.bare, "rev-parse", ref)

    def file_at(self, ref: str, path: str) -> str:
        """The file's bytes as text (git() strips what it prints)."""
        done = subprocess.run(
            ["git", "--git-dir", str(self.bare), "show", f"{ref}:{path}"],
            env=self.env.base(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    def gh_calls(self) -> list[dict[str, Any]]:
        log = self.env.gh_state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def prs(self) -> list[dict[str, Any]]:
        file = self.env.gh_state / "prs.json"
        found = json.loads(file.read_text()) if file.exists() else []
        assert isinstance(found, list)
        return found


@pytest.fixture
def world(tmp_path: Path, moto: MotoEndpoint, aws: AwsCloud, make_ami: MakeAmi) -> Iterator[World]:
    """An origin still to seed, a signed apt repository (stamp-probe 1.0, and 1.1 in bookworm-security) served on
    loopback, and one vendor image in moto matching base's source filter."""
    env = Env(home=tmp_path / "home", bin=tmp_path / "bin", gh_state=tmp_path / "gh", moto_url=moto.url)
    for folder in (env.home, env.bin, env.gh_state):
        folder.mkdir()
    write_stub(env.bin / "gh", f"#!{sys.executable}\n{GH_STUB}")
    apt = AptRepo(tmp_path / "apt")
    apt.publish("bookworm", [Deb(PROBE, "1.0")])
    apt.publish("bookworm-security", [Deb(PROBE, "1.1")], label="stamp-test-security")
    vendor = make_ami(name="debian-12-amd64-20261101-1234")
    newest = aws.find_newest_image("us-east-1", name=VENDOR_FILTER, owners=["self"])
    assert newest is not None and newest.ami_id == vendor, "the plan's vendor lookup finds the release's source"
    bare = tmp_path / "origin.git"
    git(env, tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    try:
        with apt.serve() as uri:
            yield World(root=tmp_path, env=env, bare=bare, apt=apt, uri=uri, vendor=vendor, aws=aws)
    finally:
        # gpg started an agent for the repository's key: it is this test's to stop.
        apt.close()


def inventory(world: World, probe: str) -> inv.Inventory:
    """base 1's packages as its verification took them: stamp-probe at `probe`, from the served repository."""
    sources = [
        inv.AptSource(file="/etc/apt/sources.list", type="deb", uri=world.uri, suite=suite, components=["main"])
        for suite in ("bookworm", "bookworm-security")
    ]
    packages = [
        inv.Package(name=PROBE, version=probe, arch="amd64", source=PROBE, source_version=probe),
        inv.Package(
            name="base-files", version="12.4+deb12u8", arch="amd64", source="base-files", source_version="12.4+deb12u8"
        ),
    ]
    return inv.Inventory(
        image="base",
        build_id=BUILD_ID,
        ami="ami-0123456789abcdef1",
        collected_at="2026-11-29T10:30:00Z",
        packager="dpkg",
        kernel="6.1.0-28-cloud-amd64",
        sources=sources,
        packages=packages,
    )


def seed(world: World, *, s3: bool = False, defaults: str = "", release_extra: str = "") -> None:
    """main of origin: the catalog and what it names, and this workflow (the repository has its .github/).
    With `s3`, base 1 names its SBOM in defaults.artifacts, beside which `stamp record` stored its inventory."""
    work = world.root / "seed"
    git(world.env, world.root, "init", "-q", "--initial-branch=main", str(work))
    for image, script in (("base", "setup.sh"), ("web", "install.sh")):
        (work / "images" / image / "tests").mkdir(parents=True)
        (work / "images" / image / script).write_text("#!/usr/bin/env bash\nset -euo pipefail\necho hi\n")
        (work / "images" / image / "tests" / "test_it.py").write_text("def test_it(host):\n    assert host\n")
    (work / "keys").mkdir()
    shutil.copyfile(world.apt.keyring, work / "keys" / "archive.gpg")
    (work / ".github" / "workflows").mkdir(parents=True)
    shutil.copyfile(SCHEDULE, work / ".github" / "workflows" / SCHEDULE.name)
    artifacts, sbom = defaults, release_extra
    if s3:
        artifacts += f"  artifacts: {{bucket: {BUCKET}, prefix: {PREFIX}}}\n"
        uri = f"s3://{BUCKET}/{PREFIX}/base/1/sbom.cdx.json"
        sbom += f'      sbom: {{uri: "{uri}", sha256: "{"0" * 64}"}}\n      packages: 2\n'
    catalog = CATALOG.format(
        artifacts=artifacts, filter=VENDOR_FILTER, build_id=BUILD_ID, vendor=world.vendor, sbom=sbom
    )
    (work / "catalog.yaml").write_text(catalog)
    git(world.env, work, "add", "-A")
    git(world.env, work, "commit", "-q", "-m", "the catalog")
    git(world.env, work, "push", "-q", str(world.bare), "main")


def store_in_s3(world: World, probe: str) -> None:
    """What `stamp record` stored beside base 1's SBOM: its packages.json."""
    world.aws.create_bucket("us-east-1", BUCKET)
    body = inventory(world, probe).model_dump_json(indent=2).encode()
    world.aws.put_object("us-east-1", BUCKET, f"{PREFIX}/base/1/packages.json", body, content_type="application/json")


def checkout(world: World, name: str) -> Path:
    """What actions/checkout gives the job on a schedule: main's tip, one commit deep, no credentials kept."""
    work = world.root / name
    git(world.env, world.root, "clone", "-q", "--depth", "1", "--branch", "main", f"file://{world.bare}", str(work))
    return work


def keep_inventory(work: Path, world: World, probe: str) -> None:
    """base 1's inventory in the checkout's build/, where `stamp verify` keeps it (the plan's default --out)."""
    inv.write_json(inv.history_path(work / "build", "base", BUILD_ID), inventory(world, probe).model_dump_json())


def run_job(world: World, work: Path, job: str = JOB) -> JobRun:
    """Every step of the job the test does not stand in for, in order, as GitHub runs a `run:` without `shell:`
    (bash -e) in the workspace; a step whose `if:` is false is not run, a failing step ends the job."""
    temp = world.root / f"{work.name}.runner-temp"
    temp.mkdir()
    outputs: dict[str, dict[str, str]] = {}
    ran: list[StepRun] = []
    not_run: list[str] = []
    summary = ""
    for index, step in enumerate(s for s in job_steps(job) if not provided_by_the_test(s)):
        name = str(step.get("name", step["run"]))
        if "if" in step and not runs(str(step["if"]), outputs):
            not_run.append(name)
            continue
        files = world.root / f"{work.name}.step-{index}"
        files.mkdir()
        script, output, step_summary = files / "script.sh", files / "output", files / "summary.md"
        script.write_text(fill(str(step["run"]), outputs))
        output.write_text("")
        step_summary.write_text("")
        env = world.env.base()
        # stamp as `pip install .` leaves it: the console script beside this interpreter.
        env["PATH"] = os.pathsep.join([str(world.env.bin), str(Path(sys.executable).parent), os.environ["PATH"]])
        env |= {name: fill(str(value), outputs) for name, value in step.get("env", {}).items()}
        env |= {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(work),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(step_summary),
            "RUNNER_TEMP": str(temp),
            "STAMP_CACHE_DIR": str(world.root / "stamp-cache"),
            "GH_STUB_ORIGIN": str(world.bare),
        }
        done = run_step_script(script, cwd=work, env=env, timeout=TIMEOUT)
        found = read_outputs(output)
        step_id = str(step["id"]) if "id" in step else None
        if step_id is not None:
            outputs[step_id] = found
        ran.append(StepRun(name, step_id, done.returncode, done.stdout + done.stderr, found))
        summary += step_summary.read_text()
        if done.returncode != 0:
            break
    return JobRun(ran=ran, not_run=not_run, summary=summary, temp=temp)


# -- what a reader of the pull request sees ----------------------------------------------------------------------

PLAN_STEP = "stamp plan against the commit itself"
PR_STEP = "open or refresh the drift pull request"
CLOSE_STEP = "close the drift pull request once there is no drift"
# The plan's reason and the package row, as the markdown renderer escapes them.
REASON = "**updates available**: 1 security \\(stamp\\-probe 1\\.0 → 1\\.1\\)"
ROW = "| stamp\\-probe | 1\\.0 | 1\\.1 | yes |"


def shown(markdown: str) -> str:
    """The text GitHub renders: escapes and bold markers gone."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("**", "")


def plan_data(job: JobRun) -> dict[str, Any]:
    data = json.loads((job.temp / "drift.json").read_text())
    assert isinstance(data, dict)
    return data


def assert_pull_request_body(body: str) -> None:
    assert REASON in body
    assert "updates available: 1 security (stamp-probe 1.0 → 1.1)" in shown(body)
    assert ROW in body
    assert "base: 1 pending update" in shown(body)


# -- the scenarios -----------------------------------------------------------------------------------------------


def test_a_pending_security_update_opens_the_drift_pull_request(world: World) -> None:
    seed(world)
    main = world.rev("main")
    work = checkout(world, "run-1")
    keep_inventory(work, world, "1.0")

    job = run_job(world, work)

    assert job.ok, job.out
    assert [s.name for s in job.ran] == [PLAN_STEP, PR_STEP] and job.not_run == [CLOSE_STEP]
    assert job.outputs("plan") == {"images": "base web"}
    data = plan_data(job)
    (base, web) = data["images"]
    assert [(r["kind"], r["detail"]) for r in base["reasons"]] == [
        ("updates_available", f"1 security ({PROBE} 1.0 → 1.1)")
    ], "the vendor image is the release's own: no new source image"
    assert data["sources_checked"] and data["updates_checked"]
    assert web["reasons"] == [{"kind": "parent_rebuilt", "detail": "base"}]

    # origin: stamp/drift, one commit on main adding .github/drift.md; main untouched.
    assert set(world.refs()) == {"refs/heads/main", f"refs/heads/{BRANCH}"}
    assert world.rev("main") == main
    assert world.rev(f"{BRANCH}^") == main
    changed = git(world.env, world.bare, "diff", "--name-only", "main", BRANCH)
    assert changed == ".github/drift.md"
    drift_md = world.file_at(BRANCH, ".github/drift.md")

    # gh: asked for an open pull request, found none, created one from the body file.
    calls = world.gh_calls()
    assert [c["args"][:2] for c in calls] == [["pr", "list"], ["pr", "create"]]
    create = calls[1]["args"]
    assert create[create.index("--head") + 1] == BRANCH and create[create.index("--base") + 1] == "main"
    title = create[create.index("--title") + 1]
    assert "base" in title.split() and "web" in title.split(), title
    body = calls[1]["body"]
    assert_pull_request_body(body)
    assert body == drift_md
    (pr,) = world.prs()
    assert pr["state"] == "open" and pr["body"] == body
    assert job.summary == body, "the run summary shows the same plan"


def test_an_up_to_date_release_opens_nothing(world: World) -> None:
    seed(world)
    before = world.refs()
    work = checkout(world, "run-1")
    keep_inventory(work, world, "1.1")

    job = run_job(world, work)

    assert job.ok, job.out
    assert job.outputs("plan") == {"images": ""}
    assert plan_data(job)["order"] == []
    assert [s.name for s in job.ran] == [PLAN_STEP, CLOSE_STEP] and job.not_run == [PR_STEP]
    assert world.refs() == before, "no branch pushed"
    assert [c["args"][:2] for c in world.gh_calls()] == [["pr", "list"]], "only a look for a pull request to close"
    assert "nothing to build" in job.summary
    assert "updates available" not in shown(job.summary)


def test_the_next_day_refreshes_the_open_pull_request(world: World) -> None:
    seed(world)
    first = checkout(world, "day-1")
    keep_inventory(first, world, "1.0")
    assert run_job(world, first).ok
    day_one = world.rev(BRANCH)

    # Overnight the security suite gets 1.2; the pull request is still open.
    world.apt.publish("bookworm-security", [Deb(PROBE, "1.2")], label="stamp-test-security")
    second = checkout(world, "day-2")
    keep_inventory(second, world, "1.0")
    job = run_job(world, second)

    assert job.ok, job.out
    calls = world.gh_calls()[2:]
    assert [c["args"][:2] for c in calls] == [["pr", "list"], ["pr", "edit"]]
    assert calls[1]["args"][2] == "1", "the pull request day 1 opened"
    assert calls[1]["args"][calls[1]["args"].index("--title") + 1] == "stamp drift: rebuild base web"
    body = calls[1]["body"]
    assert "updates available: 1 security (stamp-probe 1.0 → 1.2)" in shown(body)
    assert "| stamp\\-probe | 1\\.0 | 1\\.2 | yes |" in body
    assert [(p["number"], p["state"], p["body"]) for p in world.prs()] == [(1, "open", body)]
    assert world.rev(BRANCH) != day_one and world.rev(f"{BRANCH}^") == world.rev("main")
    assert world.file_at(BRANCH, ".github/drift.md") == body


def test_the_drift_pull_request_is_closed_once_the_image_is_patched(world: World) -> None:
    seed(world)
    first = checkout(world, "day-1")
    keep_inventory(first, world, "1.0")
    assert run_job(world, first).ok
    # The next day the current release has 1.1 (a merge rebuilt it): nothing drifts any more.
    second = checkout(world, "day-2")
    keep_inventory(second, world, "1.1")
    job = run_job(world, second)

    assert job.ok, job.out
    assert [s.name for s in job.ran] == [PLAN_STEP, CLOSE_STEP]
    (pr,) = world.prs()
    assert pr["state"] == "closed" and "No drift any more" in pr["comment"]


def test_drift_that_persists_after_its_pull_request_merged_is_a_warning(world: World) -> None:
    seed(world)
    first = checkout(world, "day-1")
    keep_inventory(first, world, "1.0")
    assert run_job(world, first).ok
    # The pull request merges; the rebuild it starts fails, so base 1 stays current and the drift stays.
    git(world.env, world.bare, "update-ref", "refs/heads/main", world.rev(BRANCH))
    prs = world.prs()
    prs[0]["state"] = "merged"
    (world.env.gh_state / "prs.json").write_text(json.dumps(prs))
    merged = world.rev("main")

    second = checkout(world, "day-2")
    keep_inventory(second, world, "1.0")
    job = run_job(world, second)

    assert job.ok, job.out
    assert job.outputs("plan") == {"images": "base web"}
    pr_step = job.step(PR_STEP)
    assert pr_step is not None
    assert "::warning::drift persists after its pull request merged" in pr_step.out
    assert [c["args"][:2] for c in world.gh_calls()[2:]] == [["pr", "list"]], "no second pull request"
    assert [p["state"] for p in world.prs()] == ["merged"]
    assert world.rev("main") == merged


def test_in_ci_the_inventory_comes_from_s3_beside_the_sbom(world: World) -> None:
    """A fresh checkout has no build/: the plan reads base 1's inventory where `stamp record` stored it."""
    seed(world, s3=True)
    store_in_s3(world, "1.0")
    work = checkout(world, "run-1")
    assert not (work / "build").exists()

    job = run_job(world, work)

    assert job.ok, job.out
    assert job.outputs("plan") == {"images": "base web"}
    (create,) = [c for c in world.gh_calls() if c["args"][:2] == ["pr", "create"]]
    assert_pull_request_body(create["body"])
    assert world.rev(f"{BRANCH}^") == world.rev("main")
