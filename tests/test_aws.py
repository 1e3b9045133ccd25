"""AwsCloud against a real moto server over HTTP: results, call counts, waits, retries and error translation."""

from __future__ import annotations

import ast
import io
from datetime import datetime
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from moto.ec2.models import ec2_backends

from conftest import REPO, MakeAmi, MotoEndpoint
from fakes import FakeCloud
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import Cloud, ImageDetails, ShareDiff, ShareSet
from stamp.errors import CloudError, MissingResource

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ORG = "arn:aws:organizations::111122223333:organization/o-exampleorg1"
OU = "arn:aws:organizations::111122223333:ou/o-exampleorg1/ou-ab12-cd34ef56"


def _moto_ami(region: str, ami_id: str) -> Any:
    # The threaded server runs in this process, so a test can set states moto has no API for.
    return ec2_backends[ACCOUNT][region].amis[ami_id]


def test_both_implementations_satisfy_the_protocol(aws: AwsCloud) -> None:
    clouds: list[Cloud] = [aws, FakeCloud()]
    assert len(clouds) == 2


def test_boto3_is_imported_only_by_aws_py() -> None:
    importers = []
    for path in sorted((REPO / "tools" / "stamp").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "boto3" or n.startswith(("boto3.", "botocore")) for n in names):
                importers.append(path.relative_to(REPO).as_posix())
    assert sorted(set(importers)) == ["tools/stamp/cloud/aws.py"]


def test_clients_are_built_lazily_once_per_service_and_region(moto: MotoEndpoint) -> None:
    cloud = AwsCloud(moto.url)
    assert cloud._clients == {}
    assert cloud.ec2(REGION) is cloud.ec2(REGION)
    assert cloud.ec2("eu-west-1") is not cloud.ec2(REGION)
    assert cloud._client("ssm", REGION) is not cloud._client("ec2", REGION)
    config: Any = cloud.ec2(REGION).meta.config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 10}
    assert cloud.ec2(REGION).meta.endpoint_url == moto.url


def test_clouds_share_each_client_class_and_their_calls_stay_their_own(moto: MotoEndpoint, make_ami: MakeAmi) -> None:
    ami = make_ami(name="shared-class-test")
    first, second = AwsCloud(moto.url), AwsCloud(moto.url, credentials=("AKIDEXAMPLE", "secret"))
    east, west = first.ec2(REGION), second.ec2("eu-west-1")
    # One class, built once (botocore builds one per client otherwise), for other keys and regions too.
    assert type(east) is type(west) is type(AwsCloud(moto.url).ec2(REGION))
    assert type(first.s3(REGION)) is type(second.s3(REGION))
    assert hasattr(first.s3(REGION), "upload_fileobj")  # boto3's methods, added to the class as it is built
    # The clients themselves, and so their keys, endpoints and call counts, stay each cloud's own.
    assert east.meta.region_name == REGION and west.meta.region_name == "eu-west-1"
    assert second.ec2(REGION).meta.config is not east.meta.config
    assert first.describe_image(REGION, ami) is not None
    assert first.call_counts() == {"DescribeImages": 1} and second.call_counts() == {}
    # A session of the caller's own may register other handlers: its classes are its own.
    own = AwsCloud(moto.url, session=boto3.session.Session(region_name=REGION))
    assert type(own.ec2(REGION)) is not type(east)


def test_find_newest_image_picks_the_latest_creation_date(aws: AwsCloud, make_ami: MakeAmi) -> None:
    older = make_ami(name="debian-12-amd64-20261001")
    newer = make_ami(name="debian-12-amd64-20261101")
    make_ami(name="ubuntu-24-amd64-20261201")
    _moto_ami(REGION, older).creation_date = datetime(2026, 10, 1)
    _moto_ami(REGION, newer).creation_date = datetime(2026, 11, 1)
    found = aws.find_newest_image(REGION, name="debian-12-amd64-*", owners=["self"])
    assert found is not None
    assert (found.ami_id, found.name) == (newer, "debian-12-amd64-20261101")
    assert aws.find_newest_image(REGION, name="no-such-*", owners=["self"]) is None


