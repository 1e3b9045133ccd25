"""Retention, revocation and rollback: the pure plans, the surgical catalog edits, and the real thing on moto."""

from __future__ import annotations

import io
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from builders import changed_lines, load_text, with_releases
from conftest import NOW, MakeAmi
from fakes import FakeCloud
from stamp.catalog.edit import with_release, without_releases
from stamp.catalog.load import Catalog, load_catalog
from stamp.catalog.models import Release, ReleaseSource
from stamp.cli import main
from stamp.clock import iso
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import ImageUser, ShareSet
from stamp.cloud.publish_policy import parameter_name
from stamp.commands.prune import AmiState, Usage, plan_prune, prune, retained_versions
from stamp.commands.revoke import find_descendants, next_current, plan_revoke, revoke
from stamp.commands.rollback import plan_rollback, rollback
from stamp.errors import CatalogError, CloudError, MissingResource, PolicyError
from stamp.tags import DEPRECATED_AT_TAG

REGIONS = ("us-east-1", "eu-west-1")
WEB_SHARE = ShareSet(accounts=frozenset({"111122223333"}))

HEAD = """\
# lifecycle test catalog
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
  retention: {keep: 2, grace_days: 14}   # two launchable releases, two weeks of grace
images:
  base:
    source: {filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}}
    share: {accounts: ["444455556666"]}
  web:
    parent: base
    share: {accounts: ["111122223333"]}
  app:
    parent: base
  api:
    parent: web

releases: {}   # written by stamp
"""


def _release(
    version: int,
    amis: dict[str, str],
    status: str,
    *,
    source: tuple[str, int] | None = ("base", 1),
    built_at: str | None = None,
) -> Release:
    return Release(
        version=version,
        amis=amis,
        built_at=built_at or f"2026-11-{version:02d}T12:00:00Z",
        commit="1a2b3c4d5e6f",
        build_id=f"build-{version}-abcdef",
        source=ReleaseSource(image=source[0], version=source[1])
        if source
        else ReleaseSource(amis={"us-east-1": "ami-00000000000000001"}),
        verified="passed",
        status=status,
    )


def _text(releases: dict[str, list[Release]]) -> str:
    return with_releases(HEAD, releases)


def _write(tmp_path: Path, releases: dict[str, list[Release]]) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(_text(releases), encoding="utf-8")
    return path


def _statuses(path: Path, image: str) -> list[tuple[int, str]]:
    return [(r.version, r.status) for r in load_catalog(path, check_files=False).releases.get(image, ())]


FAKE = {region: f"ami-{n:017x}" for n, region in enumerate(REGIONS, start=1)}


def _fake_amis(version: int) -> dict[str, str]:
    return {region: f"ami-{version:08x}{n:09x}" for n, region in enumerate(REGIONS, start=1)}


# -- the catalog edit: removing release items ------------------------------------------------------------

EDITED = """\
version: 1
images:
  base:
    source: {filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}}
  web:
    parent: base
releases:     # written by stamp record
  base:
    - version: 2
      amis: {us-east-1: ami-0123456789abcdef0}
      built_at: "2026-11-20T10:00:00Z"
      commit: "1a2b3c4d5e6f"
      build_id: base-2-aaaaaa
      source: {amis: {us-east-1: ami-00000000000000001}}
      verified: passed
      status: current      # promoted after the CVE fix

    # v1 kept for the audit
    - version: 1
      amis: {us-east-1: ami-0123456789abcdef1}
      built_at: '2026-11-01T10:00:00Z'
      commit: abcdef1
      build_id: base-1-bbbbbb
      source: {amis: {us-east-1: ami-00000000000000000}}
      verified: passed
      status: revoked
      reason: "CVE-2026-1
        continued"
  web:   # web releases
  - version: 1
    amis:
        us-east-1: ami-0123456789abcdef2
    built_at: "2026-11-21T10:00:00Z"
    commit: "123456"
    build_id: "web-1-cccccc"
    source: {image: base, version: 2}
    verified: passed
    status: deprecated
# trailing comment at column 0
"""


def test_without_releases_removes_exactly_the_items_lines() -> None:
    out = without_releases(EDITED, "base", [1])
    removed, added = changed_lines(EDITED, out)
    start = EDITED.index("    - version: 1\n")
    end = EDITED.index("  web:   # web releases")
    assert removed == EDITED[start:end].splitlines(keepends=True)
    assert added == []
    # The comment above the item and the blank line before it are not part of it.
    assert "    # v1 kept for the audit\n  web:" in out
    assert [r.version for r in load_text(out).releases["base"]] == [2]


