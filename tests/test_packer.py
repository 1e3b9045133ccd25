"""The packer CLI wrapper: version, arguments, environment, fmt/validate/console/build on the real binary, manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stamp.drivers import packer
from stamp.drivers.hcl import PLUGINS_FILE
from stamp.errors import BuildError

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"

needs_packer = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed")


# --- pure parts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("Packer v1.6.6\n", (1, 6, 6)),
        ("1.6.6\n", (1, 6, 6)),
        ("Packer v1.11.2\n\nYour version of Packer is out of date! The latest version\nis 1.12.0.\n", (1, 11, 2)),
    ],
)
def test_parse_version(text: str, version: tuple[int, int, int]) -> None:
    assert packer.parse_version(text) == version


def test_parse_version_refuses_garbage() -> None:
    with pytest.raises(BuildError, match="cannot read Packer's version"):
        packer.parse_version("command not found")


def test_aws_max_attempts_never_reaches_packer() -> None:
    env = packer.packer_env({"AWS_MAX_ATTEMPTS": "10", "AWS_REGION": "eu-west-1"})
    assert env["AWS_MAX_ATTEMPTS"] == "" and env["AWS_POLL_DELAY_SECONDS"] == ""
    assert env["AWS_REGION"] == "eu-west-1" and env["CHECKPOINT_DISABLE"] == "1"


def test_build_arguments(tmp_path: Path) -> None:
    args = packer.build_args(
        var_files=[Path("extra.pkrvars.json")], variables={"ssh_port": "2222", "build_id": "web-1-abc"}
    )
    assert args == [
        "build",
        "-color=false",
        "-timestamp-ui",
        f"-var-file={Path('extra.pkrvars.json').resolve()}",
        "-var=build_id=web-1-abc",
        "-var=ssh_port=2222",
        ".",
    ]


def test_only_build_time_variables_can_be_set() -> None:
    with pytest.raises(ValueError, match="not a build-time template variable: description"):
        packer.build_args(variables={"description": "set through -var it would escape review"})


def test_split_problems_one_line_each() -> None:
    output = (
        'Error: Failed preparing provisioner-block "shell" ""\n\n  on image.pkr.hcl line 171:\n'
        "  (source code not available)\n\n1 error(s) occurred:\n\n* Bad script '/x/10-nginx.sh': stat\n"
        "/x/10-nginx.sh: no such file or directory\n\nError: Unsupported argument\n\n  on image.pkr.hcl line 3:\n"
    )
    assert packer.split_problems(output) == [
        'Failed preparing provisioner-block "shell" "" on image.pkr.hcl line 171: '
        "* Bad script '/x/10-nginx.sh': stat /x/10-nginx.sh: no such file or directory",
        "Unsupported argument on image.pkr.hcl line 3:",
    ]


def test_init_only_where_plugins_are_required(tmp_path: Path) -> None:
    assert packer.init(tmp_path) is False, "a Packer 1.6.6 render has no plugins file and needs no init"


def _entry(run: str, artifact: str, build_id: str) -> dict[str, Any]:
    return {
        "name": "image",
        "builder_type": "amazon-ebs",
        "build_time": 1795708861,
        "files": None,
        "artifact_id": artifact,
        "packer_run_uuid": run,
        "custom_data": {"build_id": build_id, "image": "web"},
    }


def _manifest(tmp_path: Path, builds: list[dict[str, Any]], last: str) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"builds": builds, "last_run_uuid": last}, indent=2))
    return path


def test_manifest_picks_the_last_run_among_several(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        [
            _entry("run-1", "us-east-1:ami-0000000000000001a,eu-west-1:ami-0000000000000001b", "web-1"),
            _entry("run-3", "eu-west-1:ami-0000000000000003b,us-east-1:ami-0000000000000003a", "web-3"),
            _entry("run-2", "us-east-1:ami-0000000000000002a,eu-west-1:ami-0000000000000002b", "web-2"),
        ],
        last="run-3",
    )
    assert packer.read_manifest(path) == {"eu-west-1": "ami-0000000000000003b", "us-east-1": "ami-0000000000000003a"}
    assert packer.read_manifest(path, build_id="web-3") == packer.read_manifest(path)


def test_manifest_left_over_from_an_earlier_build_is_refused(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [_entry("run-1", "us-east-1:ami-0000000000000001a", "web-1")], last="run-1")
    with pytest.raises(BuildError, match="the last run is build 'web-1', not 'web-2'"):
        packer.read_manifest(path, build_id="web-2")


def test_manifest_without_an_entry_for_the_last_run(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [_entry("run-1", "us-east-1:ami-0000000000000001a", "web-1")], last="run-2")
    with pytest.raises(BuildError, match=r"no build entry for the last run \('run-2'\)"):
        packer.read_manifest(path)


def test_manifest_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no Packer manifest"):
        packer.read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BuildError, match="not a readable Packer manifest"):
        packer.read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(BuildError, match="no `builds` list"):
        packer.read_manifest(tmp_path / "manifest.json")


def test_manifest_same_run_in_two_entries_merges_and_refuses_conflicts(tmp_path: Path) -> None:
    builds = [_entry("run-1", "us-east-1:ami-0000000000000001a", "b"), _entry("run-1", "eu-west-1:ami-000000002", "b")]
    path = _manifest(tmp_path, builds, last="run-1")
    assert packer.read_manifest(path) == {"eu-west-1": "ami-000000002", "us-east-1": "ami-0000000000000001a"}
    builds.append(_entry("run-1", "us-east-1:ami-0000000000000009a", "b"))
    path = _manifest(tmp_path, builds, last="run-1")
    with pytest.raises(BuildError, match="two AMIs for us-east-1"):
        packer.read_manifest(path)


@pytest.mark.parametrize("artifact", ["", "ami-1", "us-east-1:", "us-east-1:snap-1", "Null"])
def test_artifact_id_that_is_not_region_ami(artifact: str) -> None:
    with pytest.raises(BuildError, match="unexpected artifact ID"):
        packer.parse_artifact_id(artifact)


# --- the real binary ----------------------------------------------------------------------------------------


@needs_packer
@pytest.mark.integration
def test_detect_version_of_the_installed_packer() -> None:
    version = packer.detect_version()
    assert version >= (1, 6, 6)


@pytest.mark.integration
def test_detect_version_without_packer_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError) as caught:
        packer.detect_version()
    assert "packer is not installed" in caught.value.message
    assert "apt-get install packer" in caught.value.hint


@needs_packer
@pytest.mark.integration
def test_fmt_check_lists_files_needing_format(tmp_path: Path) -> None:
    (tmp_path / "ok.pkr.hcl").write_text('variable "a" {\n  type = string\n}\n')
    (tmp_path / "messy.pkr.hcl").write_text('variable "a" {\ntype=string\n}\n')
    assert packer.fmt_check(tmp_path) == ["messy.pkr.hcl"]


@needs_packer
@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(path.name for path in GOLDEN.iterdir()))
def test_golden_renders_are_in_canonical_format(case: str, tmp_path: Path) -> None:
    # plugins.pkr.hcl is only formatted here: Packer 1.6.6 can format the block it cannot run.
    shutil.copytree(GOLDEN / case, tmp_path / case)
    assert packer.fmt_check(tmp_path / case) == []
    if (tmp_path / case / PLUGINS_FILE).exists():
        assert "required_plugins" in (tmp_path / case / PLUGINS_FILE).read_text()


@needs_packer
@pytest.mark.integration
def test_validate_reports_problems_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "bad.pkr.hcl").write_text(
        'source "null" "x" {\n  communicator = "none"\n  no_such_option = 1\n}\n\n'
        'build {\n  sources = ["source.null.x"]\n}\n'
    )
    problems = packer.validate(tmp_path)
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert "no_such_option" in problems[0] and "bad.pkr.hcl" in problems[0]


NULL_TEMPLATE = """\
variable "greeting" {
  type = string
}

