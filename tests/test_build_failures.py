"""Failures on the local cloud say what failed, through the CLI, with real Packer, containers and testinfra: the
provisioning script and its last 30 lines, each failing test with its assertion; Packer's output only with -v;
`--on-error keep` leaves the build container running with a working ssh command, and `stamp gc` removes it;
read-only commands print no engine commands."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builders import commit_all
from conftest import local_target
from stamp import local
from stamp.catalog.load import load_catalog
from stamp.cli import main
from stamp.hosts.local import LocalTarget

pytestmark = pytest.mark.e2e

CATALOG = """\
version: 1
defaults:
  regions: [us-east-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  broken:
    description: its second script fails after printing 40 lines
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/broken/10-ok.sh, images/broken/20-fail.sh]
    tests: images/broken/tests
  flawed:
    description: builds, then fails one of its tests
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/flawed/setup.sh]
    tests: images/flawed/tests
releases: {}
"""
FAILING_SCRIPT = """\
#!/usr/bin/env bash
for i in $(seq 1 40); do echo "line $i of 40"; done
exit 1
"""
FLAWED_TESTS = """\
def test_was_provisioned(host):
    assert host.file("/etc/stamp-flawed").exists


def test_has_a_file_nobody_installed(host):
    assert host.file("/etc/not-installed-by-anyone").exists, "the file nobody installed is missing"
