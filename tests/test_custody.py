"""Chain of custody through the CLI on a moto server: what record, publish, revoke and restore refuse to trust."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from builders import build_result
from conftest import NOW, MakeAmi
from fakes import FakeCloud
from scoreboard import Scoreboard
from stamp import clock
from stamp.catalog.load import load_catalog
from stamp.catalog.results import BuildResult, write_result
from stamp.cli import main
from stamp.clock import iso
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import ShareDiff, ShareSet
from stamp.cloud.publish_policy import parameter_name
from stamp.commands.record import confirm_custody
from stamp.errors import PolicyError
from stamp.tags import BUILD_ID_TAG, IMAGE_TAG, REVOKED_TAG, VERIFIED, VERIFIED_TAG
from test_lifecycle import REGIONS, WEB_SHARE, _amis, _published, _statuses

pytestmark = pytest.mark.integration
RECORD_ROW = "dead or foreign AMIs"
COPY_ACCOUNT = "555566667777"


def _result(amis: dict[str, str], *, build_id: str = "web-20261127110000-abcdef", dirty: bool = False) -> BuildResult:
    inputs = ["images/web/provision.sh"] if dirty else []
    return build_result(
        build_id=build_id, amis=amis, dirty=dirty, dirty_inputs=inputs, started_at="2026-11-27T11:00:00Z"
    )


def _built(aws: AwsCloud, make_ami: MakeAmi, build_id: str, *, verified: bool = True) -> dict[str, str]:
    """AMIs tagged as a build and a passing verification leave them."""
    amis = _amis(make_ami, "web", 9)
    for region, ami_id in amis.items():
        tags = {BUILD_ID_TAG: build_id, IMAGE_TAG: "web"} | ({VERIFIED_TAG: VERIFIED} if verified else {})
        aws.create_tags(region, [ami_id], tags)
    return amis


def _record(path: Path, result: BuildResult) -> int:
    write_result(path.parent / "build", result)
    return main(["record", "web", "--catalog", str(path), "--cloud", "aws", "--out", str(path.parent / "build")])


def _refused(path: Path, result: BuildResult, scoreboard: Scoreboard) -> bool:
    """Whether record refused the result (exit 6) and left the catalog's bytes alone; scored either way."""
    before = path.read_bytes()
    refused = _record(path, result) == 6 and path.read_bytes() == before
    scoreboard.add(RECORD_ROW, tried=1, bad=int(not refused))
    return refused


# -- record ------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_aws")
def test_record_refuses_deregistered_amis_and_leaves_the_catalog_alone(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str], scoreboard: Scoreboard
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    build_id = "web-20261127110000-abcdef"
    amis = _built(aws, make_ami, build_id)
    aws.deregister_image("eu-west-1", amis["eu-west-1"])
    assert _refused(path, _result(amis, build_id=build_id), scoreboard)
    err = capsys.readouterr().err
    assert f"{amis['eu-west-1']} in eu-west-1: does not exist" in err
    assert "us-east-1" not in err.split("refusing", 1)[1].split("hint")[0]
    assert main(["lookup", "web", "--region", "eu-west-1", "--catalog", str(path)]) == 0
    assert amis["eu-west-1"] not in capsys.readouterr().out


@pytest.mark.usefixtures("cli_aws")
def test_record_refuses_amis_without_the_verified_tag_or_of_another_build(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str], scoreboard: Scoreboard
) -> None:
    """result.json says `verified: passed`, but only stamp verify's tag counts; and the tags must be this build's."""
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    unverified = _built(aws, make_ami, "web-20261127110000-abcdef", verified=False)
    assert _refused(path, _result(unverified), scoreboard)
    err = capsys.readouterr().err
    for region in REGIONS:
        assert f"{unverified[region]} in {region}: has no {VERIFIED_TAG}={VERIFIED} tag" in err

    other = _built(aws, make_ami, "web-20261127100000-000000")
    assert _refused(path, _result(other), scoreboard)
    err = capsys.readouterr().err
    assert f"carries {BUILD_ID_TAG}=web-20261127100000-000000, not web-20261127110000-abcdef" in err
    assert _statuses(path, "web") == [(1, "current")]


@pytest.mark.usefixtures("cli_aws")
def test_record_refuses_an_ami_owned_by_another_account(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str], scoreboard: Scoreboard
) -> None:
    from moto.ec2.models.amis import AMIS

    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    vendor = {region: str(AMIS[0]["ami_id"]) for region in REGIONS}  # moto's vendor image (conftest.MOTO_AMIS)
    assert _refused(path, _result(vendor), scoreboard)
    assert f"{vendor['us-east-1']} in us-east-1: is owned by account" in capsys.readouterr().err
    assert _statuses(path, "web") == [(1, "current")]