variable "build_id" {
  type    = string
  default = "unset"
}

source "null" "x" {
  communicator = "none"
}

build {
  name    = "probe"
  sources = ["source.null.x"]

  provisioner "shell-local" {
    inline = ["echo \\"greeting=${var.greeting} build=${var.build_id} max=[$AWS_MAX_ATTEMPTS] cwd=$(pwd)\\""]
  }
}
"""


@needs_packer
@pytest.mark.integration
def test_build_runs_inside_the_folder_with_its_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "probe.pkr.hcl").write_text(NULL_TEMPLATE)
    (folder / "probe.auto.pkrvars.json").write_text(json.dumps({"greeting": "from the auto file"}))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "9")
    log = tmp_path / "logs" / "packer.log"
    packer.build(folder, vars={"build_id": "probe-1"}, log=log, image="probe")
    text = log.read_text()
    assert "greeting=from the auto file build=probe-1" in text, "auto var files load and -var reaches Packer"
    assert "max=[]" in text, "AWS_MAX_ATTEMPTS is not passed on to Packer"
    assert f"cwd={folder.resolve()}" in text
    assert "[probe] " in capsys.readouterr().err


@needs_packer
@pytest.mark.integration
def test_build_failure_points_at_the_log(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "probe.pkr.hcl").write_text(NULL_TEMPLATE.replace("echo", "exit 7; echo"))
    (folder / "probe.auto.pkrvars.json").write_text(json.dumps({"greeting": "hi"}))
    log = tmp_path / "packer.log"
    with pytest.raises(BuildError) as caught:
        packer.build(folder, log=log)
    assert "packer build of image 'broken' failed" in caught.value.message
    assert str(log) in caught.value.hint and log.exists()