def test_describe_images_leaves_out_missing_ids(aws: AwsCloud, make_ami: MakeAmi) -> None:
    ami_id = make_ami(tags={"stamp:build-id": "web-1-abc"})
    found = aws.describe_images(REGION, [ami_id, "ami-0123456789abcdef0"])
    assert list(found) == [ami_id]
    details = found[ami_id]
    assert (details.state, details.owner_id, details.name) == ("available", ACCOUNT, "web-1")
    assert details.tags == {"stamp:build-id": "web-1-abc"}
    assert details.snapshot_ids and details.snapshot_ids[0].startswith("snap-")
    assert aws.describe_image(REGION, "ami-0123456789abcdef0") is None
    assert aws.call_counts() == {"DescribeImages": 2}


def test_wait_returns_at_once_for_an_available_image(aws: AwsCloud, make_ami: MakeAmi) -> None:
    ami_id = make_ami()
    assert aws.wait_until_available(REGION, ami_id, timeout=1).ami_id == ami_id


def test_wait_waits_through_pending(moto: MotoEndpoint, make_ami: MakeAmi) -> None:
    ami_id = make_ami()
    _moto_ami(REGION, ami_id).state = "pending"
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            _moto_ami(REGION, ami_id).state = "available"

    cloud = AwsCloud(moto.url, sleep=sleep, clock=lambda: 0.0)
    assert cloud.wait_until_available(REGION, ami_id, delay=3).state == "available"
    assert sleeps == [3, 3]


def test_wait_fails_fast_on_a_failed_image(aws: AwsCloud, make_ami: MakeAmi) -> None:
    ami_id = make_ami()
    _moto_ami(REGION, ami_id).state = "failed"
    with pytest.raises(CloudError, match=f"AMI {ami_id} in {REGION} is failed") as caught:
        aws.wait_until_available(REGION, ami_id, timeout=600)
    assert caught.value.exit_code == 5
    assert aws.call_counts() == {"DescribeImages": 1}


