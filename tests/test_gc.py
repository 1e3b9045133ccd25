"""The janitor against a real moto server: only tagged leftovers go, in a safe order; releases and young ones stay."""

from __future__ import annotations

import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import REPO, MakeAmi
from fakes import FakeCloud
from scoreboard import Scoreboard
from stamp import cli
from stamp.clock import utc_now
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import ImageDetails, Instance, TaggedResource
from stamp.commands.build import new_build_id
from stamp.commands.gc import GcReport, build_id_time, find_leftovers, format_age, parse_age, remove_leftovers
from stamp.errors import CloudError, UsageError
from stamp.hosts.ec2 import Ec2Target
from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG

REGIONS = ("us-east-1", "eu-west-1")
OLD_BUILD = "web-20260101120000-abc123"


@dataclass
class Recorder:
    """Passes every call to the real cloud and notes the removing ones, in order."""

    cloud: AwsCloud
    calls: list[str] = field(default_factory=list)

    def list_tagged(self, region: str, key: str = BUILD_ID_TAG, value: str | None = None) -> list[TaggedResource]:
        return self.cloud.list_tagged(region, key, value)

    def describe_images(self, region: str, ami_ids: Collection[str]) -> dict[str, ImageDetails]:
        return self.cloud.describe_images(region, ami_ids)

    def describe_instances(self, region: str, instance_ids: Sequence[str]) -> list[Instance]:
        return self.cloud.describe_instances(region, instance_ids)

    def terminate_instances(self, region: str, instance_ids: Sequence[str]) -> None:
        self.calls.append("instance")
        self.cloud.terminate_instances(region, instance_ids)

    def deregister_image(self, region: str, ami_id: str) -> None:
        self.calls.append("image")
        self.cloud.deregister_image(region, ami_id)

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        self.calls.append("snapshot")
        self.cloud.delete_snapshot(region, snapshot_id)

    def delete_key_pair(self, region: str, key_name: str) -> None:
        self.calls.append("key-pair")
        self.cloud.delete_key_pair(region, key_name)

    def delete_security_group(self, region: str, group_id: str) -> None:
        self.calls.append("security-group")
        self.cloud.delete_security_group(region, group_id)


@dataclass(frozen=True)
class Build:
    """What one build left in one region."""

    instance: str
    key_pair: str
    group: str
    ami: str
    snapshot: str


def _tags(build_id: str | None) -> dict[str, str]:
    return {BUILD_ID_TAG: build_id} if build_id is not None else {"team": "someone else's"}