def test_removing_the_first_item_keeps_the_separating_blank_line() -> None:
    out = without_releases(EDITED, "base", [2])
    assert out == EDITED.replace(EDITED[EDITED.index("    - version: 2") : EDITED.index("\n    # v1")], "", 1)
    assert [r.version for r in load_text(out).releases["base"]] == [1]


def test_removing_every_item_leaves_an_empty_list_and_the_comment() -> None:
    out = without_releases(EDITED, "web", [1])
    removed, added = changed_lines(EDITED, out)
    assert added == ["  web: []   # web releases\n"]
    assert removed[0] == "  web:   # web releases\n"
    assert out.endswith("# trailing comment at column 0\n")
    assert load_text(out).releases["web"] == ()
    # ...and stamp record can write into it again.
    again = with_release(out, "web", _release(2, {"us-east-1": "ami-0123456789abcdef3"}, "current"))
    assert [r.version for r in load_text(again).releases["web"]] == [2]


def test_removal_keeps_crlf() -> None:
    crlf = EDITED.replace("\n", "\r\n")
    out = without_releases(crlf, "base", [1])
    assert out == without_releases(EDITED, "base", [1]).replace("\n", "\r\n")


def test_removing_a_missing_version_names_it() -> None:
    with pytest.raises(CatalogError, match=r"releases\.base has no version 7"):
        without_releases(EDITED, "base", [1, 7])
    assert without_releases(EDITED, "base", []) == EDITED


# -- prune: the pure plan ---------------------------------------------------------------------------------


def test_retention_keeps_current_and_the_newest_previous_releases() -> None:
    releases = [
        _release(5, FAKE, "previous"),  # rolled back from: still counted among the newest
        _release(4, FAKE, "current"),
        _release(3, FAKE, "previous"),
        _release(2, FAKE, "deprecated"),
        _release(1, FAKE, "previous"),
    ]
    assert retained_versions(releases, 2) == {4, 5}
    assert retained_versions(releases, 3) == {3, 4, 5}
    assert retained_versions(releases, 1) == {4}
    assert retained_versions([r for r in releases if r.status != "current"], 2) == {5, 3}


def _plan_catalog() -> Catalog:
    web = [
        _release(6, _fake_amis(6), "current"),
        _release(5, _fake_amis(5), "previous"),
        _release(4, _fake_amis(4), "previous"),  # beyond keep 2
        _release(3, _fake_amis(3), "deprecated"),  # deprecated 20 days ago: due
        _release(2, _fake_amis(2), "revoked"),  # deprecated 3 days ago: waits
        _release(1, _fake_amis(1), "deprecated"),  # no tag: the clock starts now
    ]
    return load_text(_text({"web": web}))


def _usage(catalog: Catalog, marks: dict[int, datetime | None], **extra: Any) -> Usage:
    amis = {}
    for release in catalog.releases["web"]:
        for region, ami_id in release.amis.items():
            amis[(region, ami_id)] = AmiState(True, marks.get(release.version), (f"snap-{ami_id[4:]}",))
    return Usage(amis=amis | extra.pop("amis", {}), **extra)


def test_plan_prune_deprecates_waits_retires_and_restarts_the_clock() -> None:
    catalog = _plan_catalog()
    usage = _usage(catalog, {3: NOW - timedelta(days=20), 2: NOW - timedelta(days=3)})
    actions = plan_prune(catalog, NOW, usage)
    assert [(a.kind, a.version, a.new_status) for a in actions] == [
        ("deprecate", 4, "deprecated"),
        ("retire", 3, "removed"),
        ("wait", 2, None),
        ("deprecate", 1, None),
    ]
    retire = actions[1]
    assert retire.amis == _fake_amis(3)
    assert retire.snapshots == {region: (f"snap-{ami[4:]}",) for region, ami in _fake_amis(3).items()}
    assert actions[2].due == NOW - timedelta(days=3) + timedelta(days=14)
    assert DEPRECATED_AT_TAG in actions[3].note
    # Exactly at the end of the grace period it is due.
    usage = _usage(catalog, {3: NOW - timedelta(days=14)})
    assert plan_prune(catalog, NOW, usage)[1].kind == "retire"
    usage = _usage(catalog, {3: NOW - timedelta(days=14) + timedelta(seconds=1)})
    assert plan_prune(catalog, NOW, usage)[1].kind == "wait"


