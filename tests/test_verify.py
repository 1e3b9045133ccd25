"""Verification's pure parts: the pytest command line and reading its JUnit report."""

from __future__ import annotations

from pathlib import Path

import pytest

from stamp.errors import VerifyError
from stamp.verify import Host, pytest_args, read_junit

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" tests="3">
<testcase classname="test_web" name="test_nginx_installed[ssh://admin@127.0.0.1:2222]" time="0.1"/>
<testcase classname="test_web" name="test_site[ssh://admin@127.0.0.1:2222]" time="0.1">
  <failure message="assert 'marker' in ''">...</failure></testcase>
<testcase classname="test_web" name="test_port" time="0.1"><error message="boom"/></testcase>
</testsuite></testsuites>
"""


def test_read_junit_names_failed_and_errored_tests(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    report = read_junit(path)
    assert report.total == 3
    assert report.passed == 1
    assert report.failed == ("test_web::test_site[ssh://admin@127.0.0.1:2222]", "test_web::test_port")


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
