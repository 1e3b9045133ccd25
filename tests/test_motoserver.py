"""stamp's moto server (tools/stamp/local/motoserver.py) keeps moto's answers where it makes them cheaper: an EC2
resource's tags are read from its own entry, and the service a request is for from a list taken once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import stamp_moto
from stamp.local.credentials import BUILTIN_KEYS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with stamp_moto(tmp_path_factory.mktemp("motoserver")) as url:
        yield url


def _client(url: str, service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=BUILTIN_KEYS[0],
        aws_secret_access_key=BUILTIN_KEYS[1],
    )


def _tags(described: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in described.get("Tags", [])}


def test_tags_and_tag_filters_answer_as_moto_s_own_tag_store(server: str, tmp_path: Path) -> None:
    ec2 = _client(server, "ec2")
    made: dict[str, dict[str, str]] = {}
    for i in range(6):
        tags = {"stamp:image": "web" if i % 2 else "base", "stamp:build-id": f"web-{i}", "Name": f"n{i}"}
        spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        instance = ec2.run_instances(
            ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1, TagSpecifications=spec
        )["Instances"][0]["InstanceId"]
        ami = ec2.create_image(InstanceId=instance, Name=f"image-{i}")["ImageId"]
        if i != 5:  # one image without tags
            ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        made[instance], made[ami] = dict(tags), dict(tags) if i != 5 else {}
    ec2.delete_tags(Resources=list(made)[:1], Tags=[{"Key": "Name"}])
    del made[next(iter(made))]["Name"]

    images = ec2.describe_images(Owners=["self"])["Images"]
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    described = {i["ImageId"]: _tags(i) for i in images} | {i["InstanceId"]: _tags(i) for i in instances}
    # DescribeTags reads moto's tag store directly, untouched by the patch: the same tags, in the same order.
    stored: dict[str, dict[str, str]] = {}
    for tag in ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": list(made)}])["Tags"]:
        stored.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag["Value"]
    assert described == made
    assert {k: v for k, v in described.items() if v} == stored
    assert all(list(described[k]) == list(stored[k]) for k in stored)

    web = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:stamp:image", "Values": ["web"]}])["Images"]
    assert {i["ImageId"] for i in web} == {
        k for k, v in made.items() if k.startswith("ami-") and v.get("stamp:image") == "web"
    }
    keyed = ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": ["Name"]}])["Reservations"]
    assert {i["InstanceId"] for r in keyed for i in r["Instances"]} == {
        k for k, v in made.items() if k.startswith("i-") and "Name" in v
    }


def test_each_service_still_reaches_its_own_backend(server: str) -> None:
    """The service a request is for comes from a list taken at start: requests to several still land right."""
    assert _client(server, "sts").get_caller_identity()["Account"] == "123456789012"
    s3 = _client(server, "s3")
    s3.create_bucket(Bucket="routing")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["routing"]
    assert _client(server, "ssm").describe_parameters()["Parameters"] == []
    assert "eu-west-1" in {r["RegionName"] for r in _client(server, "ec2").describe_regions()["Regions"]}