def test_plan_prune_refuses_what_is_still_used_and_says_by_what() -> None:
    catalog = _plan_catalog()
    v3 = _fake_amis(3)
    users = {
        ("us-east-1", v3["us-east-1"]): (
            ImageUser("us-east-1", "launch-template", "lt-0abc", v3["us-east-1"], "fleet version 4, $Default"),
        ),
    }
    parameters = {("eu-west-1", parameter_name("web")): v3["eu-west-1"]}
    usage = _usage(catalog, {3: NOW - timedelta(days=30)}, users=users, parameters=parameters)
    refused = next(a for a in plan_prune(catalog, NOW, usage) if a.version == 3)
    assert refused.kind == "refuse"
    assert refused.blockers == (
        f"SSM parameter /stamp/web/current in eu-west-1 still names {v3['eu-west-1']} as current",
        "launch-template lt-0abc (fleet version 4, $Default) in us-east-1",
    )
    text = "\n".join(refused.lines("REFUSED"))
    assert "what to do" in text
    assert "stamp lookup web" in text


def test_plan_prune_leaves_an_image_alone_when_its_current_ami_is_unknown() -> None:
    catalog = _plan_catalog()
    usage = _usage(
        catalog, {3: NOW - timedelta(days=30)}, amis={("us-east-1", _fake_amis(6)["us-east-1"]): AmiState(False)}
    )
    actions = plan_prune(catalog, NOW, usage)
    assert {a.kind for a in actions} == {"skip"}
    assert "wrong account" in actions[0].note


def test_a_release_whose_amis_are_gone_leaves_only_the_catalog() -> None:
    catalog = _plan_catalog()
    gone = {(region, ami): AmiState(False) for region, ami in _fake_amis(3).items()}
    action = next(a for a in plan_prune(catalog, NOW, _usage(catalog, {}, amis=gone)) if a.version == 3)
    assert (action.kind, dict(action.amis), action.new_status) == ("retire", {}, "removed")


# -- prune on moto -----------------------------------------------------------------------------------------


def _amis(make_ami: MakeAmi, image: str, version: int) -> dict[str, str]:
    return {region: make_ami(region, f"{image}-{version}") for region in REGIONS}


def _snapshots(aws: AwsCloud, amis: dict[str, str]) -> dict[str, tuple[str, ...]]:
    found = {region: aws.describe_image(region, ami) for region, ami in amis.items()}
    return {region: d.snapshot_ids for region, d in found.items() if d is not None}


def _snapshot_exists(aws: AwsCloud, region: str, snapshot_id: str) -> bool:
    try:
        aws.get_snapshot_permissions(region, snapshot_id)
    except MissingResource:
        return False
    return True


@pytest.fixture
def four(make_ami: MakeAmi) -> dict[int, dict[str, str]]:
    """Four releases' AMIs for `web`, each in both regions."""
    return {v: _amis(make_ami, "web", v) for v in (1, 2, 3, 4)}


def _web(four: dict[int, dict[str, str]]) -> list[Release]:
    return [_release(v, four[v], "current" if v == 4 else "previous") for v in (1, 2, 3, 4)]


@pytest.mark.integration
def test_prune_deprecates_then_retires_after_the_grace_period(
    tmp_path: Path, aws: AwsCloud, four: dict[int, dict[str, str]]
) -> None:
    path = _write(tmp_path, {"web": _web(four)})
    before = path.read_text()
    snapshots = {v: _snapshots(aws, four[v]) for v in (1, 2)}

    report = prune(path, aws, now=NOW)
    # keep: 2 → v4 (current) and v3 stay; v2 and v1 are deprecated, in the catalog by their status lines only.
    assert _statuses(path, "web") == [(4, "current"), (3, "previous"), (2, "deprecated"), (1, "deprecated")]
    removed, added = changed_lines(before, path.read_text())
    assert removed == ["      status: previous\n"] * 2
    assert added == ["      status: deprecated\n"] * 2
    for version in (1, 2):
        for region, ami in four[version].items():
            details = aws.describe_image(region, ami)
            assert details is not None
            assert details.tags[DEPRECATED_AT_TAG] == "2026-11-27T12:00:00Z"
    # moto has no EnableImageDeprecation: prune says it fell back to the tag, once per region.
    assert [n for n in report.notes if "EnableImageDeprecation is not implemented" in n] == [
        f"EnableImageDeprecation is not implemented by this endpoint in {region} (moto answers HTTP 500): the AMIs "
        f"deprecated there carry only the tag {DEPRECATED_AT_TAG}=2026-11-27T12:00:00Z and stay in image listings"
        for region in sorted(REGIONS)
    ]
    report.raise_for_outcome()

    # Within the grace period nothing more happens.
    waiting = prune(path, aws, now=NOW + timedelta(days=13))
    assert {a.kind for a in waiting.actions} == {"wait"}
    deprecated_text = path.read_text()

    # After it, both are deregistered everywhere, their snapshots deleted, their items removed.
    done = prune(path, aws, now=NOW + timedelta(days=14))
    assert [(a.kind, a.version) for a in done.actions] == [("retire", 2), ("retire", 1)]
    assert all(o.done for o in done.outcomes)
    for version in (1, 2):
        for region, ami in four[version].items():
            assert aws.describe_image(region, ami) is None
            assert not any(_snapshot_exists(aws, region, s) for s in snapshots[version][region])
    for version in (3, 4):
        for region, ami in four[version].items():
            assert aws.describe_image(region, ami) is not None
    assert _statuses(path, "web") == [(4, "current"), (3, "previous")]
    removed, added = changed_lines(deprecated_text, path.read_text())
    assert added == []
    first = deprecated_text.index("    - version: 2\n")
    assert "".join(removed) == deprecated_text[first:]
    assert path.read_text() == deprecated_text[:first]


