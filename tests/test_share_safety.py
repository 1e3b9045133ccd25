"""Sharing safety in publish: aws/ebs AMIs refused, copies re-shared, the entity limit, copy-only snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from moto.ec2.models import ec2_backends

from builders import release_entry
from conftest import MakeAmi
from fakes import FakeCloud
from stamp.catalog.load import Catalog, load_catalog
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import KmsKey, ShareSet
from stamp.cloud.publish_policy import MAX_SHARE_ENTITIES, parameter_name
from stamp.cloud.sharing import publish
from stamp.errors import CatalogError, PolicyError

ACCOUNT = "123456789012"  # moto's default account
ORG = "arn:aws:organizations::111122223333:organization/o-exampleorg1"
OU = "arn:aws:organizations::111122223333:ou/o-exampleorg1/ou-ab12-cd34ef56"
REGIONS = ("us-east-1", "eu-west-1")
MODIFY_CALLS = {"ModifyImageAttribute", "ModifySnapshotAttribute", "PutParameter", "CreateTags", "DeleteTags"}


def _catalog(
    tmp_path: Path,
    releases: dict[str, list[dict[str, Any]]],
    *,
    share: dict[str, Any] | None = None,
    regions: tuple[str, ...] = REGIONS,
) -> Catalog:
    document = {
        "version": 1,
        "defaults": {"regions": list(regions)},
        "images": {
            "base": {
                "source": {"filter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}},
                "share": {"accounts": ["111122223333"]},
            },
            "web": {
                "parent": "base",
                "share": share if share is not None else {"accounts": ["111122223333"], "organizations": [ORG]},
            },
        },
        "releases": releases,
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return load_catalog(path, check_files=False)


def _modify_calls(cloud: AwsCloud | FakeCloud) -> dict[str, int]:
    return {op: n for op, n in cloud.call_counts().items() if op in MODIFY_CALLS}


def _encrypt_in_moto(region: str, ami_id: str, key_arn: str) -> str:
    """Marks the AMI's snapshot encrypted with `key_arn`: moto's CreateImage always makes unencrypted snapshots
    and has no API to change that, but the threaded server runs in this process. Returns the snapshot ID."""
    snapshot = ec2_backends[ACCOUNT][region].amis[ami_id].ebs_snapshot
    snapshot.encrypted = True
    snapshot.kms_key_id = key_arn
    return str(snapshot.id)


def _default_ebs_key(aws: AwsCloud, region: str) -> str:
    """The key EBS encrypts with when none is named: an encrypted volume without KmsKeyId makes moto create
    `alias/aws/ebs`, as AWS does on first use."""
    volume = aws.ec2(region).create_volume(AvailabilityZone=f"{region}a", Size=8, Encrypted=True)
    return str(volume["KmsKeyId"])


@pytest.fixture
def two_images(make_ami: MakeAmi) -> dict[str, dict[str, str]]:
    """`base` v1 and `web` v1, each with an AMI in both regions."""
    return {name: {region: make_ami(region, f"{name}-1") for region in REGIONS} for name in ("base", "web")}


def _both(tmp_path: Path, amis: dict[str, dict[str, str]], **kwargs: Any) -> Catalog:
    releases = {
        "base": [
            release_entry(1, amis["base"])
            | {"build_id": "base-1-abcdef", "source": {"amis": {"us-east-1": "ami-0aaaaaaaaaaaaaaaa"}}}
        ],
        "web": [release_entry(1, amis["web"])],
    }
    return _catalog(tmp_path, releases, **kwargs)


# -- the default aws/ebs key ------------------------------------------------------------------------------


def test_an_ami_on_the_default_ebs_key_is_refused_and_nothing_is_shared_anywhere(
    tmp_path: Path, aws: AwsCloud, two_images: dict[str, dict[str, str]]
) -> None:
    # Only web's copy in eu-west-1 is on aws/ebs (a copy uses the region's default key unless told otherwise).
    key_arn = _default_ebs_key(aws, "eu-west-1")
    snapshot_id = _encrypt_in_moto("eu-west-1", two_images["web"]["eu-west-1"], key_arn)
    aws.reset_call_counts()
    catalog = _both(tmp_path, two_images)

    for dry_run in (True, False):
        with pytest.raises(PolicyError) as caught:
            publish(catalog, aws, None, dry_run=dry_run)
        error = caught.value
        assert error.exit_code == 6
        assert "nothing was changed in any region" in error.message
        assert (
            f"web v1 in eu-west-1: AMI {two_images['web']['eu-west-1']}, snapshot {snapshot_id} is encrypted with the "
            f"default key alias/aws/ebs ({key_arn})" in error.message
        )
        # Why, and what to do.
        assert "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html" in error.hint
        for words in ("customer managed KMS key", "kms:Decrypt", "kms:CreateGrant", "aws:PrincipalOrgID"):
            assert words in error.hint
    # Checked in every region before anything was modified: not web, not base, not any parameter.
    assert _modify_calls(aws) == {}
    for region in REGIONS:
        for name in ("base", "web"):
            assert aws.get_launch_permissions(region, two_images[name][region]) == ShareSet()
        assert aws.get_parameters(region, [parameter_name("web")]) == {}
    assert aws.get_snapshot_permissions("eu-west-1", snapshot_id) == ShareSet()


def test_a_customer_managed_key_is_shared_with_a_note_about_its_key_policy(
    tmp_path: Path, aws: AwsCloud, two_images: dict[str, dict[str, str]]
) -> None:
    key = aws.kms("eu-west-1").create_key(Description="stamp images")["KeyMetadata"]
    _encrypt_in_moto("eu-west-1", two_images["web"]["eu-west-1"], key["Arn"])
    report = publish(_both(tmp_path, two_images), aws, None, dry_run=False)
    assert aws.get_launch_permissions("eu-west-1", two_images["web"]["eu-west-1"]) == ShareSet(
        accounts=frozenset({"111122223333"}), organizations=frozenset({ORG})
    )
    (note,) = report.notes
    assert note.startswith(f"web v1 in eu-west-1: snapshots are encrypted with KMS key {key['Arn']}")
    assert "kms:Decrypt" in note
    assert "aws:PrincipalOrgID" in note


def test_a_revoked_release_on_the_default_key_is_not_refused(
    tmp_path: Path, aws: AwsCloud, two_images: dict[str, dict[str, str]]
) -> None:
    # Revoking takes permissions away; nobody gets access, so the key does not matter.
    _encrypt_in_moto("us-east-1", two_images["web"]["us-east-1"], _default_ebs_key(aws, "us-east-1"))
    releases = {"web": [release_entry(2, two_images["base"]), release_entry(1, two_images["web"], "revoked")]}
    publish(_catalog(tmp_path, releases), aws, ["web"], dry_run=False)
    assert aws.get_launch_permissions("us-east-1", two_images["web"]["us-east-1"]) == ShareSet()


def test_aws_managed_keys_are_refused_by_key_manager_and_unknown_keys_too(tmp_path: Path) -> None:
    # On AWS, DescribeKey says KeyManager AWS for aws/ebs, and DescribeImages says which snapshots are encrypted.
    cloud = FakeCloud()
    plain = cloud.add_image("us-east-1", "web-1")
    managed = cloud.add_image("us-east-1", "web-2")
    lost = cloud.add_image("us-east-1", "web-3")
    aws_key = KmsKey("k-1", "arn:aws:kms:us-east-1:123456789012:key/k-1", "AWS")
    cloud.encrypt_snapshot("us-east-1", managed.snapshot_ids[0], aws_key)
    cloud.encryption.snapshot_keys[("us-east-1", lost.snapshot_ids[0])] = "arn:aws:kms:us-east-1:999:key/gone"
    releases = [
        release_entry(3, {"us-east-1": lost.ami_id}),
        release_entry(2, {"us-east-1": managed.ami_id}, "previous"),
        release_entry(1, {"us-east-1": plain.ami_id}, "previous"),
    ]
    catalog = _catalog(tmp_path, {"web": releases}, regions=("us-east-1",))
    with pytest.raises(PolicyError) as caught:
        publish(catalog, cloud, None, dry_run=False)
    assert f"web v2 in us-east-1: AMI {managed.ami_id}" in caught.value.message
    assert f"default key alias/aws/ebs ({aws_key.arn})" in caught.value.message
    assert f"web v3 in us-east-1: AMI {lost.ami_id}" in caught.value.message
    assert "which stamp cannot find" in caught.value.message
    assert _modify_calls(cloud) == {}
    # The unencrypted image is not looked up: one batched DescribeSnapshots for the two encrypted ones.
    assert cloud.calls["DescribeSnapshots"] == 1


def test_unencrypted_images_cost_no_snapshot_or_key_calls_where_describe_images_says_so(tmp_path: Path) -> None:
    cloud = FakeCloud()
    image = cloud.add_image("us-east-1", "web-1")
    catalog = _catalog(tmp_path, {"web": [release_entry(1, {"us-east-1": image.ami_id})]}, regions=("us-east-1",))
    publish(catalog, cloud, ["web"], dry_run=False)
    assert "DescribeSnapshots" not in cloud.calls
    assert "DescribeKey" not in cloud.calls


# -- copies, the entity limit, snapshot permissions ---------------------------------------------------------


def test_a_copied_ami_has_no_permissions_until_publish_shares_it_in_its_region(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi
) -> None:
    share = ShareSet(accounts=frozenset({"111122223333"}), organizations=frozenset({ORG}))
    source = make_ami("us-east-1", "web-1")
    publish(_catalog(tmp_path, {"web": [release_entry(1, {"us-east-1": source})]}), aws, ["web"], dry_run=False)
    assert aws.get_launch_permissions("us-east-1", source) == share

    # CopyImage does not carry launch permissions over:
    # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/CopyingAMIs.html
    copy = aws.ec2("eu-west-1").copy_image(SourceImageId=source, SourceRegion="us-east-1", Name="web-1")["ImageId"]
    assert aws.get_launch_permissions("eu-west-1", copy) == ShareSet()

    both = _catalog(tmp_path, {"web": [release_entry(1, {"us-east-1": source, "eu-west-1": copy})]})
    aws.reset_call_counts()
    report = publish(both, aws, ["web"], dry_run=False)
    assert aws.get_launch_permissions("eu-west-1", copy) == share
    # Only the copy needed a change.
    assert aws.call_counts()["ModifyImageAttribute"] == 1
    assert [e.region for e in report.entries if not e.launch.empty] == ["eu-west-1"]


def test_more_than_a_thousand_entities_is_refused_before_any_call(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi
) -> None:
    # Accounts, copy accounts, organizations and OUs all count; a thousand is allowed, one more is not.
    accounts = [f"{n:012d}" for n in range(1, MAX_SHARE_ENTITIES - 2)]
    fits = {
        "accounts": accounts,
        "copy_accounts": ["999999999999"],
        "organizations": [ORG],
        "organizational_units": [OU],
    }
    assert len(accounts) + 3 == MAX_SHARE_ENTITIES
    release = {"web": [release_entry(1, {"us-east-1": make_ami("us-east-1", "web-1")})]}
    publish(_catalog(tmp_path, release, share=fits, regions=("us-east-1",)), aws, ["web"], dry_run=False)
    assert len(aws.get_launch_permissions("us-east-1", release["web"][0]["amis"]["us-east-1"])) == MAX_SHARE_ENTITIES

    aws.reset_call_counts()
    too_many = fits | {"accounts": [*accounts, "999999999998"]}
    with pytest.raises(CatalogError, match=r"shared with 1001 targets; EC2 allows 1000 per AMI") as caught:
        publish(_catalog(tmp_path, release, share=too_many, regions=("us-east-1",)), aws, ["web"], dry_run=False)
    assert caught.value.exit_code == 1
    assert "organization or OU" in caught.value.hint
    assert aws.call_counts() == {}


def test_only_copy_accounts_get_snapshot_permissions(tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi) -> None:
    amis = {region: make_ami(region, "web-1") for region in REGIONS}
    share = {"accounts": ["111122223333"], "organizations": [ORG], "copy_accounts": ["555566667777"]}
    publish(_catalog(tmp_path, {"web": [release_entry(1, amis)]}, share=share), aws, ["web"], dry_run=False)
    for region in REGIONS:
        details = aws.describe_image(region, amis[region])
        assert details is not None
        (snapshot_id,) = details.snapshot_ids
        # Launch: everyone; volumes from the snapshot: the copy account alone.
        assert aws.get_launch_permissions(region, amis[region]) == ShareSet(
            accounts=frozenset({"111122223333", "555566667777"}), organizations=frozenset({ORG})
        )
        assert aws.get_snapshot_permissions(region, snapshot_id) == ShareSet(accounts=frozenset({"555566667777"}))


def test_launch_only_accounts_get_no_snapshot_permission(tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi) -> None:
    amis = {region: make_ami(region, "web-1") for region in REGIONS}
    publish(_catalog(tmp_path, {"web": [release_entry(1, amis)]}), aws, ["web"], dry_run=False)
    counts = aws.call_counts()
    assert "ModifySnapshotAttribute" not in counts
    # Read all the same: a snapshot shared outside stamp must be found (test_share.py reverts one).
    assert counts["DescribeSnapshotAttribute"] == len(REGIONS)
    for region in REGIONS:
        details = aws.describe_image(region, amis[region])
        assert details is not None
        assert aws.get_snapshot_permissions(region, details.snapshot_ids[0]) == ShareSet()
