"""One output channel: a line per step with its time, tool output and `+ cmd` lines only with -v (always in the
logs), failures that say what failed, interruptions that say what resumes them, and a kept build machine on EC2.

Builds here run Packer's stand-in against the in-memory cloud; tests/test_build_failures.py runs real Packer on
the local cloud.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import stamp.hosts.target
from fakes import FakeCloud
from stamp import output
from stamp.cli import build_parser, main
from stamp.commands.verify import read_junit
from stamp.drivers import packer, proc
from stamp.drivers.stopping import clear_stop, is_stopping
from stamp.errors import BuildError
from stamp.hosts.base import CloudKind, Target
from stamp.hosts.ec2 import Ec2Target

STEP_LINE = re.compile(r"^\[web\] packer build … \d+\.\d s$")


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """Every test starts without -v, and leaves no verbosity or stop request behind."""
    previous = output.set_verbose(False)
    yield
    output.set_verbose(previous)
    clear_stop()


# -- steps and the live line ---------------------------------------------------------------------------------------


def test_a_step_is_one_line_with_its_time_failed_or_not_and_a_silent_one_only_when_it_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with output.step("web", "packer build"):
        pass
    assert STEP_LINE.match(capsys.readouterr().err.rstrip("\n"))

    with pytest.raises(RuntimeError), output.step("web", "packer build"):
        raise RuntimeError("boom")
    assert re.fullmatch(r"\[web\] packer build … failed after \d+\.\d s\n", capsys.readouterr().err)

    with output.step("web", "start the build machine") as step:
        step.silent = True
    assert capsys.readouterr().err == ""
    with pytest.raises(KeyboardInterrupt), output.step("web", "start the build machine") as step:
        step.silent = True
        raise KeyboardInterrupt
    assert "start the build machine … interrupted after" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_live_line_counts_up_and_what_else_is_printed_goes_above_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    import sys

    with output.step("web", "packer build") as step:
        assert sys.stderr is not terminal, "stderr is wrapped while the live line shows"
        step.update("provisioning images/web/scripts/20-site.sh")
        print("a line from elsewhere", file=sys.stderr)
        output.say("a line from stamp")
    assert sys.stderr is terminal
    text = terminal.getvalue()
    assert "\r\x1b[K[web] packer build: provisioning images/web/scripts/20-site.sh 0 s" in text
    # Each line is printed over a cleared live line, which is drawn again after it.
    assert "\r\x1b[Ka line from elsewhere\n\r\x1b[K[web] packer build" in text
    assert "\r\x1b[Ka line from stamp\n" in text
    final = text.rsplit("\r\x1b[K", 1)[1]
    assert STEP_LINE.match(final.rstrip("\n")) and final.endswith("\n")


def test_ci_true_or_a_pipe_gets_plain_lines_only(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("CI", "true")
    with output.step("web", "packer build") as step:
        step.update("provisioning")
    assert "\x1b" not in terminal.getvalue() and "\r" not in terminal.getvalue()
    assert STEP_LINE.match(terminal.getvalue().rstrip("\n"))


# -- commands and tool output: logs always, stderr with -v -----------------------------------------------------


def test_commands_are_echoed_only_with_v_and_always_into_the_running_builds_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "logs" / "build.log"
    with output.logging_to(log):
        proc.run(["echo", "quiet"])
        proc.run(["sh", "-c", "echo why >&2; exit 4"], check=False)
    assert capsys.readouterr().err == ""
    assert log.read_text().splitlines() == ["+ echo quiet", "+ sh -c 'echo why >&2; exit 4'", "  exit 4", "    | why"]

    output.set_verbose(True)
    proc.run(["echo", "loud"])
    assert capsys.readouterr().err == "+ echo loud\n"


def test_long_commands_write_their_output_to_the_log_and_to_stderr_only_with_v(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "packer.log"
    seen: list[str] = []
    proc.run_logged(["sh", "-c", "echo one; echo two"], log=log, prefix="[web] ", on_line=seen.append)
    assert capsys.readouterr().err == ""
    assert log.read_text() == "one\ntwo\n" and seen == ["one\n", "two\n"]

    output.set_verbose(True)
    proc.run_logged(["echo", "three"], log=log, prefix="[web] ")
    assert capsys.readouterr().err == "+ echo three\n[web] three\n"


# -- what failed -------------------------------------------------------------------------------------------------

PACKER_OUTPUT = (
    "2026-11-30T09:28:46Z: ==> stamp.amazon-ebs.image: Connected to SSH!\n"
    "2026-11-30T09:28:46Z: ==> stamp.amazon-ebs.image: Provisioning with shell script: {root}/images/web/10-ok.sh\n"
    "2026-11-30T09:28:46Z:     stamp.amazon-ebs.image: ok\n"
    "2026-11-30T09:28:46Z: ==> stamp.amazon-ebs.image: Provisioning with shell script: {root}/images/web/20-site.sh\n"
    + "".join(f"2026-11-30T09:28:46Z:     stamp.amazon-ebs.image: line {i}\r\n" for i in range(1, 41))
    + "2026-11-30T09:28:46Z: ==> stamp.amazon-ebs.image: Provisioning step had errors: Running the cleanup"
    " provisioner, if present...\n"
    "2026-11-30T09:28:46Z: Build 'stamp.amazon-ebs.image' errored after 519 milliseconds: Script exited with"
    " non-zero exit status: 1.Allowed exit codes are: [0]\n"
    "\n==> Some builds didn't complete successfully and had errors:\n"
    "--> stamp.amazon-ebs.image: Script exited with non-zero exit status: 1.Allowed exit codes are: [0]\n"
)


def test_packers_output_names_the_failing_script_relative_to_the_repository_with_its_last_30_lines(
    tmp_path: Path,
) -> None:
    text = PACKER_OUTPUT.format(root=tmp_path)
    progress = packer.Progress(tmp_path / "build" / "web", roots=(tmp_path,))
    for line in text.splitlines(keepends=True):
        progress.feed(line)
    lines = progress.diagnosis(text).splitlines()
    assert lines[0] == "provisioning script images/web/20-site.sh exited 1"
    assert lines[1] == "its last 30 lines of output:"
    assert lines[2:] == [f"    | line {i}" for i in range(11, 41)]


def test_other_packer_failures_name_packers_own_summary_of_the_error() -> None:
    text = PACKER_OUTPUT.format(root="/r").replace("Script exited with non-zero exit status: 1.", "Timeout waiting.")
    assert packer.Progress(Path("/r")).diagnosis(text) == "Timeout waiting.Allowed exit codes are: [0]"
    shim = "==> stamp.amazon-ebs.image: Error launching source instance: Unsupported\n"
    assert packer.Progress(Path("/r")).diagnosis(shim) == shim.strip()


def test_a_failed_verification_names_each_test_with_the_first_line_of_its_assertion(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="test_web" name="test_site">'
        "<failure message=\"AssertionError: assert 'marker' in ''&#10; +  where '' = read()\">...</failure>"
        '</testcase><testcase classname="test_web" name="test_ok"/></testsuite></testsuites>'
    )
    report = read_junit(junit)
    assert report.failed == ("test_web::test_site",)
    assert report.why == {"test_web::test_site": "assert 'marker' in ''"}


# -- the command line --------------------------------------------------------------------------------------------


def test_v_is_global_before_or_after_the_command_and_main_leaves_it_as_it_was(tmp_path: Path) -> None:
    parse = build_parser().parse_args
    assert parse(["-v", "build", "web"]).verbose is True
    assert parse(["build", "web", "--verbose"]).verbose is True
    assert getattr(parse(["build", "web"]), "verbose", False) is False
    assert parse(["build", "web", "--on-error", "keep"]).on_error == "keep"
    assert parse(["build", "web"]).on_error == "cleanup"
    main(["-v", "schema", "--catalog", str(tmp_path / "none.yaml")])
    assert output.verbose() is False


# -- builds through the CLI, with Packer's stand-in on the in-memory cloud -----------------------------------------

VENDOR_OWNER = "136693071363"
CATALOG = """\
version: 1
defaults:
  regions: [us-east-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  base:
    description: base
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/base/setup.sh]
    tests: images/base/tests
  web:
    description: web
    parent: base
    provision: [images/web/setup.sh]
    tests: images/web/tests