@pytest.mark.integration
def test_a_dry_run_prints_every_action_and_changes_nothing(
    tmp_path: Path, aws: AwsCloud, four: dict[int, dict[str, str]]
) -> None:
    web = _web(four)
    web[0] = web[0].model_copy(update={"status": "deprecated"})
    path = _write(tmp_path, {"web": web})
    aws.create_tags("us-east-1", [four[1]["us-east-1"]], {DEPRECATED_AT_TAG: iso(NOW - timedelta(days=30))})
    aws.create_tags("eu-west-1", [four[1]["eu-west-1"]], {DEPRECATED_AT_TAG: iso(NOW - timedelta(days=30))})
    before = path.read_text()
    aws.reset_call_counts()

    report = prune(path, aws, now=NOW, dry_run=True)
    assert path.read_text() == before
    calls = aws.call_counts()
    reads = {"DescribeImages", "DescribeLaunchTemplateVersions", "DescribeInstances", "DescribeAutoScalingGroups"}
    assert set(calls) <= reads | {"GetParameters"}
    text = "\n".join(report.lines())
    assert f"would deprecate web v2 (previous) → deprecated in the catalog: eu-west-1 {four[2]['eu-west-1']}" in text
    assert f"would retire web v1 (deprecated): deregister {four[1]['eu-west-1']} in eu-west-1, delete snap-" in text
    assert "remove it from the catalog" in text
    assert text.endswith("1 and retire 1 release(s); 0 refused, 0 failed; dry run, nothing changed")
    for region in REGIONS:
        assert aws.describe_image(region, four[1][region]) is not None
        details = aws.describe_image(region, four[2][region])
        assert details is not None
        assert DEPRECATED_AT_TAG not in details.tags


@pytest.mark.integration
def test_prune_refuses_a_release_in_use_and_still_prunes_the_others(
    tmp_path: Path, aws: AwsCloud, four: dict[int, dict[str, str]]
) -> None:
    web = [r.model_copy(update={"status": "deprecated"}) if r.version < 3 else r for r in _web(four)]
    path = _write(tmp_path, {"web": web})
    for version in (1, 2):
        for region, ami in four[version].items():
            aws.create_tags(region, [ami], {DEPRECATED_AT_TAG: iso(NOW - timedelta(days=30))})
    # v1 is still the default of a launch template in us-east-1 and runs an instance in eu-west-1.
    east = aws.ec2("us-east-1")
    template = east.create_launch_template(
        LaunchTemplateName="web-fleet", LaunchTemplateData={"ImageId": four[1]["us-east-1"]}
    )["LaunchTemplate"]["LaunchTemplateId"]
    instance = aws.run_instances("eu-west-1", four[1]["eu-west-1"], count=1, instance_type="t3.micro")[0]

    report = prune(path, aws, now=NOW)
    assert [(a.kind, a.version) for a in report.actions] == [("retire", 2), ("refuse", 1)]
    refused = report.refused[0]
    assert refused.blockers == (
        f"instance {instance.instance_id} (running) in eu-west-1",
        f"launch-template {template} (web-fleet version 1, $Default) in us-east-1",
    )
    with pytest.raises(PolicyError, match=r"refused to retire web v1: still in use") as caught:
        report.raise_for_outcome()
    assert caught.value.exit_code == 6
    # v2 went; v1 and its AMIs stay.
    assert _statuses(path, "web") == [(4, "current"), (3, "previous"), (1, "deprecated")]
    for region in REGIONS:
        assert aws.describe_image(region, four[2][region]) is None
        assert aws.describe_image(region, four[1][region]) is not None

    # A new $Latest version that moved off v1 does not free it: $Default still names it.
    east.create_launch_template_version(LaunchTemplateId=template, LaunchTemplateData={"ImageId": four[4]["us-east-1"]})
    aws.terminate_instances("eu-west-1", [instance.instance_id])
    assert [a.kind for a in prune(path, aws, now=NOW).actions] == ["refuse"]
    east.modify_launch_template(LaunchTemplateId=template, DefaultVersion="2")
    assert [a.kind for a in prune(path, aws, now=NOW).actions] == ["retire"]
    assert _statuses(path, "web") == [(4, "current"), (3, "previous")]


