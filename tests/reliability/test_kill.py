"""Builds killed at several points leave only what carries their build ID, `stamp gc` removes it, a rerun adopts it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, local_target
from fakes import FakeCloud
from scoreboard import Scoreboard
from stamp import local
from stamp.catalog.load import Catalog, load_catalog
from stamp.catalog.results import BuildResult
from stamp.cli import _sigterm_raises
from stamp.clock import utc_now
from stamp.cloud.aws import AwsCloud
from stamp.commands.build import build_image, check_build_id
from stamp.commands.gc import collect_garbage
from stamp.drivers import runfiles
from stamp.drivers.layers import run_in_layers
from stamp.drivers.stopping import clear_stop, is_stopping, stop_builds
from stamp.errors import BuildError, Stopped, Terminated, UsageError
from stamp.hosts.base import BuildMachine, Target
from stamp.hosts.ec2 import Ec2Target
from stamp.hosts.local import LocalTarget
from stamp.local.baseimage import image_exists

REGIONS = ("us-east-1", "eu-west-1")
CATALOG = """\
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  kit:
    description: a small image that takes a few seconds to provision
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/kit/provision.sh]
    tests: images/kit/tests
releases: {}
"""
PROVISION = """\
#!/usr/bin/env bash
set -euo pipefail
echo "kit: provisioning"
sleep 3
echo kit > /etc/stamp-kit
"""
IMAGE_TEST = """\
def test_kit_was_provisioned(host):
    assert host.file("/etc/stamp-kit").content_string.strip() == "kit"
"""
BUILD_ID = re.compile(r"build (kit-\d{14}-[0-9a-f]+)")


@dataclass(frozen=True)
class Workspace:
    root: Path
    target: LocalTarget

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.yaml"

    @property
    def cloud(self) -> AwsCloud:
        assert isinstance(self.target.cloud, AwsCloud)
        return self.target.cloud

    @property
    def local(self) -> local.LocalCloud:
        assert self.target.local is not None
        return self.target.local


@dataclass(frozen=True)
class Thing:
    """Anything a build may create: an EC2 resource in moto, or a container of the local cloud."""

    kind: str
    resource_id: str
    region: str
    build_id: str = ""
    description: str = ""


@dataclass(frozen=True)
class Run:
    build_id: str
    returncode: int
    output: str
    pid: int


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A scratch repository with one small image, and its own local cloud."""
    root = tmp_path_factory.mktemp("killed")
    (root / "catalog.yaml").write_text(CATALOG)
    (root / "images" / "kit" / "tests").mkdir(parents=True)
    (root / "images" / "kit" / "provision.sh").write_text(PROVISION)
    (root / "images" / "kit" / "tests" / "test_kit.py").write_text(IMAGE_TEST)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "init")
    target = local_target(load_catalog(root / "catalog.yaml"))
    try:
        yield Workspace(root, target)
    finally:
        assert target.local is not None
        local.down(root)
        # Container images of the AMIs made here (gc untags those it deregisters): the engine is shared.
        engine = target.local.engine_handle
        for ami_id in sorted(_AMIS_SEEN):
            engine.run(["rmi", local.container_image_for(ami_id)], what="test clean-up", check=False, echo=False)


_AMIS_SEEN: set[str] = set()


def _tag(tags: Sequence[Mapping[str, Any]] | None) -> str:
    return next((str(t.get("Value", "")) for t in tags or [] if t["Key"] == "stamp:build-id"), "")


def _inventory(target: LocalTarget) -> set[Thing]:
    """Everything in moto a build could have made (live instances, own images and snapshots, key pairs,
    security groups other than the default ones, volumes) and the local cloud's containers."""
    assert isinstance(target.cloud, AwsCloud) and target.local is not None
    found: set[Thing] = set()
    for region in REGIONS:
        ec2 = target.cloud.ec2(region)
        for reservation in ec2.describe_instances()["Reservations"]:
            for i in reservation["Instances"]:
                if i["State"]["Name"] != "terminated":
                    found.add(Thing("instance", i["InstanceId"], region, _tag(i.get("Tags"))))
        for image in ec2.describe_images(Owners=["self"])["Images"]:
            found.add(Thing("image", image["ImageId"], region, _tag(image.get("Tags")), image.get("Name", "")))
        for snap in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]:
            found.add(Thing("snapshot", snap["SnapshotId"], region, _tag(snap.get("Tags"))))
        for pair in ec2.describe_key_pairs()["KeyPairs"]:
            found.add(Thing("key-pair", pair["KeyName"], region, _tag(pair.get("Tags"))))
        for group in ec2.describe_security_groups()["SecurityGroups"]:
            if group["GroupName"] != "default":
                found.add(
                    Thing("security-group", group["GroupId"], region, _tag(group.get("Tags")), group["Description"])
                )
        for volume in ec2.describe_volumes()["Volumes"]:
            found.add(Thing("volume", volume["VolumeId"], region, _tag(volume.get("Tags"))))
    ids = local.list_instances(target.local)
    if ids:
        done = target.local.engine_handle.run(["container", "inspect", *ids], what="test", check=False, echo=False)
        for item in json.loads(done.stdout or "[]"):
            labels = item["Config"].get("Labels") or {}
            found.add(Thing("container", item["Id"][:12], "local", labels.get("stamp:build-id", "")))
    _AMIS_SEEN.update(t.resource_id for t in found if t.kind == "image")
    return found


