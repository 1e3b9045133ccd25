"""The consumer accounts' side of sharing, on moto over HTTP with STS AssumeRole into two consumer accounts
(docs/rollout.md, Consumer accounts): publish writes the parameters there, `stamp usage` finds an instance, a
launch template and an Auto Scaling group there, prune refuses because of them, and an account whose role is
missing is reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.iam.models import iam_backends
from moto.sts.models import STSBackend

from conftest import MakeAmi, MotoEndpoint
from stamp.cli import main
from stamp.cloud.aws import AwsCloud
from stamp.tags import DEPRECATED_AT_TAG

OWN = "123456789012"
ALPHA, BETA, GAMMA = "111122223333", "444455556666", "777788889999"
ROLE = "arn:aws:iam::{account}:role/stamp-consumer"

CATALOG = """\
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
  consumers: {{role: "arn:aws:iam::{{account}}:role/stamp-consumer"}}
  retention: {{keep: 1, grace_days: 0}}
images:
  web:
    source:
      filter: {{name: "debian-12-amd64-*", owners: ["136693071363"]}}
    provision: [images/web/setup.sh]
    tests: images/web/tests
    share: {{accounts: [{accounts}]}}
releases:
  web:
{releases}"""

RELEASE = """\
    - version: {version}
      amis: {{us-east-1: {east}, eu-west-1: {west}}}
      built_at: "2026-11-2{version}T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: web-{version}-abc123
      source: {{amis: {{us-east-1: ami-0aaaaaaaaaaaaaaaa}}}}
      verified: passed
      status: {status}
"""


@pytest.fixture
def roles_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS answers AssumeRole of a role that does not exist with AccessDenied; moto hands out credentials for
    any role ARN (docs/facts.md, moto's gaps). This makes moto's STS refuse as AWS does."""
    from moto.sts.exceptions import STSClientError

    assume = STSBackend.assume_role

    def checked(self: STSBackend, **kwargs: Any) -> Any:
        role_arn = kwargs["role_arn"]
        account = role_arn.split(":")[4]
        if not any(role.arn == role_arn for role in iam_backends[account]["global"].roles.values()):
            raise STSClientError("AccessDenied", f"not authorized to perform: sts:AssumeRole on resource: {role_arn}")
        return assume(self, **kwargs)

    monkeypatch.setattr(STSBackend, "assume_role", checked)


def consumer_role(account: str) -> None:
    iam_backends[account]["global"].create_role(
        role_name="stamp-consumer",
        assume_role_policy_document=json.dumps({"Version": "2012-10-17", "Statement": []}),
        path="/",
        permissions_boundary=None,
        description="",
        tags=[],
        max_session_duration=None,
    )


@pytest.fixture
def world(
    tmp_path: Path, cli_aws: None, moto: MotoEndpoint, make_ami: MakeAmi, roles_must_exist: None
) -> Iterator[tuple[Path, dict[int, dict[str, str]]]]:
    """web v1 (deprecated) and v2 (current) in two regions, shared with ALPHA and BETA (which have the consumer
    role) and GAMMA (which has not)."""
    amis = {v: {r: make_ami(r, f"web-{v}-{r}") for r in ("us-east-1", "eu-west-1")} for v in (1, 2)}
    releases = "".join(
        RELEASE.format(version=v, east=a["us-east-1"], west=a["eu-west-1"], status=s)
        for v, a, s in ((2, amis[2], "current"), (1, amis[1], "deprecated"))
    )
    accounts = ", ".join(f'"{a}"' for a in (ALPHA, BETA, GAMMA))
    (tmp_path / "catalog.yaml").write_text(CATALOG.format(accounts=accounts, releases=releases))
    (tmp_path / "images" / "web" / "tests").mkdir(parents=True)
    (tmp_path / "images" / "web" / "setup.sh").write_text("#!/bin/sh\n")
    for account in (ALPHA, BETA):
        consumer_role(account)
    yield tmp_path, amis


def as_consumer(moto: MotoEndpoint, account: str, service: str, region: str = "us-east-1") -> Any:
    keys = boto3.client("sts", endpoint_url=moto.url, region_name="us-east-1").assume_role(
        RoleArn=ROLE.format(account=account), RoleSessionName="consumer-team"
    )["Credentials"]
    session = boto3.session.Session(
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
    )
    return session.client(service, endpoint_url=moto.url, region_name=region)  # type: ignore[call-overload]


def stamp(root: Path, *argv: str) -> int:
    return main([*argv, "--catalog", str(root / "catalog.yaml"), "--cloud", "aws"])