@pytest.mark.usefixtures("cli_aws")
def test_record_takes_a_verified_build_of_this_account(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    build_id = "web-20261127110000-abcdef"
    amis = _built(aws, make_ami, build_id)
    assert _record(path, _result(amis, build_id=build_id)) == 0
    assert _statuses(path, "web") == [(2, "current"), (1, "previous")]
    # Recording it again changes nothing, and needs nothing from the cloud.
    assert _record(path, _result(amis, build_id=build_id)) == 0
    assert "recorded web version 2" in capsys.readouterr().err


@pytest.mark.usefixtures("cli_aws")
def test_record_refuses_a_dirty_build_on_aws(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    build_id = "web-20261127110000-abcdef"
    amis = _built(aws, make_ami, build_id)
    assert _record(path, _result(amis, build_id=build_id, dirty=True)) == 6
    err = capsys.readouterr().err
    assert "built from uncommitted changes (images/web/provision.sh)" in err
    assert _statuses(path, "web") == [(1, "current")]


def test_a_dirty_result_passes_custody_on_the_local_cloud() -> None:
    """The local cloud records dirty builds (flagged `dirty: true`, see tests/e2e/test_custody_local.py)."""
    cloud = FakeCloud()
    amis = {region: cloud.add_image(region, "web-9").ami_id for region in REGIONS}
    for region, ami_id in amis.items():
        cloud.create_tags(region, [ami_id], {BUILD_ID_TAG: "web-20261127110000-abcdef", VERIFIED_TAG: VERIFIED})
    confirm_custody(cloud, [_result(amis, dirty=True)], accept_dirty=True)
    with pytest.raises(PolicyError, match="uncommitted"):
        confirm_custody(cloud, [_result(amis, dirty=True)], accept_dirty=False)


# -- revocations that stick ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_aws")
def test_publish_refuses_a_revoked_ami_after_the_catalog_is_reverted(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str], scoreboard: Scoreboard
) -> None:
    path, amis = _published(tmp_path, aws, make_ami, {1: "previous", 2: "current"})
    reverted = path.read_bytes()
    assert main(["revoke", "web", "2", "--reason", "CVE-2026-1234", "--yes", "--catalog", str(path)]) == 0
    for region in REGIONS:
        details = aws.describe_image(region, amis[2][region])
        assert details is not None and details.tags[REVOKED_TAG] == "CVE-2026-1234"
        assert aws.get_launch_permissions(region, amis[2][region]) == ShareSet()

    path.write_bytes(reverted)  # `git checkout catalog.yaml`
    capsys.readouterr()
    code = main(["publish", "--catalog", str(path)])
    leaked = [r for r in REGIONS if aws.get_launch_permissions(r, amis[2][r]) != ShareSet()]
    scoreboard.add("reverted revocations", tried=1, bad=int(code != 6 or bool(leaked)))
    assert code == 6
    err = capsys.readouterr().err
    assert f"AMI {amis[2]['us-east-1']} is tagged {REVOKED_TAG}='CVE-2026-1234'" in err
    assert "stamp restore" in err
    for region in REGIONS:
        assert aws.get_launch_permissions(region, amis[2][region]) == ShareSet()
        parameter = aws.get_parameters(region, [parameter_name("web")])[parameter_name("web")]
        assert parameter.value == amis[1][region]


@pytest.mark.usefixtures("cli_aws")
def test_restore_untags_and_makes_the_release_current_again(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(tmp_path, aws, make_ami, {1: "previous", 2: "current"})
    assert main(["revoke", "web", "2", "--reason", "suspected", "--yes", "--catalog", str(path)]) == 0
    assert _statuses(path, "web") == [(2, "revoked"), (1, "current")]
    assert main(["restore", "web", "1", "--reason", "x", "--catalog", str(path)]) == 1  # v1 is not revoked
    assert main(["restore", "web", "2", "--reason", "false positive", "--catalog", str(path)]) == 0
    assert "restored web v2: status current" in capsys.readouterr().err
    assert _statuses(path, "web") == [(2, "current"), (1, "previous")]
    assert load_catalog(path, check_files=False).releases["web"][0].reason == "restored: false positive"
    for region in REGIONS:
        details = aws.describe_image(region, amis[2][region])
        assert details is not None and REVOKED_TAG not in details.tags
        assert aws.get_launch_permissions(region, amis[2][region]) == WEB_SHARE
    assert main(["publish", "--catalog", str(path)]) == 0


@pytest.mark.usefixtures("cli_aws")
def test_restore_of_an_older_release_makes_it_previous(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, {1: "previous", 2: "current"})
    assert main(["revoke", "web", "1", "--reason", "bad", "--yes", "--catalog", str(path)]) == 0
    assert main(["restore", "web", "1", "--reason", "fine", "--catalog", str(path)]) == 0
    assert _statuses(path, "web") == [(2, "current"), (1, "previous")]


@pytest.mark.usefixtures("cli_aws")
def test_scheduled_revocation_is_applied_by_the_first_publish_after_its_time(
    tmp_path: Path,
    aws: AwsCloud,
    make_ami: MakeAmi,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, amis = _published(tmp_path, aws, make_ami, {1: "previous", 2: "current"})
    at = iso(NOW + timedelta(hours=2))
    argv = ["revoke", "web", "2", "--reason", "EOL", "--yes", "--at", at, "--catalog", str(path)]
    assert main([*argv[:-2], "--at", iso(NOW - timedelta(hours=1)), "--catalog", str(path)]) == 2  # the past
    assert main(argv) == 0
    assert _statuses(path, "web") == [(2, "current"), (1, "previous")]
    assert load_catalog(path, check_files=False).releases["web"][0].revoke_at == at

    assert main(["publish", "--catalog", str(path)]) == 0  # before the time: nothing happens
    assert aws.get_launch_permissions("us-east-1", amis[2]["us-east-1"]) == WEB_SHARE

    monkeypatch.setattr(clock, "utc_now", lambda: NOW + timedelta(hours=2))
    capsys.readouterr()
    assert main(["publish", "--dry-run", "--catalog", str(path)]) == 0
    assert "would revoke web v2 (scheduled): EOL" in capsys.readouterr().err
    assert _statuses(path, "web")[0] == (2, "current")
    assert main(["publish", "--catalog", str(path)]) == 0
    assert _statuses(path, "web") == [(2, "revoked"), (1, "current")]
    for region in REGIONS:
        assert aws.get_launch_permissions(region, amis[2][region]) == ShareSet()
        details = aws.describe_image(region, amis[2][region])
        assert details is not None and details.tags[REVOKED_TAG] == "EOL"
    assert main(["publish", "--catalog", str(path)]) == 0  # applied once


# -- removed images and snapshots ------------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_aws")
def test_removing_an_image_from_the_catalog_unshares_it_and_deletes_its_parameter(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(tmp_path, aws, make_ami, {1: "previous", 2: "current"})
    for version in (1, 2):
        for region, ami_id in amis[version].items():
            aws.create_tags(region, [ami_id], {IMAGE_TAG: "web"})
            snapshot_id = aws.describe_image(region, ami_id).snapshot_ids[0]  # type: ignore[union-attr]
            copy = ShareDiff(add=ShareSet(accounts=frozenset({COPY_ACCOUNT})))
            aws.modify_snapshot_permissions(region, snapshot_id, copy)
    text = path.read_text()
    # The image block goes; its releases stay for the record (or go too: the AMIs are found by their tag).
    web_block = '  web:\n    parent: base\n    share: {accounts: ["111122223333"]}\n'
    path.write_text(text.replace(web_block, "").replace("  api:\n    parent: web\n", ""))
    assert "web" not in load_catalog(path, check_files=False).images

    capsys.readouterr()
    assert main(["publish", "--dry-run", "--catalog", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"web us-east-1 {amis[2]['us-east-1']} (image removed from the catalog: unsharing)" in err
    assert "- parameter /stamp/web/current in eu-west-1 (image removed from the catalog)" in err
    assert aws.get_launch_permissions("us-east-1", amis[2]["us-east-1"]) == WEB_SHARE

    assert main(["publish", "--catalog", str(path)]) == 0
    for version in (1, 2):
        for region, ami_id in amis[version].items():
            assert aws.get_launch_permissions(region, ami_id) == ShareSet()
            snapshot_id = aws.describe_image(region, ami_id).snapshot_ids[0]  # type: ignore[union-attr]
            assert aws.get_snapshot_permissions(region, snapshot_id) == ShareSet()
            assert aws.describe_image(region, ami_id) is not None  # deregistering stays with prune and gc
    for region in REGIONS:
        assert aws.get_parameters(region, [parameter_name("web")]) == {}
    capsys.readouterr()
    assert main(["publish", "--catalog", str(path), "--format", "json"]) == 0
    assert '"deleted_parameters": []' in capsys.readouterr().out


@pytest.mark.usefixtures("cli_aws")
def test_revoke_reverts_a_snapshot_shared_outside_stamp(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(tmp_path, aws, make_ami, {1: "previous", 2: "current"})
    leaks = {}
    for region, ami_id in amis[2].items():
        snapshot_id = aws.describe_image(region, ami_id).snapshot_ids[0]  # type: ignore[union-attr]
        aws.modify_snapshot_permissions(region, snapshot_id, ShareDiff(add=ShareSet(public=True)))
        leaks[region] = snapshot_id
    assert main(["revoke", "web", "2", "--reason", "leak", "--yes", "--catalog", str(path)]) == 0
    for region, snapshot_id in leaks.items():
        assert aws.get_snapshot_permissions(region, snapshot_id) == ShareSet()