def _containers_of(target: LocalTarget, build_id: str) -> list[str]:
    assert target.local is not None
    return local.list_instances(target.local, {"stamp:build-id": build_id})


def _new_since(before: set[Thing], target: LocalTarget) -> set[Thing]:
    return {thing for thing in _inventory(target) if (thing.kind, thing.resource_id) not in _keys(before)}


def _keys(things: set[Thing]) -> set[tuple[str, str]]:
    return {(t.kind, t.resource_id) for t in things}


def _stamp(ws: Workspace, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stamp",
        *args,
        # The lines these tests wait for (engine commands, Packer's steps) are printed with -v only.
        "-v",
        "--cloud",
        "local",
        "--catalog",
        str(ws.catalog_path),
    ]


def run_and_kill(ws: Workspace, trigger: str, sig: signal.Signals) -> Run:
    """Run `stamp build kit` and send `sig` as soon as a line containing `trigger` appears.

    SIGTERM goes to stamp alone (as `kill` or a CI runner's first signal would): stamp must stop Packer itself.
    SIGKILL goes to stamp's whole process group, Packer included: nothing gets to clean up.
    """
    child = subprocess.Popen(
        _stamp(ws, "build", "kit", "--out", str(ws.root / "build")),
        cwd=ws.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(240, lambda: os.killpg(child.pid, signal.SIGKILL))
    watchdog.start()
    lines: list[str] = []
    build_id = ""
    sent = False
    try:
        assert child.stderr is not None
        for line in child.stderr:
            lines.append(line)
            found = BUILD_ID.search(line)
            if found and not build_id:
                build_id = found.group(1)
            if not sent and trigger in line:
                if trigger == CONTAINER_STARTING:
                    _wait_for_container(ws, build_id)
                if sig == signal.SIGKILL:
                    os.killpg(child.pid, signal.SIGKILL)
                else:
                    os.kill(child.pid, sig)
                sent = True
        returncode = child.wait(timeout=120)
    finally:
        watchdog.cancel()
    output = "".join(lines)
    assert sent, f"the build never printed {trigger!r}:\n{output[-3000:]}"
    assert build_id, output[-3000:]
    return Run(build_id, returncode, output, child.pid)


def _wait_for_container(ws: Workspace, build_id: str) -> None:
    """Until the build container exists: stamp is then waiting for its sshd."""
    deadline = time.monotonic() + 30
    while not _containers_of(ws.target, build_id):
        assert time.monotonic() < deadline, "the build container never appeared"
        time.sleep(0.05)


def _gc(ws: Workspace) -> None:
    catalog = load_catalog(ws.catalog_path)
    report = collect_garbage(catalog, ws.target, older_than=None, now=utc_now(), dry_run=False)
    report.raise_for_failures()
    # What `stamp gc` also does: the private run directories (SSH keys) of runs killed with SIGKILL.
    runfiles.remove_stale_run_dirs()


def _private_keys_under(root: Path) -> list[Path]:
    """Files named like an SSH key, or holding one."""
    if not root.is_dir():
        return []
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and (path.name.startswith("id_") or b"PRIVATE KEY" in path.read_bytes())
    )


def _run_dirs_of(pid: int) -> list[Path]:
    """The private run directories (SSH keys, ssh sockets) the process `pid` made and left."""
    found = []
    for base in runfiles.base_dirs():
        for path in base.glob(f"{runfiles.PREFIX}*"):
            owner = path / runfiles.OWNER_FILE
            if owner.is_file() and owner.read_text().split()[:1] == [str(pid)]:
                found.append(path)
    return found