@pytest.mark.integration
def test_image_users_finds_templates_and_live_instances_only(aws: AwsCloud, make_ami: MakeAmi) -> None:
    used, other = make_ami("us-east-1", "web-1"), make_ami("us-east-1", "web-2")
    ec2 = aws.ec2("us-east-1")
    ec2.create_launch_template(LaunchTemplateName="a", LaunchTemplateData={"ImageId": used})
    ec2.create_launch_template(LaunchTemplateName="b", LaunchTemplateData={"ImageId": other})
    running = aws.run_instances("us-east-1", used, count=1, instance_type="t3.micro")[0]
    ended = aws.run_instances("us-east-1", used, count=1, instance_type="t3.micro")[0]
    aws.terminate_instances("us-east-1", [ended.instance_id])
    users = aws.image_users("us-east-1", [used])
    assert [(u.kind, u.resource_id if u.kind == "instance" else u.detail) for u in users] == [
        ("instance", running.instance_id),
        ("launch-template", "a version 1, $Default"),
    ]
    assert aws.image_users("eu-west-1", [used]) == []
    assert aws.image_users("us-east-1", []) == []


@pytest.mark.integration
def test_enable_image_deprecation_falls_back_only_where_it_is_missing(aws: AwsCloud, make_ami: MakeAmi) -> None:
    ami = make_ami("us-east-1", "web-1")
    assert aws.enable_image_deprecation("us-east-1", ami, NOW) is False
    # On AWS itself (no endpoint) the same answer is an error, never a silent fallback.
    aws.endpoint_url = None
    with pytest.raises(CloudError, match="EnableImageDeprecation in us-east-1"):
        aws.enable_image_deprecation("us-east-1", ami, NOW)


def test_a_failed_step_leaves_that_release_as_it_was_and_exits_5(tmp_path: Path) -> None:
    cloud = FakeCloud()
    amis = {v: {r: cloud.add_image(r, f"web-{v}").ami_id for r in REGIONS} for v in (1, 2, 3, 4)}
    web = [_release(v, amis[v], {4: "current", 3: "previous", 2: "previous", 1: "deprecated"}[v]) for v in (1, 2, 3, 4)]
    path = _write(tmp_path, {"web": web})
    for region, ami in amis[1].items():
        cloud.images[(region, ami)].tags[DEPRECATED_AT_TAG] = iso(NOW - timedelta(days=30))
    cloud.fail["DeregisterImage"] = CloudError("DeregisterImage in us-east-1 failed: RequestLimitExceeded")

    report = prune(path, cloud, now=NOW)
    assert [(o.action.kind, o.action.version, o.done) for o in report.outcomes] == [
        ("deprecate", 2, True),
        ("retire", 1, False),
    ]
    assert _statuses(path, "web") == [(4, "current"), (3, "previous"), (2, "deprecated"), (1, "deprecated")]
    assert cloud.lifecycle.deprecations == {(r, amis[2][r]): NOW for r in REGIONS}
    assert not [n for n in report.notes if "EnableImageDeprecation" in n]
    assert "FAILED to retire web v1" in "\n".join(report.lines())
    with pytest.raises(CloudError, match="prune failed for 1 release") as caught:
        report.raise_for_outcome()
    assert caught.value.exit_code == 5