def _spec(kind: str, tags: dict[str, str]) -> list[dict[str, object]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def _leave(aws: AwsCloud, make_ami: MakeAmi, region: str, build_id: str | None, name: str) -> Build:
    """One of each kind a build makes, tagged with `build_id` (or, with None, with someone else's tag)."""
    from moto.ec2.models.amis import AMIS

    tags = _tags(build_id)
    ec2 = aws.ec2(region)
    ami = make_ami(region, name=f"{name}-image", tags=tags)
    (snapshot,) = aws.describe_images(region, [ami])[ami].snapshot_ids
    aws.create_tags(region, [snapshot], tags)
    (instance,) = aws.run_instances(region, str(AMIS[0]["ami_id"]), count=1, instance_type="t3.micro", tags=tags)
    ec2.create_key_pair(KeyName=f"{name}-key", TagSpecifications=_spec("key-pair", tags))  # type: ignore[arg-type]
    group = ec2.create_security_group(
        GroupName=f"{name}-group",
        Description="test",
        TagSpecifications=_spec("security-group", tags),  # type: ignore[arg-type]
    )["GroupId"]
    return Build(instance.instance_id, f"{name}-key", group, ami, snapshot)


def _present(aws: AwsCloud, region: str, build: Build) -> set[str]:
    ec2 = aws.ec2(region)
    out: set[str] = set()
    states = {i.instance_id: i.state for i in aws.describe_instances(region, [build.instance])}
    if states.get(build.instance) != "terminated":
        out.add("instance")
    if aws.describe_image(region, build.ami) is not None:
        out.add("image")
    if [s for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] if s["SnapshotId"] == build.snapshot]:
        out.add("snapshot")
    if [k for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"] == build.key_pair]:
        out.add("key-pair")
    if [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupId"] == build.group]:
        out.add("security-group")
    return out


EVERY_KIND = {"instance", "image", "snapshot", "key-pair", "security-group"}


def _gc(
    cloud: AwsCloud | Recorder | FakeCloud,
    *,
    released: dict[str, str] | None = None,
    older_than: timedelta | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    build_id: str | None = None,
) -> GcReport:
    moment = now or utc_now()
    garbage, kept = find_leftovers(
        cloud, REGIONS, released=released or {}, older_than=older_than, now=moment, build_id=build_id
    )
    return remove_leftovers(cloud, garbage, GcReport(now=moment, dry_run=dry_run, kept=kept), sleep=lambda _: None)


def test_every_kind_a_build_leaves_goes_in_every_region_and_nothing_untagged_is_touched(
    aws: AwsCloud, make_ami: MakeAmi
) -> None:
    ours = {region: _leave(aws, make_ami, region, OLD_BUILD, f"ours-{region}") for region in REGIONS}
    theirs = {region: _leave(aws, make_ami, region, None, f"theirs-{region}") for region in REGIONS}

    report = _gc(aws)

    assert not report.failed
    assert len(report.removed) == 10
    for region in REGIONS:
        assert _present(aws, region, ours[region]) == set(), region
        assert _present(aws, region, theirs[region]) == EVERY_KIND, region


def test_the_order_is_instances_images_snapshots_key_pairs_security_groups(aws: AwsCloud, make_ami: MakeAmi) -> None:
    for region in REGIONS:
        _leave(aws, make_ami, region, OLD_BUILD, f"b-{region}")
    recorder = Recorder(aws)
    _gc(recorder)
    first_seen = list(dict.fromkeys(recorder.calls))
    assert first_seen == ["instance", "image", "snapshot", "key-pair", "security-group"]
    # Everything of one kind, in every region, before any of the next kind.
    assert recorder.calls == sorted(recorder.calls, key=first_seen.index)


def test_an_ami_a_release_names_is_kept_with_its_snapshot_even_with_the_build_id(
    aws: AwsCloud, make_ami: MakeAmi
) -> None:
    build = _leave(aws, make_ami, "us-east-1", OLD_BUILD, "released")

    report = _gc(aws, released={build.ami: "web v3"})

    assert _present(aws, "us-east-1", build) == {"image", "snapshot"}
    reasons = {(k.leftover.kind, k.leftover.resource_id): k.reason for k in report.kept}
    assert reasons == {("image", build.ami): "release web v3", ("snapshot", build.snapshot): f"used by AMI {build.ami}"}
    assert any(
        f"kept          image           {build.ami}" in line and "release web v3" in line for line in report.lines()
    )


def test_gc_keeps_verified_builds_no_catalog_names_until_keep_verified(
    aws: AwsCloud, make_ami: MakeAmi, scoreboard: Scoreboard
) -> None:
    """A verified build waiting for its record (a pull request under review) survives the janitor for 14 days."""
    verified = [_leave(aws, make_ami, region, OLD_BUILD, f"verified-{region}") for region in REGIONS]
    for region, build in zip(REGIONS, verified, strict=True):
        aws.create_tags(region, [build.ami], {VERIFIED_TAG: VERIFIED})
    unverified = _leave(aws, make_ami, "us-east-1", "web-20260101130000-def456", "unverified")

    report = _gc(aws, older_than=timedelta(seconds=0), now=utc_now() + timedelta(days=13))

    lost = [b for region, b in zip(REGIONS, verified, strict=True) if _present(aws, region, b) != {"image", "snapshot"}]
    scoreboard.add("verified builds at gc", tried=len(verified), bad=len(lost))
    assert not lost
    assert _present(aws, "us-east-1", unverified) == set()
    reasons = {k.leftover.resource_id: k.reason for k in report.kept}
    assert reasons[verified[0].ami] == "verified build, kept 2w (--keep-verified)"
    assert reasons[verified[0].snapshot] == f"used by AMI {verified[0].ami}"

    # Past --keep-verified it is garbage like any other leftover.
    _gc(aws, older_than=timedelta(seconds=0), now=utc_now() + timedelta(days=15))
    assert all(_present(aws, region, b) == set() for region, b in zip(REGIONS, verified, strict=True))


def test_older_than_uses_creation_times_and_the_build_id_for_key_pairs_and_groups(
    aws: AwsCloud, make_ami: MakeAmi
) -> None:
    fresh = new_build_id("web", utc_now())
    old_id = _leave(aws, make_ami, "us-east-1", OLD_BUILD, "old-id")  # made now, by a build from January
    new_id = _leave(aws, make_ami, "eu-west-1", fresh, "new-id")

    report = _gc(aws, older_than=timedelta(hours=2))

    # Instances, AMIs and snapshots were all made moments ago; key pairs and groups are as old as their build.
    assert _present(aws, "us-east-1", old_id) == {"instance", "image", "snapshot"}
    assert _present(aws, "eu-west-1", new_id) == EVERY_KIND
    assert {k.reason for k in report.kept} == {"younger than --older-than"}

    later = _gc(aws, older_than=timedelta(hours=2), now=utc_now() + timedelta(hours=3))
    assert _present(aws, "us-east-1", old_id) == set()
    assert _present(aws, "eu-west-1", new_id) == set()
    assert not later.kept


def test_a_dry_run_lists_what_it_would_remove_and_changes_nothing(aws: AwsCloud, make_ami: MakeAmi) -> None:
    build = _leave(aws, make_ami, "us-east-1", OLD_BUILD, "dry")
    recorder = Recorder(aws)

    report = _gc(recorder, dry_run=True)

    assert recorder.calls == []
    assert _present(aws, "us-east-1", build) == EVERY_KIND
    lines = report.lines()
    assert len([line for line in lines if line.lstrip().startswith("would remove")]) == 5
    assert lines[-1] == "gc: 5 to remove, 0 kept (dry run: nothing was changed)"
    assert all(OLD_BUILD in line for line in lines[:-1])


def test_a_blank_tag_or_another_builds_id_is_left_alone_when_one_build_is_collected(
    aws: AwsCloud, make_ami: MakeAmi
) -> None:
    blank = _leave(aws, make_ami, "us-east-1", "", "blank")
    other = _leave(aws, make_ami, "us-east-1", OLD_BUILD, "other")
    mine = _leave(aws, make_ami, "us-east-1", "web-20260202020202-def456", "mine")

    _gc(aws, build_id="web-20260202020202-def456")

    assert _present(aws, "us-east-1", mine) == set()
    assert _present(aws, "us-east-1", other) == EVERY_KIND
    _gc(aws)
    assert _present(aws, "us-east-1", blank) == EVERY_KIND


def test_failures_are_reported_after_the_rest_is_removed() -> None:
    fake = FakeCloud()
    image = fake.add_image("us-east-1", "web-x", tags={BUILD_ID_TAG: OLD_BUILD})
    fake.snapshot_tags[("us-east-1", image.snapshot_ids[0])] = {BUILD_ID_TAG: OLD_BUILD}
    fake.import_key_pair("eu-west-1", "stamp-build-x", "ssh-ed25519 AAAA", tags={BUILD_ID_TAG: OLD_BUILD})
    fake.fail["DeregisterImage"] = CloudError("DeregisterImage in us-east-1 failed: UnauthorizedOperation")

    report = _gc(fake)

    assert [(item.kind, item.resource_id) for item in report.removed] == [("key-pair", "stamp-build-x")]
    # The AMI stays, so its snapshot stays in use: both are reported, neither silently.
    assert [(item.kind, error.split(":")[0]) for item, error in report.failed] == [
        ("image", "DeregisterImage in us-east-1 failed"),
        ("snapshot", f"snapshot {image.snapshot_ids[0]} in us-east-1 is in use by an AMI"),
    ]
    assert report.lines()[-1] == "gc: 1 removed, 0 kept, 2 failed"
    with pytest.raises(CloudError) as raised:
        report.raise_for_failures()
    assert raised.value.exit_code == 5
    assert "2 resource(s) could not be removed" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("2h", timedelta(hours=2)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("45S", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_ages_are_a_number_and_a_unit(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "-2h", "2h ago", "1.5h"])
def test_anything_else_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_age(text)
    assert raised.value.exit_code == 2


def test_a_build_id_says_when_the_build_started() -> None:
    assert build_id_time("web-20261126150000-7f3a9c") == datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    assert build_id_time("my-image-20261126150000-7f3a9c") == datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    assert build_id_time("web-3-7f3a9c") is None
    assert build_id_time("web-20261399150000-7f3a9c") is None
    now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    assert format_age(now - timedelta(hours=2, minutes=5), now) == "2h05m"
    assert format_age(now - timedelta(days=3, hours=1), now) == "3d01h"
    assert format_age(None, now) == "unknown"


def _catalog_with_release(tmp_path: Path, ami_id: str) -> Path:
    shutil.copytree(REPO / "tests" / "fixtures" / "catalog", tmp_path, dirs_exist_ok=True)
    path = tmp_path / "good.yaml"
    path.write_text(
        path.read_text()
        + "releases:\n  base:\n    - version: 1\n"
        + f"      amis: {{us-east-1: {ami_id}}}\n"
        + '      built_at: "2026-11-01T00:00:00Z"\n      commit: 1a2b3c4d\n      build_id: base-20261101000000-aaaaaa\n'
        + "      source: {amis: {us-east-1: ami-0123456789abcdef0}}\n      verified: passed\n      status: current\n"
    )
    return path


def test_stamp_gc_prints_one_line_per_resource_and_a_count_and_keeps_releases(
    aws: AwsCloud,
    make_ami: MakeAmi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    released = _leave(aws, make_ami, "us-east-1", "base-20261101000000-aaaaaa", "released")
    leftover = _leave(aws, make_ami, "eu-west-1", OLD_BUILD, "leftover")
    catalog = _catalog_with_release(tmp_path, released.ami)
    monkeypatch.setattr("stamp.hosts.target.target_for", lambda kind, catalog: Ec2Target(aws))

    assert cli.main(["gc", "--catalog", str(catalog), "--older-than", "2h", "--dry-run"]) == 0
    dry = capsys.readouterr().err.splitlines()
    # Made moments ago, except that key pairs and groups are as old as their builds' IDs say.
    assert dry[-1] == "gc: 4 to remove, 6 kept (dry run: nothing was changed)"
    assert {line.split()[2] for line in dry if line.lstrip().startswith("would remove")} == {
        "key-pair",
        "security-group",
    }

    assert cli.main(["gc", "--catalog", str(catalog)]) == 0
    lines = capsys.readouterr().err.splitlines()
    removed = [line for line in lines if line.lstrip().startswith("removed")]
    assert len(removed) == 8, lines  # the released build's instance, key pair and group go; its AMI stays
    assert lines[-1] == "gc: 8 removed, 2 kept"
    assert _present(aws, "us-east-1", released) == {"image", "snapshot"}
    assert _present(aws, "eu-west-1", leftover) == set()

    assert cli.main(["gc", "--catalog", str(catalog), "--older-than", "soon"]) == 2
    assert "--older-than 'soon': not an age" in capsys.readouterr().err