CONTAINER_STARTING = "+ podman run --detach"
POINTS = {
    # the build container exists, and stamp waits for its sshd
    "container start": CONTAINER_STARTING,
    # Packer's instance runs the provisioning script
    "packer build": "kit: provisioning",
    # Packer has registered and copied the AMIs; stamp reads the manifest and commits the container
    "after packer": "Builds finished",
}


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("point", list(POINTS))
def test_a_killed_build_leaves_only_what_carries_its_build_id_and_gc_removes_it(
    workspace: Workspace, scoreboard: Scoreboard, point: str, sig: signal.Signals
) -> None:
    before = _inventory(workspace.target)
    run = run_and_kill(workspace, POINTS[point], sig)
    left = _new_since(before, workspace.target)
    result = workspace.root / "build" / "kit" / "result.json"

    assert not result.exists(), "a killed build must not leave a result that looks like a success"
    untagged = {t for t in left if t.build_id != run.build_id}
    assert not untagged, f"resources without the build ID: {untagged}"
    if sig == signal.SIGTERM:
        assert run.returncode == 143, run.output[-3000:]
        assert "stopped by SIGTERM" in run.output
        # SIGTERM is cleaned up by stamp and Packer themselves; only finished AMIs stay, for a rerun to adopt.
        assert {t.kind for t in left} <= ({"image", "snapshot"} if point == "after packer" else set()), left
        assert not _run_dirs_of(run.pid), "a SIGTERMed build removes its private keys itself"
    else:
        # No `finally` ran: the build's key is still there, but in its private run directory, not in build/.
        assert [(path / "id_ed25519").is_file() for path in _run_dirs_of(run.pid)] == [True]

    _gc(workspace)
    orphans = _new_since(before, workspace.target)
    scoreboard.add("builds killed", tried=1, bad=len(orphans))
    keys = _private_keys_under(workspace.root / "build")
    scoreboard.add("private keys left in build/", tried=1, bad=len(keys))
    assert not orphans, f"left after gc: {orphans}"
    assert not keys, f"private keys in build/ (an artifact) after the killed build and gc: {keys}"
    assert not _run_dirs_of(run.pid), "gc removes a killed build's private run directory"


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_rerun_under_the_build_id_adopts_the_amis_an_interrupted_build_registered(
    workspace: Workspace, sig: signal.Signals
) -> None:
    before = _inventory(workspace.target)
    run = run_and_kill(workspace, POINTS["after packer"], sig)
    made = {t for t in _new_since(before, workspace.target) if t.kind == "image"}
    assert {t.region for t in made} == set(REGIONS), run.output[-3000:]

    rerun = subprocess.run(
        _stamp(workspace, "build", "kit", "--build-id", run.build_id, "--out", str(workspace.root / "build")),
        cwd=workspace.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if f"adopted build {run.build_id}" not in rerun.stderr:
        pytest.fail(f"the rerun did not adopt:\n{rerun.stderr[-6000:]}\nthe killed run:\n{run.output[-3000:]}")
    assert "packer build" not in rerun.stderr
    result = (workspace.root / "build" / "kit" / "result.json").read_text()
    assert all(t.resource_id in result for t in made)
    after = _new_since(before, workspace.target)
    assert {t for t in after if t.kind == "image"} == made, "the rerun must not register a second AMI"
    # What the killed run left besides its AMIs (instance, key pair, container) is gone; the AMIs can launch.
    assert {t.kind for t in after} <= {"image", "snapshot", "security-group"}
    for thing in made:
        assert image_exists(workspace.local.engine_handle, local.container_image_for(thing.resource_id))
    _gc(workspace)


@pytest.mark.e2e
def test_a_rerun_deregisters_amis_no_container_image_stands_behind_and_builds_again(workspace: Workspace) -> None:
    before = _inventory(workspace.target)
    run = run_and_kill(workspace, POINTS["after packer"], signal.SIGKILL)
    made = {t for t in _new_since(before, workspace.target) if t.kind == "image"}
    engine = workspace.local.engine_handle
    # As if the kill came before the commit, and the build container was lost with the machine.
    for container_id in _containers_of(workspace.target, run.build_id):
        local.terminate(workspace.local, container_id)
    for thing in made:
        engine.run(["rmi", local.container_image_for(thing.resource_id)], what="test", check=False, echo=False)

    rerun = subprocess.run(
        _stamp(workspace, "build", "kit", "--build-id", run.build_id, "--out", str(workspace.root / "build")),
        cwd=workspace.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "cannot be adopted" in rerun.stderr and "building again" in rerun.stderr
    images = {t for t in _new_since(before, workspace.target) if t.kind == "image"}
    assert not images & made, "the AMIs that could not launch are deregistered"
    assert {t.region for t in images} == set(REGIONS)
    assert {t.build_id for t in images} == {run.build_id}
    _gc(workspace)


# -- without Packer: the build's key pair, stopping, reruns ------------------------------------------------------

VENDOR_OWNER = "136693071363"


@dataclass
class FakePacker:
    """Stands in for `packer.build`: checks what a real Packer would get, then registers AMIs or fails."""

    cloud: FakeCloud
    fail: BuildError | None = None
    # Raised after the manifest is written, its work done; with stop_on_exit, stamp is told to stop just before,
    # as when a SIGTERM reaches stamp and the Packer that is exiting.
    fail_on_exit: BuildError | None = None
    stop_on_exit: bool = False
    seen: list[dict[str, str]] = field(default_factory=list)

    def build(self, directory: Path, *, vars: Mapping[str, str], **_: object) -> None:
        self.seen.append(dict(vars))
        pair = self.cloud.key_pairs.get(("us-east-1", vars["ssh_keypair_name"]))
        assert pair is not None and pair[1]["stamp:build-id"] == vars["build_id"], "tagged before Packer starts"
        assert Path(vars["ssh_private_key_file"]).is_file()
        if self.fail is not None:
            raise self.fail
        builds = []
        for region in ("us-east-1", "eu-west-1"):
            image = self.cloud.add_image(region, f"base-{vars['build_id']}", tags={"stamp:build-id": vars["build_id"]})
            builds.append(f"{region}:{image.ami_id}")
        manifest = {
            "last_run_uuid": "run-1",
            "builds": [
                {
                    "packer_run_uuid": "run-1",
                    "artifact_id": ",".join(builds),
                    "custom_data": {"build_id": vars["build_id"]},
                }
            ],
        }
        (directory / "manifest.json").write_text(json.dumps(manifest))
        if self.stop_on_exit:
            stop_builds()
        if self.fail_on_exit is not None:
            raise self.fail_on_exit


@pytest.fixture
def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Catalog, Target, FakePacker]:
    """The fixture catalog (base, web) on an in-memory cloud, with Packer replaced."""
    shutil.copytree(REPO / "tests" / "fixtures" / "catalog", tmp_path / "repo")
    catalog = load_catalog(tmp_path / "repo" / "good.yaml")
    cloud = FakeCloud()
    cloud.add_image("us-east-1", "debian-12-amd64-20261101-1234", owner_id=VENDOR_OWNER)
    fake = FakePacker(cloud)
    monkeypatch.setattr("stamp.commands.build.packer.detect_version", lambda *a, **k: (1, 6, 6))
    monkeypatch.setattr("stamp.commands.build.packer.build", fake.build)
    return catalog, Ec2Target(cloud), fake


def test_packer_gets_a_key_pair_and_security_group_tagged_with_the_build_id_and_both_go_afterwards(
    fake_build: tuple[Catalog, Target, FakePacker], tmp_path: Path
) -> None:
    catalog, target, fake = fake_build
    result = build_image(catalog, "base", target, build_root=tmp_path / "build")

    (variables,) = fake.seen
    assert variables["ssh_keypair_name"] == f"stamp-build-{result.build_id}"
    assert variables["security_group_id"].startswith("sg-")
    assert fake.cloud.calls["CreateSecurityGroup"] == 1
    assert fake.cloud.key_pairs == {}
    assert fake.cloud.security_groups == {}
    assert not Path(variables["ssh_private_key_file"]).exists(), "the throwaway private key is removed"


def test_a_failed_build_deletes_its_key_pair_and_any_earlier_result_and_says_what_it_left(
    fake_build: tuple[Catalog, Target, FakePacker], tmp_path: Path
) -> None:
    catalog, target, fake = fake_build
    stale = tmp_path / "build" / "base" / "result.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    fake.fail = BuildError("packer build of image 'base' failed (exit 1): Error waiting for AMI")

    with pytest.raises(BuildError) as failed:
        build_image(catalog, "base", target, build_root=tmp_path / "build")

    assert fake.cloud.key_pairs == {}
    assert not stale.exists()
    message = str(failed.value)
    assert "Error waiting for AMI" in message
    assert "us-east-1: nothing" in message and "eu-west-1: nothing" in message
    assert "nothing was recorded or shared; `stamp gc` removes what build base-" in message


@dataclass(frozen=True)
class CommittingTarget(Ec2Target):
    """EC2 with a build machine of stamp's own, as the local cloud has: what `finish_build` ties to the AMIs."""

    committed: list[dict[str, str]] = field(default_factory=list)

    def start_build(self, image: Any, build_id: str, *, source_ami: str, public_key: str) -> BuildMachine:
        return BuildMachine(machine_id=f"machine-of-{build_id}")

    def finish_build(self, machine: BuildMachine, amis: Mapping[str, str]) -> float:
        self.committed.append(dict(amis))
        return 0.0


@pytest.fixture
def committing_build(
    fake_build: tuple[Catalog, Target, FakePacker],
) -> tuple[Catalog, CommittingTarget, FakePacker]:
    """`fake_build` on a target that records what a finished build commits."""
    catalog, _target, fake = fake_build
    return catalog, CommittingTarget(fake.cloud), fake


def test_a_stop_that_ends_packer_after_its_manifest_keeps_the_amis_committed_for_a_rerun(
    committing_build: tuple[Catalog, CommittingTarget, FakePacker], tmp_path: Path
) -> None:
    catalog, target, fake = committing_build
    # The SIGTERM reached Packer as it was exiting: it had written its manifest, then died of the signal.
    fake.fail_on_exit = BuildError("packer build of image 'base' failed (exit 1): interrupted")
    fake.stop_on_exit = True
    try:
        with pytest.raises(Stopped, match="stopped after Packer registered its AMIs") as stopped:
            build_image(catalog, "base", target, build_root=tmp_path / "build")
    finally:
        clear_stop()
    (committed,) = target.committed
    assert set(committed) == {"us-east-1", "eu-west-1"}
    assert all(ami in str(stopped.value) for ami in committed.values())
    assert "adopts what it finished" in (stopped.value.hint or "")


def test_a_packer_failure_with_no_stop_commits_nothing_even_with_a_manifest(
    committing_build: tuple[Catalog, CommittingTarget, FakePacker], tmp_path: Path
) -> None:
    catalog, target, fake = committing_build
    fake.fail_on_exit = BuildError("packer build of image 'base' failed (exit 1): a post-processor failed")
    with pytest.raises(BuildError, match="a post-processor failed") as failed:
        build_image(catalog, "base", target, build_root=tmp_path / "build")
    assert not isinstance(failed.value, Stopped)
    assert target.committed == []


def test_a_stopped_process_starts_no_build(fake_build: tuple[Catalog, Target, FakePacker], tmp_path: Path) -> None:
    catalog, target, fake = fake_build
    stop_builds()
    try:
        with pytest.raises(BuildError, match="stamp was asked to stop"):
            build_image(catalog, "base", target, build_root=tmp_path / "build")
    finally:
        clear_stop()
    assert fake.seen == []
    assert build_image(catalog, "base", target, build_root=tmp_path / "build").amis


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_signal_in_the_main_thread_stops_the_build_threads_and_waits_for_them(
    fake_build: tuple[Catalog, Target, FakePacker], sig: signal.Signals
) -> None:
    catalog, _target, _fake = fake_build
    seen: list[tuple[str, bool]] = []
    started = threading.Event()

    def work(name: str) -> BuildResult:
        started.set()
        time.sleep(0.5)  # a build phase that takes a while; then the check made at every phase boundary
        seen.append((name, is_stopping()))
        raise BuildError(f"[{name}] stopped")

    def signal_soon() -> None:
        started.wait(5)
        os.kill(os.getpid(), sig)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=signal_soon).start()
    with pytest.raises((Terminated, KeyboardInterrupt)), _sigterm_raises():
        run_in_layers(catalog, ["base"], work)
    clear_stop()
    # The worker ran to its end, told to stop, before the exception left run_in_layers.
    assert seen == [("base", True)]
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_build_id_is_reused_only_for_its_image_and_never_for_a_release(tmp_path: Path) -> None:
    shutil.copytree(REPO / "tests" / "fixtures" / "catalog", tmp_path / "repo")
    path = tmp_path / "repo" / "good.yaml"
    path.write_text(
        path.read_text()
        + "releases:\n  base:\n    - version: 4\n      amis: {us-east-1: ami-0123456789abcdef0}\n"
        + '      built_at: "2026-11-01T00:00:00Z"\n      commit: 1a2b3c4d\n      build_id: base-20261101000000-aaaaaa\n'
        + "      source: {amis: {us-east-1: ami-0123456789abcdef0}}\n      verified: passed\n      status: current\n"
    )
    catalog = load_catalog(path)
    check_build_id(catalog, "base", "base-20261126150000-7f3a9c")
    for wrong in ("web-20261126150000-7f3a9c", "base-2026112615-7f3a9c", "base-20261126150000-XYZ", "base"):
        with pytest.raises(UsageError, match="is not a build ID of image 'base'"):
            check_build_id(catalog, "base", wrong)
    with pytest.raises(UsageError, match="is release 4 of 'base' already"):
        check_build_id(catalog, "base", "base-20261101000000-aaaaaa")