releases: {}
"""


@dataclass
class StandIn:
    """Stands in for `packer.build`: registers an AMI, or fails the way it is told to."""

    cloud: FakeCloud
    vendor_ami: str
    act: Any = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def build(self, directory: Path, *, vars: Mapping[str, str], **options: object) -> None:
        self.calls.append({"vars": dict(vars), **options})
        if self.act is not None:
            self.act(vars)
        ami = self.cloud.add_image("us-east-1", f"base-{vars['build_id']}", tags={"stamp:build-id": vars["build_id"]})
        run = {"packer_run_uuid": "r", "artifact_id": f"us-east-1:{ami.ami_id}", "custom_data": dict(vars)}
        (directory / "manifest.json").write_text(json.dumps({"last_run_uuid": "r", "builds": [run]}))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    for image in ("base", "web"):
        (root / "images" / image / "tests").mkdir(parents=True)
        (root / "images" / image / "setup.sh").write_text("#!/bin/sh\ntrue\n")
        (root / "images" / image / "tests" / "test_it.py").write_text("def test_it(host):\n    pass\n")
    (root / "catalog.yaml").write_text(CATALOG)
    monkeypatch.chdir(root)
    monkeypatch.delenv("STAMP_CLOUD", raising=False)
    return root


@pytest.fixture
def stand_in(repo: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    cloud = FakeCloud()
    vendor = cloud.add_image("us-east-1", "debian-12-amd64-20261101-1234", owner_id=VENDOR_OWNER)

    def target_for(kind: CloudKind, catalog: Any) -> Target:
        return Ec2Target(cloud)

    monkeypatch.setattr(stamp.hosts.target, "target_for", target_for)
    fake = StandIn(cloud, vendor.ami_id)
    monkeypatch.setattr("stamp.commands.build.packer.detect_version", lambda *a, **k: (1, 6, 6))
    monkeypatch.setattr("stamp.commands.build.packer.build", fake.build)
    return fake


def _stop_like_packer(vars: Mapping[str, str]) -> None:
    """Packer, signalled by stamp, fails its build."""
    deadline = time.monotonic() + 30
    while not is_stopping() and time.monotonic() < deadline:
        time.sleep(0.05)
    raise BuildError("packer build of image 'base' failed (exit 1): Build was cancelled")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["Ctrl-C", "SIGTERM"])
@pytest.mark.usefixtures("ctrl_c_raises")
def test_an_interrupted_build_says_so_and_which_command_resumes_it(
    stand_in: StandIn, capsys: pytest.CaptureFixture[str], sig: signal.Signals, code: int
) -> None:
    def interrupt(vars: Mapping[str, str]) -> None:
        os.kill(os.getpid(), sig)  # the main thread gets it, as from a terminal or a CI runner
        _stop_like_packer(vars)

    stand_in.act = interrupt
    assert main(["build", "base", "web", "--out", "out"]) == code
    err = capsys.readouterr().err
    build_id = stand_in.calls[0]["vars"]["build_id"]
    lines = err.splitlines()
    start = lines.index("interrupted; to resume:")
    assert lines[start + 1 : start + 3] == [
        f"  stamp build base --build-id {build_id} --out out",
        "  stamp build web --out out",
    ], err


@pytest.mark.usefixtures("ctrl_c_raises")
def test_an_interrupted_release_suggests_each_phase_left_and_the_images_not_started(
    stand_in: StandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(vars: Mapping[str, str]) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        _stop_like_packer(vars)

    stand_in.act = interrupt
    assert main(["release", "base", "web", "--out", "out"]) == 130
    err = capsys.readouterr().err
    build_id = stand_in.calls[0]["vars"]["build_id"]
    lines = err.splitlines()
    start = lines.index("interrupted; to resume:")
    options = "--out out"
    assert lines[start + 1 : start + 3] == [
        f"  stamp build base --build-id {build_id} {options} && stamp verify base {options}"
        f" && stamp record base {options} && stamp publish base {options}",
        f"  stamp release web {options}",
    ], err


def test_a_failed_build_kept_on_ec2_names_its_instance_and_how_to_log_in_and_gc_removes_it_all(
    stand_in: StandIn, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = stand_in.cloud
    made: list[str] = []

    def abort(vars: Mapping[str, str]) -> None:
        # Packer's -on-error=abort: the failed build's instance stays, with the build's tags.
        (instance,) = cloud.run_instances(
            "us-east-1", stand_in.vendor_ami, count=1, instance_type="t3.micro", key_name=vars["ssh_keypair_name"],
            security_group_ids=[vars["security_group_id"]], tags={"stamp:build-id": vars["build_id"]},
        )  # fmt: skip
        made.append(instance.instance_id)
        raise BuildError("packer build of image 'base' failed (exit 1): provisioning script setup.sh exited 1")

    stand_in.act = abort
    assert main(["build", "base", "--on-error", "keep"]) == 3
    err = capsys.readouterr().err
    (call,) = stand_in.calls
    assert call["on_error"] == "abort"
    build_id = call["vars"]["build_id"]
    kept = repo / ".stamp" / "kept" / build_id
    (instance_id,) = made
    assert "the build machine is kept running (--on-error keep); open a shell on it with:" in err
    assert f"instance {instance_id} in us-east-1" in err
    assert f"aws ssm start-session --target {instance_id} --region us-east-1" in err
    assert f"ssh -F {kept / 'ssh_config'} admin@10.0.0.1" in err
    assert oct(kept.stat().st_mode & 0o777) == "0o700"
    assert "PRIVATE KEY" in (kept / "id_ed25519").read_text()
    assert f'IdentityFile "{kept / "id_ed25519"}"' in (kept / "ssh_config").read_text()
    left = {(r.kind, r.resource_id) for r in cloud.list_tagged("us-east-1", value=build_id)}
    assert {kind for kind, _ in left} >= {"instance", "key-pair", "security-group"}, "all kept for the debugging"

    assert main(["gc"]) == 0
    assert f"key of a kept build machine removed: {kept}" in capsys.readouterr().err
    assert not kept.exists()
    assert [i.state for i in cloud.describe_instances("us-east-1", [instance_id])] == ["terminated"]
    assert cloud.list_tagged("us-east-1", value=build_id) == []


def test_without_keep_a_failed_build_removes_its_key_pair_and_group_and_keeps_no_key(
    stand_in: StandIn, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(vars: Mapping[str, str]) -> None:
        raise BuildError("packer build of image 'base' failed (exit 1): provisioning script setup.sh exited 1")

    stand_in.act = fail
    assert main(["build", "base"]) == 3
    assert "on_error" not in stand_in.calls[0]
    build_id = stand_in.calls[0]["vars"]["build_id"]
    assert not (repo / ".stamp" / "kept").exists()
    assert stand_in.cloud.list_tagged("us-east-1", value=build_id) == []
    assert "kept running" not in capsys.readouterr().err