"""
BUILD_ID = re.compile(r"build (broken-\d{14}-[0-9a-f]+)")
SSH = re.compile(r"^  (ssh -F \S+ -p \d+ admin@127\.0\.0\.1)$", re.MULTILINE)


@dataclass(frozen=True)
class Workspace:
    root: Path
    target: LocalTarget

    def args(self, *args: str, out: bool = True) -> list[str]:
        common = ["--cloud", "local", "--catalog", str(self.root / "catalog.yaml")]
        return [*args, *common, *(["--out", str(self.root / "build")] if out else [])]

    def containers(self, build_id: str) -> list[str]:
        assert self.target.local is not None
        return local.list_instances(self.target.local, {"stamp:build-id": build_id})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A scratch repository with the two images, on its own local cloud (as tests/test_runfiles.py)."""
    root = tmp_path_factory.mktemp("failures")
    (root / "catalog.yaml").write_text(CATALOG)
    files = {
        "images/broken/10-ok.sh": "#!/bin/sh\necho fine\n",
        "images/broken/20-fail.sh": FAILING_SCRIPT,
        "images/broken/tests/test_broken.py": "def test_never_run(host):\n    pass\n",
        "images/flawed/setup.sh": "#!/bin/sh\nset -e\ntouch /etc/stamp-flawed\n",
        "images/flawed/tests/test_flawed.py": FLAWED_TESTS,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    commit_all(root)
    target = local_target(load_catalog(root / "catalog.yaml"))
    try:
        yield Workspace(root, target)
    finally:
        assert target.local is not None
        built = root / "build" / "flawed" / "result.json"
        amis = json.loads(built.read_text())["amis"].values() if built.is_file() else []
        local.down(root)
        for ami_id in amis:  # the engine is shared: its images of AMIs made here go too
            target.local.engine_handle.run(
                ["rmi", local.container_image_for(ami_id)], what="test clean-up", check=False, echo=False
            )


def _build_id(err: str) -> str:
    found = BUILD_ID.search(err)
    assert found, err
    return found.group(1)


def test_a_failing_script_exits_3_naming_it_with_its_last_30_lines_and_packers_output_stays_in_the_log(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(workspace.args("build", "broken")) == 3
    err = capsys.readouterr().err
    build_id = _build_id(err)

    assert "provisioning script images/broken/20-fail.sh exited 1\nits last 30 lines of output:\n" in err, err
    shown = [line for line in err.splitlines() if line.startswith("    | ")]
    assert shown == [f"    | line {i} of 40" for i in range(11, 41)], err
    assert re.search(r"^\[broken\] packer build … failed after \d", err, re.MULTILINE), err
    # Without -v: neither Packer's own output nor the commands stamp ran.
    assert "==> stamp.amazon-ebs.image" not in err and "line 10 of 40" not in err
    assert not [line for line in err.splitlines() if line.startswith("+ ")], err
    logs = workspace.root / "build" / "broken" / "logs"
    assert f"the full log is in {logs / 'packer.log'}" in err
    packer_log = (logs / "packer.log").read_text()
    assert "Provisioning with shell script:" in packer_log and "line 1 of 40" in packer_log
    build_log = (logs / "build.log").read_text()
    assert "\n+ packer build " in build_log and f"--name=stamp-build-{build_id}" in build_log
    assert workspace.containers(build_id) == [], "cleanup removes the build container"


def test_with_v_packers_output_and_the_commands_run_are_shown(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(workspace.args("-v", "build", "broken")) == 3
    err = capsys.readouterr().err
    assert "==> stamp.amazon-ebs.image: Provisioning with shell script:" in err, err
    assert re.search(r"^\[broken\] .*stamp\.amazon-ebs\.image: line 1 of 40$", err, re.MULTILINE), err
    assert re.search(r"^\+ packer build ", err, re.MULTILINE) and re.search(r"^\+ \w+ run --detach", err, re.MULTILINE)
    assert "provisioning script images/broken/20-fail.sh exited 1" in err


def test_on_error_keep_leaves_the_container_running_the_printed_ssh_command_works_and_gc_removes_it(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(workspace.args("build", "broken", "--on-error", "keep")) == 3
    err = capsys.readouterr().err
    build_id = _build_id(err)
    assert "the build machine is kept running (--on-error keep); open a shell on it with:" in err, err
    found = SSH.search(err)
    assert found, err
    ssh = found.group(1).split()
    kept = workspace.root / ".stamp" / "kept" / build_id
    assert Path(ssh[2]) == kept / "ssh_config" and (kept / "id_ed25519").is_file()
    assert f"the build's private key is kept in {kept}" in err
    assert len(workspace.containers(build_id)) == 1

    done = subprocess.run([*ssh, "true"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    marker = subprocess.run([*ssh, "cat /etc/hostname"], capture_output=True, text=True, timeout=60)
    assert marker.returncode == 0 and marker.stdout.strip(), marker.stderr

    assert main(workspace.args("gc", out=False)) == 0
    err = capsys.readouterr().err
    assert re.search(rf"removed\s+container\s+\w+\s+local\s+build {build_id}", err), err
    assert f"key of a kept build machine removed: {kept}" in err
    assert workspace.containers(build_id) == [] and not kept.exists()


def test_read_only_commands_print_no_engine_commands_unless_asked(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["plan", "--base", "HEAD"], ["publish", "--dry-run"]):
        assert main(workspace.args(*args, out=False)) == 0
        captured = capsys.readouterr()
        printed = (captured.out + captured.err).splitlines()
        assert not [line for line in printed if line.startswith("+ ")], printed
    assert workspace.target.local is not None
    engine = workspace.target.local.engine_handle.name
    assert main(workspace.args("-v", "plan", "--base", "HEAD", out=False)) == 0
    assert f"\n+ {engine} " in "\n" + capsys.readouterr().err, "with -v they are shown"


def test_a_failed_verification_lists_each_failing_test_with_its_assertion(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(workspace.args("build", "flawed")) == 0
    capsys.readouterr()
    assert main(workspace.args("verify", "flawed")) == 4
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if " FAILED " in line]
    assert len(failed) == 1, err
    assert re.fullmatch(
        r"\[flawed\] FAILED test_flawed::test_has_a_file_nobody_installed\[ssh://[^\]]+\]:"
        r" the file nobody installed is missing",
        failed[0],
    ), failed
    assert "test_was_provisioned" not in err
    log = workspace.root / "build" / "flawed" / "logs" / "verify.log"
    assert "2/3 checks passed" in err and f"pytest's output: {log}" in err, err
    assert "1 failed, 1 passed" in log.read_text() and "1 failed, 1 passed" not in err
    assert "image 'flawed' failed verification (1 failed)" in err
