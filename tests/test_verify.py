"""Verification's pure parts: the pytest command line and reading its JUnit report."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import MakeAmi
from stamp.cloud.aws import AwsCloud
from stamp.commands.verify import PYTEST_ENV, launched, pytest_args, read_junit
from stamp.errors import VerifyError
from stamp.hosts.base import Host
from stamp.hosts.ec2 import AwsLauncher

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" tests="3">
<testcase classname="test_web" name="test_nginx_installed[ssh://admin@127.0.0.1:2222]" time="0.1"/>
<testcase classname="test_web" name="test_site[ssh://admin@127.0.0.1:2222]" time="0.1">
  <failure message="assert 'marker' in ''">...</failure></testcase>
<testcase classname="test_web" name="test_port" time="0.1"><error message="boom"/></testcase>
<testcase classname="test_web" name="test_mirror" time="0.1"><skipped message="no mirror"/></testcase>
</testsuite></testsuites>
"""


def test_read_junit_names_failed_errored_and_skipped_tests(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    report = read_junit(path)
    assert report.total == 4
    assert report.passed == 1
    assert report.failed == ("test_web::test_site[ssh://admin@127.0.0.1:2222]", "test_web::test_port")
    assert report.skipped == ("test_web::test_mirror",)


def test_missing_report_is_a_verify_error(tmp_path: Path) -> None:
    with pytest.raises(VerifyError, match="no readable test report"):
        read_junit(tmp_path / "nope.xml")


def test_pytest_args_point_testinfra_at_the_host_over_ssh(tmp_path: Path) -> None:
    host = Host("i-1", "127.0.0.1", 40022, "admin")
    args = pytest_args(tmp_path / "tests", host, ssh_config=tmp_path / "ssh_config", junit=tmp_path / "j.xml")
    assert "--hosts=ssh://admin@127.0.0.1:40022" in args
    assert f"--ssh-config={tmp_path / 'ssh_config'}" in args
    assert f"--junitxml={tmp_path / 'j.xml'}" in args
    assert args[args.index("-c") + 1] == "/dev/null"


def test_image_tests_get_testinfra_and_what_their_conftest_names_and_leave_no_bytecode(tmp_path: Path) -> None:
    """verify's own command line and environment, run against this machine (`local://`) instead of over SSH:
    hypothesis and xdist are installed here and autoload otherwise; xdist named in conftest.py is loaded."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text('pytest_plugins = ["xdist.plugin"]\n')
    (tests / "test_plugins.py").write_text(
        "def test_plugins(host, request):\n"
        "    plugins = request.config.pluginmanager\n"
        "    assert host.backend.NAME == 'local'\n"
        "    assert plugins.has_plugin('xdist.plugin')\n"
        "    assert not plugins.has_plugin('hypothesispytest') and not plugins.has_plugin('xdist')\n"
    )
    junit = tmp_path / "junit.xml"
    args = pytest_args(tests, Host("i-1", "127.0.0.1", 22, "admin"), ssh_config=tmp_path / "ssh", junit=junit)
    args = [("--hosts=local://" if a.startswith("--hosts=") else a) for a in args if not a.startswith("--ssh-config")]
    # As on a machine where Python writes bytecode: none may land in the image's tests folder.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | PYTEST_ENV
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = read_junit(junit)
    assert (report.total, report.failed) == (1, ())
    assert sorted(p.name for p in tests.iterdir()) == ["conftest.py", "test_plugins.py"]


def test_aws_launcher_runs_tags_and_cleans_up_against_moto(aws: AwsCloud, make_ami: MakeAmi, tmp_path: Path) -> None:
    """The EC2 side of verification on the real moto server; moto's instances run no sshd, so login is stubbed."""
    ami_id = make_ami("us-east-1", "web-verify")
    logins: list[Host] = []
    launcher = AwsLauncher(
        cloud=aws,
        region="us-east-1",
        instance_type="t3.micro",
        work_dir=tmp_path,
        key_id="web-test",
        wait_for_login=lambda config, host, timeout: logins.append(host),
    )
    labels = {"stamp:build-id": "web-20261126-abc"}
    with launched(launcher, ami_id, names=["v-1", "v-2"], ssh_user="admin", build_id="web-20261126-abc") as hosts:
        assert len(hosts) == 2 and {h.instance_id for h in logins} == {h.instance_id for h in hosts}
        running = aws.describe_instances("us-east-1", [h.instance_id for h in hosts])
        assert {i.state for i in running} == {"running"}
        tagged = {r.kind for r in aws.list_tagged("us-east-1", value=labels["stamp:build-id"])}
        assert {"instance", "key-pair"} <= tagged
        assert (tmp_path / "ssh_config").read_text().count("IdentityFile") == 1
    after = aws.describe_instances("us-east-1", [h.instance_id for h in hosts])
    assert {i.state for i in after} <= {"shutting-down", "terminated"}
    assert not [r for r in aws.list_tagged("us-east-1", value=labels["stamp:build-id"]) if r.kind == "key-pair"]


class StuckLauncher:
    """Launches at once; terminating the first instance fails, as an engine or API error would."""

    ssh_config = Path("/dev/null")

    def __init__(self) -> None:
        self.terminated: list[str] = []

    def launch(self, ami_id: str, *, name: str, ssh_user: str, labels: dict[str, str]) -> Host:
        return Host(name, "127.0.0.1", 22, ssh_user)

    def terminate(self, host: Host) -> None:
        if host.instance_id == "v-1":
            raise VerifyError("v-1 could not be terminated")
        self.terminated.append(host.instance_id)

    def run(self, host: Host, command: str) -> str:
        return ""


def test_every_instance_is_terminated_even_when_one_termination_fails() -> None:
    launcher = StuckLauncher()
    with (
        pytest.raises(VerifyError, match="v-1 could not be terminated"),
        launched(launcher, "ami-1", names=["v-1", "v-2", "v-3"], ssh_user="admin", build_id="b") as hosts,
    ):
        assert [h.instance_id for h in hosts] == ["v-1", "v-2", "v-3"]
    assert sorted(launcher.terminated) == ["v-2", "v-3"]