def test_publish_writes_the_parameters_in_each_consumer_account_and_reports_the_one_it_cannot_reach(
    world: tuple[Path, dict[int, dict[str, str]]], moto: MotoEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    root, amis = world
    assert stamp(root, "publish") == 5, "an account that cannot be reached fails the publish, after the others"
    err = capsys.readouterr().err
    assert f"consumer account {GAMMA}: cannot assume arn:aws:iam::{GAMMA}:role/stamp-consumer" in err
    for account in (ALPHA, BETA):
        for region in ("us-east-1", "eu-west-1"):
            ssm = as_consumer(moto, account, "ssm", region)
            value = ssm.get_parameter(Name="/stamp/web/current")["Parameter"]["Value"]
            assert value == amis[2][region]
    # A second publish changes nothing in the accounts it reaches.
    assert stamp(root, "publish") == 5
    assert "+ parameter" not in capsys.readouterr().err.replace(f"+ parameter {GAMMA}", "")


def test_usage_finds_an_instance_a_launch_template_and_an_auto_scaling_group_in_a_consumer_account(
    world: tuple[Path, dict[int, dict[str, str]]], moto: MotoEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    root, amis = world
    old = amis[1]["us-east-1"]
    ec2 = as_consumer(moto, ALPHA, "ec2")
    instance = ec2.run_instances(ImageId=old, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    template = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": old})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    as_consumer(moto, ALPHA, "autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="web-asg",
        LaunchTemplate={"LaunchTemplateName": "web", "Version": "$Latest"},
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=0,
        AvailabilityZones=["us-east-1a"],
    )
    capsys.readouterr()
    assert stamp(root, "usage", "web", "--format", "json") == 5, "GAMMA cannot be read: the answer is incomplete"
    found = json.loads(capsys.readouterr().out)
    used = {(u["account"], u["region"], u["kind"], u["resource_id"], u["version"]) for u in found["uses"]}
    assert used == {
        (ALPHA, "us-east-1", "instance", instance, 1),
        (ALPHA, "us-east-1", "launch-template", template_id, 1),
        (ALPHA, "us-east-1", "auto-scaling-group", "web-asg", 1),
    }
    assert found["stale"] == 3, "all three use the deprecated v1"
    assert [u["where"] for u in found["unread"]] == [GAMMA]

    assert stamp(root, "usage") == 5
    table = capsys.readouterr().err
    assert f"web    1        deprecated  {ALPHA}  us-east-1  instance {instance}" in table
    assert "3 user(s) of 1 release(s); 3 on a revoked or deprecated release" in table
    assert f"not read: {GAMMA}: cannot assume" in table


def test_prune_refuses_to_retire_a_release_a_consumer_account_still_uses(
    world: tuple[Path, dict[int, dict[str, str]]], moto: MotoEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    root, amis = world
    ec2 = as_consumer(moto, BETA, "ec2", "eu-west-1")
    ec2.create_launch_template(LaunchTemplateName="still-v1", LaunchTemplateData={"ImageId": amis[1]["eu-west-1"]})
    # v1 was deprecated by an earlier prune (its AMIs carry the mark) and its grace period (0 days) is over.
    aws = AwsCloud(moto.url)
    for region, ami_id in amis[1].items():
        aws.create_tags(region, [ami_id], {DEPRECATED_AT_TAG: "2026-11-20T00:00:00Z"})
    before = (root / "catalog.yaml").read_text()
    capsys.readouterr()
    assert stamp(root, "prune") == 6
    err = capsys.readouterr().err
    assert f"of account {BETA}" in err and "eu-west-1" in err and "still-v1" in err
    assert f"account {GAMMA} cannot be read in us-east-1: cannot assume" in err, "an unread account blocks too"
    assert (root / "catalog.yaml").read_text() == before
    # The AMI is still there and still launchable by the account that uses it.
    assert aws.describe_image("eu-west-1", amis[1]["eu-west-1"]) is not None


def test_without_a_consumer_role_usage_looks_in_this_account_only(
    world: tuple[Path, dict[int, dict[str, str]]], moto: MotoEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    root, amis = world
    text = (root / "catalog.yaml").read_text()
    (root / "catalog.yaml").write_text(
        text.replace('  consumers: {role: "arn:aws:iam::{account}:role/stamp-consumer"}\n', "")
    )
    ec2 = AwsCloud(moto.url).ec2("eu-west-1")
    instance = ec2.run_instances(ImageId=amis[2]["eu-west-1"], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    capsys.readouterr()
    assert stamp(root, "usage") == 0
    err = capsys.readouterr().err
    assert f"web    2        current  {OWN}  eu-west-1  instance {instance} (running)" in err
    assert "consumer accounts not looked at: the catalog has no defaults.consumers" in err
    assert ALPHA not in err