def test_wait_reports_the_state_reason(aws: AwsCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = ImageDetails(
        "ami-0123456789abcdef0", "web", "failed", "Client.InternalError: snapshot", ACCOUNT, "", False
    )
    monkeypatch.setattr(aws, "describe_image", lambda region, ami_id: failed)
    with pytest.raises(CloudError, match=r"is failed: Client\.InternalError: snapshot"):
        aws.wait_until_available(REGION, failed.ami_id)


def test_wait_for_a_missing_image_is_bounded(moto: MotoEndpoint) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    cloud = AwsCloud(moto.url, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(CloudError, match="still not found after 30 s"):
        cloud.wait_until_available(REGION, "ami-0123456789abcdef0", timeout=30, delay=10)
    # Looked at t = 0, 10, 20 and 30 s, then gave up rather than sleep past the deadline.
    assert cloud.call_counts() == {"DescribeImages": 4}
    assert now[0] == 30


def test_launch_permissions_add_and_remove_every_kind_in_one_call(aws: AwsCloud, make_ami: MakeAmi) -> None:
    ami_id = make_ami()
    everyone = ShareSet(
        accounts=frozenset({"111122223333", "444455556666"}),
        organizations=frozenset({ORG}),
        organizational_units=frozenset({OU}),
        public=True,
    )
    aws.modify_launch_permissions(REGION, ami_id, ShareDiff(add=everyone))
    assert aws.get_launch_permissions(REGION, ami_id) == everyone
    aws.modify_launch_permissions(
        REGION,
        ami_id,
        ShareDiff(
            add=ShareSet(accounts=frozenset({"777788889999"})),
            remove=ShareSet(accounts=frozenset({"111122223333"}), organizations=frozenset({ORG}), public=True),
        ),
    )
    assert aws.get_launch_permissions(REGION, ami_id) == ShareSet(
        accounts=frozenset({"444455556666", "777788889999"}), organizational_units=frozenset({OU})
    )
    aws.modify_launch_permissions(REGION, ami_id, ShareDiff())
    assert aws.call_counts() == {"ModifyImageAttribute": 2, "DescribeImageAttribute": 2}


def test_snapshot_permissions(aws: AwsCloud, make_ami: MakeAmi) -> None:
    details = aws.describe_image(REGION, make_ami())
    assert details is not None
    snapshot_id = details.snapshot_ids[0]
    assert aws.get_snapshot_permissions(REGION, snapshot_id) == ShareSet()
    aws.modify_snapshot_permissions(
        REGION, snapshot_id, ShareDiff(add=ShareSet(accounts=frozenset({"111122223333", "444455556666"})))
    )
    aws.modify_snapshot_permissions(
        REGION,
        snapshot_id,
        ShareDiff(
            add=ShareSet(accounts=frozenset({"777788889999"})), remove=ShareSet(accounts=frozenset({"111122223333"}))
        ),
    )
    assert aws.get_snapshot_permissions(REGION, snapshot_id) == ShareSet(
        accounts=frozenset({"444455556666", "777788889999"})
    )
    with pytest.raises(ValueError, match="accounts only"):
        aws.modify_snapshot_permissions(REGION, snapshot_id, ShareDiff(add=ShareSet(organizations=frozenset({ORG}))))


def test_image_parameter_is_written_only_on_change(aws: AwsCloud, make_ami: MakeAmi) -> None:
    first, second = make_ami(name="web-1"), make_ami(name="web-2")
    name = "/stamp/web/current"
    created = aws.put_image_parameter(REGION, name, first)
    assert (created.previous, created.version, created.changed) == (None, 1, True)
    same = aws.put_image_parameter(REGION, name, first)
    assert (same.version, same.changed) == (1, False)
    moved = aws.put_image_parameter(REGION, name, second)
    assert (moved.previous, moved.value, moved.version) == (first, second, 2)
    assert aws.get_parameters(REGION, [name, "/stamp/none/current"])[name].version == 2
    data_type = aws.ssm(REGION).get_parameter(Name=name)["Parameter"].get("DataType")
    assert data_type == "aws:ec2:image"
    assert aws.call_counts()["PutParameter"] == 2


def test_get_parameters_batches_by_ten(aws: AwsCloud) -> None:
    assert aws.get_parameters(REGION, [f"/stamp/i{n}/current" for n in range(25)]) == {}
    assert aws.call_counts() == {"GetParameters": 3}


def test_instances_key_pairs_and_the_janitors_view(aws: AwsCloud, make_ami: MakeAmi) -> None:
    tags = {"stamp:build-id": "web-7-abc"}
    ami_id = make_ami(tags=tags)
    details = aws.describe_image(REGION, ami_id)
    assert details is not None
    aws.create_tags(REGION, list(details.snapshot_ids), tags)
    public_key = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    pair = aws.import_key_pair(REGION, "stamp-web-7", public_key, tags=tags)
    assert pair.name == "stamp-web-7"
    group_id = aws.ec2(REGION).create_security_group(
        GroupName="stamp-web-7",
        Description="build",
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "stamp:build-id", "Value": "web-7-abc"}]}
        ],
    )["GroupId"]
    instances = aws.run_instances(
        REGION, ami_id, count=3, instance_type="t3.micro", key_name=pair.name, user_data="#!/bin/sh\n", tags=tags
    )
    assert len(instances) == 3
    assert {i.ami_id for i in instances} == {ami_id}
    ids = [i.instance_id for i in instances]
    assert {i.instance_id for i in aws.describe_instances(REGION, ids)} == set(ids)

    found = aws.list_tagged(REGION)
    kinds = {(r.kind, r.resource_id) for r in found}
    assert kinds == {
        *(("instance", i) for i in ids),
        ("image", ami_id),
        ("snapshot", details.snapshot_ids[0]),
        ("key-pair", "stamp-web-7"),
        ("security-group", group_id),
    }
    assert all(r.tags["stamp:build-id"] == "web-7-abc" and r.region == REGION for r in found)
    assert aws.list_tagged(REGION, value="other-build") == []

    aws.terminate_instances(REGION, ids)
    aws.deregister_image(REGION, ami_id)
    aws.delete_snapshot(REGION, details.snapshot_ids[0])
    aws.delete_key_pair(REGION, pair.name)
    aws.delete_security_group(REGION, group_id)
    assert aws.list_tagged(REGION) == []


