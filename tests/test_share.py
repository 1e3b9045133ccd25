"""Sharing: the pure diff, and publish against a real moto server (and the in-memory fake for scale)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from builders import release_entry
from conftest import MakeAmi
from fakes import FakeCloud
from stamp.catalog.load import Catalog, load_catalog
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import ShareDiff, ShareSet
from stamp.cloud.publish_policy import desired_share, parameter_name, plan_share
from stamp.cloud.sharing import publish
from stamp.errors import CatalogError, PolicyError, PublishFailed

ORG = "arn:aws:organizations::111122223333:organization/o-exampleorg1"
OU = "arn:aws:organizations::111122223333:ou/o-exampleorg1/ou-ab12-cd34ef56"
REGIONS = ("us-east-1", "eu-west-1")
MODIFY_CALLS = {"ModifyImageAttribute", "ModifySnapshotAttribute", "PutParameter", "CreateTags", "DeleteTags"}
WEB_SHARE = ShareSet(accounts=frozenset({"111122223333", "444455556666"}), organizations=frozenset({ORG}))


def _catalog(
    tmp_path: Path,
    releases: dict[str, list[dict[str, Any]]],
    *,
    web_share: dict[str, Any] | None = None,
    allow_public: bool = False,
) -> Catalog:
    document = {
        "version": 1,
        "defaults": {"regions": list(REGIONS), "allow_public": allow_public},
        "images": {
            "base": {"source": {"filter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}}},
            "web": {
                "parent": "base",
                "share": web_share
                if web_share is not None
                else {"accounts": ["111122223333", "444455556666"], "organizations": [ORG]},
            },
        },
        "releases": releases,
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return load_catalog(path, check_files=False)


def _modify_calls(counts: dict[str, int]) -> dict[str, int]:
    return {op: n for op, n in counts.items() if op in MODIFY_CALLS}


# -- the pure core ---------------------------------------------------------------------------------------


def test_plan_share_adds_and_removes_per_kind() -> None:
    current = ShareSet(
        accounts=frozenset({"111122223333", "999988887777"}), organizational_units=frozenset({OU}), public=True
    )
    desired = ShareSet(accounts=frozenset({"111122223333", "444455556666"}), organizations=frozenset({ORG}))
    diff = plan_share(current, desired)
    assert diff == ShareDiff(
        add=ShareSet(accounts=frozenset({"444455556666"}), organizations=frozenset({ORG})),
        remove=ShareSet(accounts=frozenset({"999988887777"}), organizational_units=frozenset({OU}), public=True),
    )
    assert diff.lines() == [
        "+ account 444455556666",
        f"+ org {ORG}",
        "- account 999988887777",
        f"- ou {OU}",
        "- group all",
    ]
    assert plan_share(desired, desired).empty


def test_desired_share_includes_copy_accounts(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, {}, web_share={"accounts": ["111122223333"], "copy_accounts": ["555566667777"]})
    assert desired_share(catalog.images["web"], allow_public=False) == ShareSet(
        accounts=frozenset({"111122223333", "555566667777"})
    )


def test_public_needs_the_catalog_guard(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, {}, web_share={"public": True}, allow_public=True)
    assert desired_share(catalog.images["web"], allow_public=True).public
    with pytest.raises(PolicyError, match=r"defaults\.allow_public") as caught:
        desired_share(catalog.images["web"], allow_public=False)
    assert caught.value.exit_code == 6


def test_more_than_a_thousand_targets_is_refused(tmp_path: Path) -> None:
    accounts = [f"{n:012d}" for n in range(1001)]
    catalog = _catalog(tmp_path, {}, web_share={"accounts": accounts})
    with pytest.raises(CatalogError, match="1000 per AMI"):
        desired_share(catalog.images["web"], allow_public=False)


def test_unknown_image_names_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, {})
    with pytest.raises(CatalogError, match="did you mean 'web'"):
        publish(catalog, FakeCloud(), ["wbe"], dry_run=True)


# -- publish against moto --------------------------------------------------------------------------------


@pytest.fixture
def web_amis(make_ami: MakeAmi) -> dict[str, dict[str, str]]:
    """Two releases of `web` (v2 current, v1 previous), each with an AMI in both regions."""
    return {f"v{v}": {region: make_ami(region, f"web-{v}") for region in REGIONS} for v in (1, 2)}


def _two_releases(tmp_path: Path, amis: dict[str, dict[str, str]], **kwargs: Any) -> Catalog:
    releases = {"web": [release_entry(2, amis["v2"], "current"), release_entry(1, amis["v1"], "previous")]}
    return _catalog(tmp_path, releases, **kwargs)


def test_publish_twice_the_second_run_changes_nothing(
    tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]
) -> None:
    catalog = _two_releases(tmp_path, web_amis)
    first = publish(catalog, aws, None, dry_run=False)
    # Launch permissions on 4 AMI-regions, and the parameter in 2 regions.
    assert _modify_calls(aws.call_counts()) == {"ModifyImageAttribute": 4, "PutParameter": 2}
    assert first.modify_calls == 6
    for version in ("v1", "v2"):
        for region in REGIONS:
            assert aws.get_launch_permissions(region, web_amis[version][region]) == WEB_SHARE
    assert "+ account 444455556666" in "\n".join(first.lines())

    aws.reset_call_counts()
    second = publish(catalog, aws, None, dry_run=False)
    counts = aws.call_counts()
    assert _modify_calls(counts) == {}
    assert second.modify_calls == 0
    assert not second.changes
    # At most one describe per AMI and region, and one per snapshot (every snapshot is reconciled); DescribeImages
    # twice per region (the release AMIs, and the account's own stamp AMIs to find images removed from the
    # catalog), GetParameters once per region, and DescribeSnapshots once per region for the aws/ebs check
    # (moto's DescribeImages does not say `Encrypted`).
    assert counts == {
        "DescribeImageAttribute": 4,
        "DescribeSnapshotAttribute": 4,
        "DescribeImages": 4,
        "DescribeSnapshots": 2,
        "GetParameters": 2,
    }
    assert second.lines()[-1] == "publish: changed 0 of 4 AMI-region(s); 0 modify call(s)"


def test_stale_entries_are_removed_so_sharing_equals_the_catalog(
    tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]
) -> None:
    catalog = _two_releases(tmp_path, web_amis)
    ami_id = web_amis["v2"]["eu-west-1"]
    stale = ShareSet(
        accounts=frozenset({"999988887777", "111122223333"}), organizational_units=frozenset({OU}), public=True
    )
    aws.modify_launch_permissions("eu-west-1", ami_id, ShareDiff(add=stale))
    aws.reset_call_counts()

    report = publish(catalog, aws, ["web"], dry_run=False)
    assert aws.get_launch_permissions("eu-west-1", ami_id) == WEB_SHARE
    entry = next(e for e in report.entries if e.ami_id == ami_id)
    assert entry.launch.lines() == [
        "+ account 444455556666",
        f"+ org {ORG}",
        "- account 999988887777",
        f"- ou {OU}",
        "- group all",
    ]
    # Additions and removals of one AMI go in one call.
    assert aws.call_counts()["ModifyImageAttribute"] == 4


def test_the_parameter_version_does_not_bump_without_a_change(
    tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]
) -> None:
    catalog = _two_releases(tmp_path, web_amis)
    publish(catalog, aws, None, dry_run=False)
    publish(catalog, aws, None, dry_run=False)
    for region in REGIONS:
        parameter = aws.get_parameters(region, [parameter_name("web")])[parameter_name("web")]
        assert (parameter.value, parameter.version) == (web_amis["v2"][region], 1)

    # A rollback to v1 moves the parameter once.
    rolled = _catalog(
        tmp_path, {"web": [release_entry(2, web_amis["v2"], "revoked"), release_entry(1, web_amis["v1"], "current")]}
    )
    report = publish(rolled, aws, None, dry_run=False)
    parameter = aws.get_parameters("us-east-1", [parameter_name("web")])[parameter_name("web")]
    assert (parameter.value, parameter.version) == (web_amis["v1"]["us-east-1"], 2)
    assert f"~ parameter /stamp/web/current {web_amis['v2']['us-east-1']} -> {web_amis['v1']['us-east-1']}" in (
        "\n".join(report.lines())
    )
    # The revoked release is shared with no one any more; the current one keeps its share.
    assert aws.get_launch_permissions("us-east-1", web_amis["v2"]["us-east-1"]) == ShareSet()
    assert aws.get_launch_permissions("us-east-1", web_amis["v1"]["us-east-1"]) == WEB_SHARE


def test_dry_run_changes_nothing(tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]) -> None:
    catalog = _two_releases(tmp_path, web_amis)
    report = publish(catalog, aws, None, dry_run=True)
    assert _modify_calls(aws.call_counts()) == {}
    assert report.dry_run
    assert report.modify_calls == 0
    assert len(report.changes) == 4
    assert aws.get_launch_permissions("us-east-1", web_amis["v2"]["us-east-1"]) == ShareSet()
    assert aws.get_parameters("us-east-1", [parameter_name("web")]) == {}
    text = "\n".join(report.lines())
    assert "+ account 111122223333" in text
    assert f"+ parameter /stamp/web/current {web_amis['v2']['us-east-1']}" in text
    assert report.lines()[-1] == "publish: would change 4 of 4 AMI-region(s); no modify calls (dry run)"


def test_public_is_refused_before_any_call(tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]) -> None:
    catalog = _two_releases(tmp_path, web_amis, web_share={"public": True}, allow_public=True)
    # load_catalog already refuses public without the guard; publish checks again for catalogs built otherwise.
    unguarded = dataclasses.replace(catalog, defaults=catalog.defaults.model_copy(update={"allow_public": False}))
    with pytest.raises(PolicyError) as caught:
        publish(unguarded, aws, None, dry_run=False)
    assert caught.value.exit_code == 6
    assert aws.call_counts() == {}

    publish(catalog, aws, None, dry_run=False)
    assert aws.get_launch_permissions("us-east-1", web_amis["v2"]["us-east-1"]) == ShareSet(public=True)


def test_copy_accounts_get_snapshot_permissions_and_lose_them_again(
    tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]
) -> None:
    share = {"accounts": ["111122223333"], "copy_accounts": ["555566667777"]}
    catalog = _two_releases(tmp_path, web_amis, web_share=share)
    publish(catalog, aws, None, dry_run=False)
    details = aws.describe_image("us-east-1", web_amis["v2"]["us-east-1"])
    assert details is not None
    copy = ShareSet(accounts=frozenset({"555566667777"}))
    assert aws.get_snapshot_permissions("us-east-1", details.snapshot_ids[0]) == copy
    aws.reset_call_counts()
    publish(catalog, aws, None, dry_run=False)
    assert _modify_calls(aws.call_counts()) == {}

    plain = _two_releases(tmp_path, web_amis, web_share={"accounts": ["111122223333"]})
    report = publish(plain, aws, None, dry_run=False)
    assert aws.get_snapshot_permissions("us-east-1", details.snapshot_ids[0]) == ShareSet()
    assert f"- snapshot {details.snapshot_ids[0]} account 555566667777" in "\n".join(report.lines())


def test_snapshot_shared_outside_stamp_is_reverted_by_publish(
    tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]
) -> None:
    """No copy accounts and no stamp tag: a snapshot made public and shared by hand is still found and reverted."""
    catalog = _two_releases(tmp_path, web_amis, web_share={"accounts": ["111122223333"]})
    publish(catalog, aws, None, dry_run=False)
    for version in ("v1", "v2"):
        details = aws.describe_image("us-east-1", web_amis[version]["us-east-1"])
        assert details is not None
        leak = ShareSet(accounts=frozenset({"999988887777"}), public=True)
        aws.modify_snapshot_permissions("us-east-1", details.snapshot_ids[0], ShareDiff(add=leak))
        assert aws.get_snapshot_permissions("us-east-1", details.snapshot_ids[0]) == leak
    report = publish(catalog, aws, None, dry_run=False)
    text = "\n".join(report.lines())
    for version in ("v1", "v2"):
        details = aws.describe_image("us-east-1", web_amis[version]["us-east-1"])
        assert details is not None
        assert aws.get_snapshot_permissions("us-east-1", details.snapshot_ids[0]) == ShareSet()
        assert f"- snapshot {details.snapshot_ids[0]} account 999988887777" in text
        assert f"- snapshot {details.snapshot_ids[0]} group all" in text


def test_a_deregistered_previous_release_is_noted_not_fatal(
    tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]
) -> None:
    catalog = _two_releases(tmp_path, web_amis)
    aws.deregister_image("eu-west-1", web_amis["v1"]["eu-west-1"])
    report = publish(catalog, aws, None, dry_run=False)
    gone = [e for e in report.entries if e.missing]
    assert [(e.version, e.region) for e in gone] == [(1, "eu-west-1")]
    assert "! the AMI no longer exists in this region" in "\n".join(report.lines())


def test_a_missing_current_ami_fails_after_the_rest_is_done(
    tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]
) -> None:
    catalog = _two_releases(tmp_path, web_amis)
    aws.deregister_image("eu-west-1", web_amis["v2"]["eu-west-1"])
    with pytest.raises(PublishFailed, match="web v2 in eu-west-1: the current release's AMI") as caught:
        # No wait for the AMI to appear (eventual consistency): it is gone for good.
        publish(catalog, aws, None, dry_run=False, wait_timeout=0)
    assert caught.value.exit_code == 5
    assert aws.get_launch_permissions("us-east-1", web_amis["v2"]["us-east-1"]) == WEB_SHARE
    assert len(caught.value.report.entries) == 4


def test_report_as_dict_is_json(tmp_path: Path, aws: AwsCloud, web_amis: dict[str, dict[str, str]]) -> None:
    report = publish(_two_releases(tmp_path, web_amis), aws, ["web"], dry_run=True)
    data = json.loads(json.dumps(report.as_dict()))
    assert data["dry_run"] is True
    first = data["entries"][0]
    assert (first["image"], first["version"], first["status"]) == ("web", 2, "current")
    assert first["launch"]["add"]["accounts"] == ["111122223333", "444455556666"]


# -- publish above the seam, at scale --------------------------------------------------------------------


def test_publish_many_images_with_the_fake(tmp_path: Path) -> None:
    cloud = FakeCloud()
    regions = [f"{r}-{n}" for r in ("us-east", "eu-west") for n in (1, 2, 3)]
    images: dict[str, Any] = {"base": {"source": {"filter": {"name": "d-*", "owners": ["136693071363"]}}}}
    releases: dict[str, list[dict[str, Any]]] = {}
    for i in range(100):
        name = f"img-{i:03d}"
        images[name] = {"parent": "base", "share": {"accounts": ["111122223333"]}}
        amis = {r: cloud.add_image(r, name).ami_id for r in regions}
        releases[name] = [release_entry(1, amis, "current") | {"build_id": f"{name}-1"}]
    path = tmp_path / "catalog.yaml"
    path.write_text(
        json.dumps({"version": 1, "defaults": {"regions": regions}, "images": images, "releases": releases}),
        encoding="utf-8",
    )
    catalog = load_catalog(path, check_files=False)
    first = publish(catalog, cloud, None, dry_run=False, workers=16)
    assert first.calls == {"ModifyImageAttribute": 600, "PutParameter": 600}
    cloud.reset_call_counts()
    second = publish(catalog, cloud, None, dry_run=False, workers=16)
    assert second.modify_calls == 0
    assert cloud.calls["DescribeImageAttribute"] == 600
    # Per region: the release AMIs in one batch, and the scan for images removed from the catalog.
    assert cloud.calls["DescribeImages"] == 2 * len(regions)
    # 100 parameter names per region, read ten at a time.
    assert cloud.calls["GetParameters"] == 10 * len(regions)