# -- the prune command --------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_stamp_prune_exits_6_on_refusal_after_doing_the_rest(
    tmp_path: Path, aws: AwsCloud, four: dict[int, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    web = [r.model_copy(update={"status": "deprecated"}) if r.version < 3 else r for r in _web(four)]
    path = _write(tmp_path, {"web": web})
    for version in (1, 2):
        for region, ami in four[version].items():
            aws.create_tags(region, [ami], {DEPRECATED_AT_TAG: iso(NOW - timedelta(days=15))})
    aws.put_image_parameter("eu-west-1", parameter_name("web"), four[2]["eu-west-1"])

    assert main(["prune", "web", "--dry-run", "--catalog", str(path), "--cloud", "aws"]) == 6
    err = capsys.readouterr().err
    assert "would retire web v1" in err
    assert "REFUSED web v2 (deprecated): its grace period is over, but it is still in use:" in err
    assert f"SSM parameter /stamp/web/current in eu-west-1 still names {four[2]['eu-west-1']}" in err
    assert "run `stamp publish web` if the parameter lags" in err
    assert _statuses(path, "web")[-1] == (1, "deprecated")

    assert main(["prune", "--catalog", str(path), "--cloud", "aws", "--format", "json"]) == 6
    captured = capsys.readouterr()
    assert '"kind": "refuse"' in captured.out
    assert "stamp prune: refused to retire web v2" in captured.err
    assert _statuses(path, "web") == [(4, "current"), (3, "previous"), (2, "deprecated")]


# -- revoke: descendants and the plan ------------------------------------------------------------------------


def _family() -> dict[str, list[Release]]:
    """base v1, v2 (current); web v1 from base v1, web v2 and v3 (current) from base v2; api v1 from web v3;
    app v1 from base v2, but recorded by AMI only."""
    base = {v: _fake_amis(v) for v in (1, 2)}
    return {
        "base": [_release(1, base[1], "previous", source=None), _release(2, base[2], "current", source=None)],
        "web": [
            _release(1, _fake_amis(11), "previous", source=("base", 1)),
            _release(2, _fake_amis(12), "previous", source=("base", 2)),
            _release(3, _fake_amis(13), "current", source=("base", 2)),
        ],
        "api": [_release(1, _fake_amis(21), "current", source=("web", 3))],
        "app": [
            _release(1, _fake_amis(31), "current", source=None).model_copy(
                update={"source": ReleaseSource(amis={"us-east-1": base[2]["us-east-1"]})}
            )
        ],
    }


def test_descendants_are_found_by_name_and_by_ami_recursively() -> None:
    catalog = load_text(_text(_family()))
    # Parents first, then by image name; an image's releases newest first.
    found = find_descendants(catalog, "base", 2)
    assert [(d.image, d.version, d.built_from) for d in found] == [
        ("app", 1, ("base", 2)),
        ("web", 3, ("base", 2)),
        ("web", 2, ("base", 2)),
        ("api", 1, ("web", 3)),
    ]
    assert [d.key for d in find_descendants(catalog, "base", 1)] == [("web", 1)]
    assert [d.key for d in find_descendants(catalog, "web", 3)] == [("api", 1)]
    assert find_descendants(catalog, "api", 1) == []


def test_plan_revoke_moves_current_to_the_newest_previous_built_before_it() -> None:
    catalog = load_text(_text(_family()))
    plan = plan_revoke(catalog, "base", 2, "CVE-2026-1234 in sshd", with_descendants=True)
    assert [(r.image, r.version, r.status) for r in plan.revocations] == [
        ("base", 2, "current"),
        ("app", 1, "current"),
        ("web", 3, "current"),
        ("web", 2, "previous"),
        ("api", 1, "current"),
    ]
    assert plan.revocations[2].reason == "built from base v2: CVE-2026-1234 in sshd"
    assert plan.revocations[4].reason == "built from web v3, from base v2: CVE-2026-1234 in sshd"
    # web skips v2 (revoked too) for v1; app and api have nothing left.
    assert dict(plan.new_current) == {"base": 1, "web": 1, "app": None, "api": None}

    alone = plan_revoke(catalog, "base", 2, "  CVE  ", with_descendants=False)
    assert [(r.image, r.version) for r in alone.revocations] == [("base", 2)]
    assert alone.reason == "CVE"
    assert [d.key for d in alone.left_out] == [("app", 1), ("web", 3), ("web", 2), ("api", 1)]
    assert "  not revoked: api v1, built from web v3 (use --with-descendants)" in alone.lines()


def test_a_rolled_back_release_never_becomes_current_again() -> None:
    web = [
        _release(1, _fake_amis(1), "previous"),
        _release(2, _fake_amis(2), "current"),
        _release(3, _fake_amis(3), "previous"),  # the bad build rolled back from
    ]
    catalog = load_text(_text({"web": web}))
    assert next_current(catalog, "web") is not None
    assert next_current(catalog, "web").version == 1  # type: ignore[union-attr]
    # An older build recorded late has a higher version but is older: it counts by when it was built.
    late = [*web[:2], _release(3, _fake_amis(3), "previous", built_at="2026-11-01T11:00:00Z")]
    catalog = load_text(_text({"web": late}))
    assert plan_rollback(catalog, "web")[1].version == 1
    web_late = [*web[:2], _release(3, _fake_amis(3), "previous", built_at="2026-11-01T13:00:00Z")]
    assert plan_rollback(load_text(_text({"web": web_late})), "web")[1].version == 3


def test_revoke_needs_a_reason() -> None:
    catalog = load_text(_text(_family()))
    with pytest.raises(Exception, match="--reason must say why") as caught:
        plan_revoke(catalog, "base", 2, " ", with_descendants=False)
    assert getattr(caught.value, "exit_code", None) == 2
    with pytest.raises(CatalogError, match="image 'base' has no release 9"):
        plan_revoke(catalog, "base", 9, "x", with_descendants=False)


# -- revoke and rollback on moto ---------------------------------------------------------------------------


def _published(tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, statuses: dict[int, str]) -> tuple[Path, Any]:
    """`web` releases with fresh AMIs, published (shared, parameter set) as a release would leave them."""
    amis = {v: _amis(make_ami, "web", v) for v in statuses}
    path = _write(tmp_path, {"web": [_release(v, amis[v], s) for v, s in statuses.items()]})
    from stamp.cloud.sharing import publish

    publish(load_catalog(path, check_files=False), aws, None, dry_run=False)
    return path, amis


def _parameter(aws: AwsCloud, region: str) -> str | None:
    found = aws.get_parameters(region, [parameter_name("web")]).get(parameter_name("web"))
    return found.value if found else None


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_revoking_the_current_release_unshares_it_and_moves_the_parameter(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(tmp_path, aws, make_ami, {1: "previous", 2: "previous", 3: "current"})
    for region in REGIONS:
        assert aws.get_launch_permissions(region, amis[3][region]) == WEB_SHARE
        assert _parameter(aws, region) == amis[3][region]
    before = path.read_text()

    argv = ["revoke", "web", "3", "--reason", 'CVE-2026-1 "sshd"', "--yes", "--catalog", str(path), "--cloud", "aws"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "revoke web v3 (current): CVE-2026-1" in err
    assert "web: v2 becomes current; /stamp/web/current moves to it" in err
    assert "commit catalog.yaml" in err
    assert _statuses(path, "web") == [(3, "revoked"), (2, "current"), (1, "previous")]
    assert load_catalog(path, check_files=False).releases["web"][0].reason == 'CVE-2026-1 "sshd"'
    removed, added = changed_lines(before, path.read_text())
    assert sorted(removed) == ["      status: current\n", "      status: previous\n"]
    assert sorted(added) == [
        '      reason: "CVE-2026-1 \\"sshd\\""\n',
        "      status: current\n",
        "      status: revoked\n",
    ]
    for region in REGIONS:
        assert aws.get_launch_permissions(region, amis[3][region]) == ShareSet()
        assert aws.get_launch_permissions(region, amis[2][region]) == WEB_SHARE
        assert _parameter(aws, region) == amis[2][region]

    # lookup never answers with the revoked release, and names the reason when asked for it.
    assert main(["lookup", "web", "--region", "eu-west-1", "--catalog", str(path)]) == 0
    assert capsys.readouterr().out.strip() == amis[2]["eu-west-1"]
    assert main(["lookup", "web", "--version", "3", "--catalog", str(path)]) == 1
    assert 'web release 3 is revoked: CVE-2026-1 "sshd"' in capsys.readouterr().err


@pytest.mark.integration
def test_revoking_the_only_release_deletes_the_parameter(tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi) -> None:
    path, amis = _published(tmp_path, aws, make_ami, {1: "current"})
    catalog = load_catalog(path, check_files=False)
    report = revoke(path, aws, plan_revoke(catalog, "web", 1, "bad build", with_descendants=False))
    assert report.deleted_parameters == (("eu-west-1", "/stamp/web/current"), ("us-east-1", "/stamp/web/current"))
    for region in REGIONS:
        assert _parameter(aws, region) is None
        assert aws.get_launch_permissions(region, amis[1][region]) == ShareSet()
    assert main(["lookup", "web", "--catalog", str(path)]) == 1


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_revoke_asks_at_a_terminal_and_refuses_to_guess_elsewhere(
    tmp_path: Path,
    aws: AwsCloud,
    make_ami: MakeAmi,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = {v: _amis(make_ami, "base", v) for v in (1, 2)}
    web = {v: _amis(make_ami, "web", v) for v in (1, 2)}
    releases = {
        "base": [_release(1, base[1], "previous", source=None), _release(2, base[2], "current", source=None)],
        "web": [
            _release(1, web[1], "previous", source=("base", 1)),
            _release(2, web[2], "current", source=("base", 2)),
        ],
    }
    path = _write(tmp_path, releases)
    argv = ["revoke", "base", "2", "--reason", "CVE-2026-9", "--catalog", str(path), "--cloud", "aws"]

    # Not a terminal and no --yes: nothing changes, exit 2.
    before = path.read_text()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(argv) == 2
    assert "pass --yes to confirm" in capsys.readouterr().err
    assert path.read_text() == before

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    # At a terminal: declining the descendants, then the revocation itself, changes nothing.
    monkeypatch.setattr(sys, "stdin", Terminal("n\nn\n"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "web v2, built from base v2\nRevoke these too? [y/N] " in err
    assert "Revoke these too? [y/N] " in err
    assert path.read_text() == before

    # Yes to both: web v2 goes too, and web falls back to v1.
    monkeypatch.setattr(sys, "stdin", Terminal("y\ny\n"))
    assert main(argv) == 0
    assert _statuses(path, "base") == [(2, "revoked"), (1, "current")]
    assert _statuses(path, "web") == [(2, "revoked"), (1, "current")]
    assert load_catalog(path, check_files=False).releases["web"][0].reason == "built from base v2: CVE-2026-9"
    for region in REGIONS:
        assert aws.get_launch_permissions(region, web[2][region]) == ShareSet()
        assert _parameter(aws, region) == web[1][region]


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_revoke_with_yes_and_without_descendants_lists_them(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    releases = {
        "base": [_release(1, _amis(make_ami, "base", 1), "current", source=None)],
        "web": [_release(1, _amis(make_ami, "web", 1), "current", source=("base", 1))],
    }
    path = _write(tmp_path, releases)
    argv = ["revoke", "base", "1", "--reason", "oops", "--yes", "--catalog", str(path), "--cloud", "aws"]
    assert main([*argv, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "not revoked: web v1, built from base v1 (use --with-descendants)" in captured.err
    assert '"not_revoked": [' in captured.out
    assert _statuses(path, "web") == [(1, "current")]
    assert main([*argv, "--with-descendants"]) == 0
    assert _statuses(path, "web") == [(1, "revoked")]


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_rollback_goes_back_one_good_release_at_a_time(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(
        tmp_path, aws, make_ami, {1: "previous", 2: "deprecated", 3: "revoked", 4: "previous", 5: "current"}
    )
    argv = ["rollback", "web", "--catalog", str(path), "--cloud", "aws"]
    assert main(argv) == 0
    assert "rollback web: v4 is current; v5 is previous" in capsys.readouterr().err
    assert [s for s in _statuses(path, "web") if s[1] in ("current", "previous")] == [
        (5, "previous"),
        (4, "current"),
        (1, "previous"),
    ]
    for region in REGIONS:
        assert _parameter(aws, region) == amis[4][region]

    # Next: past the revoked v3 and the deprecated v2, to v1; never forward to v5.
    report = rollback(path, aws, "web")
    assert (report.previous_current, report.current) == (4, 1)
    for region in REGIONS:
        assert _parameter(aws, region) == amis[1][region]

    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "image 'web' has no previous good release to roll back to from v1" in err
    assert "v5 previous, v4 previous, v3 revoked, v2 deprecated" in err
    assert _statuses(path, "web")[-1] == (1, "current")


@pytest.mark.integration
def test_rollback_skips_a_release_whose_amis_are_gone(tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi) -> None:
    path, amis = _published(tmp_path, aws, make_ami, {1: "previous", 2: "previous", 3: "current"})
    aws.deregister_image("eu-west-1", amis[2]["eu-west-1"])
    report = rollback(path, aws, "web")
    assert report.current == 1
    assert _statuses(path, "web") == [(3, "previous"), (2, "previous"), (1, "current")]