def test_missing_resources_raise_missing_resource_naming_operation_region_and_id(aws: AwsCloud) -> None:
    with pytest.raises(MissingResource) as caught:
        aws.deregister_image(REGION, "ami-0123456789abcdef0")
    message = str(caught.value)
    assert "DeregisterImage in us-east-1 for ami-0123456789abcdef0" in message
    assert "InvalidAMIID.NotFound" in message
    assert "hint:" in message
    assert caught.value.exit_code == 5


def test_an_unreachable_endpoint_is_a_cloud_error_with_a_hint(moto: MotoEndpoint) -> None:
    cloud = AwsCloud("http://127.0.0.1:9", max_attempts=1)
    with pytest.raises(CloudError, match=r"cannot reach http://127.0.0.1:9[\s\S]*stamp local up"):
        cloud.describe_image(REGION, "ami-0123456789abcdef0")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, **_: Any) -> Any:
        yield self._body.read()


def _throttle(times: int) -> tuple[list[int], Any]:
    """A before-send hook answering RequestLimitExceeded `times` times.

    moto never throttles, so retries are tested this way (docs/facts.md, moto gaps).
    """
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    seen = [0]
    body = (
        b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
        b"</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
    )

    def hook(request: Any, **_: Any) -> Any:
        seen[0] += 1
        if seen[0] <= times:
            return AWSResponse(request.url, 503, HTTPHeaders(), _Raw(body))
        return None

    return seen, hook


def test_throttling_is_retried_and_counted_once(aws: AwsCloud, make_ami: MakeAmi) -> None:
    ami_id = make_ami()
    seen, hook = _throttle(1)
    aws.ec2(REGION).meta.events.register("before-send.ec2.DescribeImages", hook)
    assert aws.describe_image(REGION, ami_id) is not None
    assert seen[0] == 2
    assert aws.call_counts() == {"DescribeImages": 1}


def test_throttling_past_the_attempts_is_a_cloud_error(moto: MotoEndpoint) -> None:
    cloud = AwsCloud(moto.url, max_attempts=1, retry_mode="standard")
    _, hook = _throttle(100)
    cloud.ec2(REGION).meta.events.register("before-send.ec2.DescribeImages", hook)
    with pytest.raises(CloudError, match=r"RequestLimitExceeded[\s\S]*still throttled after 1 attempts"):
        cloud.describe_image(REGION, "ami-0123456789abcdef0")


def test_reset_call_counts(aws: AwsCloud) -> None:
    aws.describe_image(REGION, "ami-0123456789abcdef0")
    assert aws.call_counts() == {"DescribeImages": 1}
    aws.reset_call_counts()
    assert aws.call_counts() == {}


def test_the_module_builds_no_client_at_import() -> None:
    module = ast.parse((REPO / "tools" / "stamp" / "cloud" / "aws.py").read_text(encoding="utf-8"))
    top_level = [s for s in module.body if not isinstance(s, (ast.FunctionDef, ast.ClassDef))]
    made = [
        ast.unparse(node)
        for stmt in top_level
        for node in ast.walk(stmt)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("client", "resource", "Session")
    ]
    assert made == []
