"""Rollout channels (docs/rollout.md): the configuration, the surgical edits, where a channel points, `stamp promote`
and its refusals, `--due`, the channel parameters publish keeps, lookup --channel, and the plan's `parent moved`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builders import build_result, changed_lines, load_text, with_releases
from conftest import NOW, MakeAmi
from stamp import clock
from stamp.catalog.edit import set_channel, set_forced, with_release
from stamp.catalog.load import load_catalog
from stamp.catalog.models import Release, ReleaseSource
from stamp.catalog.rebuilds import plan
from stamp.catalog.releases import channel_head, channel_release
from stamp.catalog.results import write_result
from stamp.cli import main
from stamp.cloud.aws import AwsCloud
from stamp.cloud.publish_policy import channel_parameter_name, parameter_name
from stamp.cloud.sharing import publish
from stamp.commands.plan import format_json
from stamp.commands.promote import due_promotions, plan_promotion
from stamp.commands.prune import AmiState, Usage, plan_prune
from stamp.commands.record import release_from_result
from stamp.errors import CatalogProblems, PolicyError
from stamp.tags import BUILD_ID_TAG, IMAGE_TAG, VERIFIED, VERIFIED_TAG

REGIONS = ("us-east-1", "eu-west-1")
SOAKED = "2026-11-19T12:00:00Z"  # eight days before NOW: past a seven-day soak
FRESH = "2026-11-25T12:00:00Z"  # two days before NOW

HEAD = """\
# rollout test catalog
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
  retention: {keep: 1, grace_days: 14}
  channels:
    candidate: {}
    stable: {after: candidate, soak_days: 7}
images:
  base:
    source: {filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}}
  web:
    parent: base
    share: {accounts: ["111122223333"]}

releases: {}   # written by stamp
"""


def _release(
    version: int,
    amis: dict[str, str],
    status: str,
    channels: dict[str, str] | None = None,
    *,
    source: tuple[str, int] | None = ("base", 1),
) -> Release:
    return Release(
        version=version,
        amis=amis,
        built_at=f"2026-11-{version:02d}T12:00:00Z",
        commit="1a2b3c4d5e6f",
        build_id=f"build-{version}-abcdef",
        source=ReleaseSource(image=source[0], version=source[1])
        if source
        else ReleaseSource(amis={"us-east-1": "ami-00000000000000001"}),
        verified="passed",
        status=status,
        channels=channels,
    )


def _fake(version: int) -> dict[str, str]:
    return {region: f"ami-{version:08x}{n:09x}" for n, region in enumerate(REGIONS, start=1)}


def _text(releases: dict[str, list[Release]], head: str = HEAD) -> str:
    return with_releases(head, releases)


# A base release in both channels, and web releases: v2 soaked in candidate, v3 fresh and current.
def _standard(base_channels: dict[str, str] | None = None) -> dict[str, list[Release]]:
    return {
        "base": [
            _release(1, _fake(11), "current", base_channels or {"candidate": SOAKED, "stable": SOAKED}, source=None)
        ],
        "web": [
            _release(1, _fake(1), "previous", {"candidate": SOAKED, "stable": SOAKED}),
            _release(2, _fake(2), "previous", {"candidate": SOAKED}),
            _release(3, _fake(3), "current", {"candidate": FRESH}),
        ],
    }


# -- the configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ("{candidate: {after: stable}, stable: {}}", "the first channel, 'candidate', is where recorded releases"),
        ("{candidate: {}, stable: {soak_days: 7}}", "channel 'stable' needs `after:` naming a channel listed before"),
        ("{candidate: {}, stable: {after: beta}}", "channel 'stable' needs `after:` naming a channel listed before"),
        ("{}", "name at least one channel"),
        ("{candidate: {}, Stable: {after: candidate}}", "'Stable' is not valid"),
    ],
)
def test_channel_settings_are_checked(channels: str, message: str) -> None:
    text = HEAD.replace(
        "  channels:\n    candidate: {}\n    stable: {after: candidate, soak_days: 7}\n", f"  channels: {channels}\n"
    )
    with pytest.raises(CatalogProblems) as caught:
        load_text(text)
    assert message in str(caught.value)
    assert "defaults.channels" in str(caught.value)


def test_a_release_may_name_only_its_images_channels() -> None:
    text = _text({"web": [_release(1, _fake(1), "current", {"beta": SOAKED})]})
    with pytest.raises(CatalogProblems, match=r"releases\.web\[0\]\.channels\.beta: no channel 'beta': 'web' has"):
        load_text(text)


def test_an_image_overrides_the_default_channels_as_a_whole() -> None:
    text = HEAD.replace("    share: {accounts", "    channels: {edge: {}}\n    share: {accounts")
    catalog = load_text(text)
    assert [name for name, _ in catalog.images["web"].channels] == ["edge"]
    assert [name for name, _ in catalog.images["base"].channels] == ["candidate", "stable"]


# -- the surgical edits ------------------------------------------------------------------------------------


def test_a_recorded_release_enters_the_first_channel_on_one_line() -> None:
    result = build_result(started_at="2026-11-27T11:00:00Z")
    release = release_from_result(result, load_text(HEAD), now=NOW)
    assert release.channels == {"candidate": "2026-11-27T12:00:00Z"}
    out = with_release(HEAD, "web", release)
    assert '      status: current\n      channels: {candidate: "2026-11-27T12:00:00Z"}\n' in out
    assert load_text(out).releases["web"][0] == release
    # Without channels, nothing of them is written.
    plain = HEAD.replace("  channels:\n    candidate: {}\n    stable: {after: candidate, soak_days: 7}\n", "")
    assert release_from_result(result, load_text(plain), now=NOW).channels is None
    assert "channels" not in with_release(plain, "web", release_from_result(result, load_text(plain), now=NOW))


def test_set_channel_changes_only_the_channels_line_of_that_release() -> None:
    text = _text(_standard())
    out = set_channel(text, "web", 2, "stable", "2026-11-27T12:00:00Z")
    removed, added = changed_lines(text, out)
    assert removed == ['      channels: {candidate: "2026-11-19T12:00:00Z"}\n']
    assert added == ['      channels: {candidate: "2026-11-19T12:00:00Z", stable: "2026-11-27T12:00:00Z"}\n']
    assert load_text(out).releases["web"][1].channels == {"candidate": SOAKED, "stable": "2026-11-27T12:00:00Z"}


def test_set_channel_adds_the_line_at_the_end_of_a_release_without_one() -> None:
    text = _text({"web": [_release(2, _fake(2), "current"), _release(1, _fake(1), "previous")]})
    out = set_channel(text, "web", 2, "candidate", SOAKED)
    removed, added = changed_lines(text, out)
    assert removed == []
    assert added == ['      channels: {candidate: "2026-11-19T12:00:00Z"}\n']
    assert out.index(added[0]) < out.index("    - version: 1\n")
    # A file without a final line break keeps its last line whole.
    last = set_channel(text.rstrip("\n"), "web", 1, "candidate", SOAKED)
    assert last.endswith('      status: previous\n      channels: {candidate: "2026-11-19T12:00:00Z"}\n')
    assert load_text(last).releases["web"][1].channels == {"candidate": SOAKED}


def test_set_channel_reads_a_block_style_value_and_keeps_crlf() -> None:
    text = _text({"web": [_release(1, _fake(1), "current", {"candidate": SOAKED})]})
    block = text.replace(
        '      channels: {candidate: "2026-11-19T12:00:00Z"}\n',
        "      channels:\n        candidate: '2026-11-19T12:00:00Z'\n",
    )
    out = set_channel(block.replace("\n", "\r\n"), "web", 1, "stable", "2026-11-27T12:00:00Z")
    assert '      channels: {candidate: "2026-11-19T12:00:00Z", stable: "2026-11-27T12:00:00Z"}\r\n' in out
    assert "\n" not in out.replace("\r\n", "")


def test_set_forced_records_the_reason_quoted() -> None:
    text = _text(_standard())
    out = set_forced(text, "web", 3, "stable", 'CVE-2026-1 "sshd": skip the soak')
    removed, added = changed_lines(text, out)
    assert removed == []
    assert added == ['      forced: {stable: "CVE-2026-1 \\"sshd\\": skip the soak"}\n']
    assert load_text(out).releases["web"][0].forced == {"stable": 'CVE-2026-1 "sshd": skip the soak'}


# -- where a channel points --------------------------------------------------------------------------------


def test_a_channel_points_at_its_newest_good_release_never_a_revoked_or_rolled_away_one() -> None:
    releases = [
        _release(3, _fake(3), "previous", {"candidate": SOAKED, "stable": SOAKED}),  # rolled back from
        _release(2, _fake(2), "current", {"candidate": SOAKED, "stable": SOAKED}),
        _release(1, _fake(1), "previous", {"candidate": SOAKED, "stable": SOAKED}),
    ]
    assert channel_head(releases, "stable") == releases[1]
    revoked = [releases[0], releases[1].model_copy(update={"status": "revoked"}), releases[2]]
    # No current release left: the newest good one.
    assert channel_head(revoked, "stable") == releases[0]
    assert channel_head([r.model_copy(update={"status": "revoked"}) for r in releases], "stable") is None
    assert channel_head(releases, "beta") is None


# -- promote: the pure plan ----------------------------------------------------------------------------------


def test_promotion_defaults_to_what_the_after_channel_points_at() -> None:
    catalog = load_text(_text(_standard()))
    with pytest.raises(PolicyError, match="refusing to promote web v3 to stable: it has been in candidate since"):
        plan_promotion(catalog, "web", "stable", now=NOW)
    promotion = plan_promotion(catalog, "web", "stable", 2, now=NOW)
    assert (promotion.version, promotion.after, promotion.since, promotion.forced) == (2, "candidate", SOAKED, None)
    assert plan_promotion(catalog, "web", "stable", 1, now=NOW).already == SOAKED


def test_due_promotes_a_parent_first_so_its_child_follows() -> None:
    releases = _standard(base_channels={"candidate": SOAKED})
    releases["web"][1] = _release(2, _fake(2), "previous", {"candidate": SOAKED})
    text = _text(releases)
    catalog = load_text(text)
    with pytest.raises(PolicyError, match="its parent release base v1 is not in stable"):
        plan_promotion(catalog, "web", "stable", 2, now=NOW)
    edited, due, pending = due_promotions(text, catalog, NOW)
    assert [(p.image, p.version, p.channel) for p in due] == [("base", 1, "stable"), ("web", 2, "stable")]
    assert [(p.image, p.version, p.until) for p in pending] == [("web", 3, "2026-12-02T12:00:00Z")]
    after = load_text(edited)
    assert channel_release(after, "web", "stable") == after.releases["web"][1]


# -- the CLI on moto ---------------------------------------------------------------------------------------


def _amis(make_ami: MakeAmi, image: str, version: int) -> dict[str, str]:
    return {region: make_ami(region, f"{image}-{version}") for region in REGIONS}


def _published(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, base_channels: dict[str, str] | None = None
) -> tuple[Path, dict[str, dict[int, dict[str, str]]]]:
    """_standard() with real AMIs, published as a release leaves them."""
    releases = _standard(base_channels)
    amis: dict[str, dict[int, dict[str, str]]] = {}
    for image, items in releases.items():
        amis[image] = {r.version: _amis(make_ami, image, r.version) for r in items}
        releases[image] = [r.model_copy(update={"amis": amis[image][r.version]}) for r in items]
    path = tmp_path / "catalog.yaml"
    path.write_text(_text(releases), encoding="utf-8")
    publish(load_catalog(path, check_files=False), aws, None, dry_run=False)
    return path, amis


def _parameter(aws: AwsCloud, name: str, region: str = "us-east-1") -> str | None:
    found = aws.get_parameters(region, [name]).get(name)
    return found.value if found else None


def _promote(path: Path, *args: str) -> int:
    return main(["promote", *args, "--catalog", str(path), "--cloud", "aws"])


def _refused(path: Path, *args: str) -> None:
    """Runs a promotion that must be refused (exit 6) without touching the catalog."""
    before = path.read_bytes()
    assert _promote(path, *args) == 6
    assert path.read_bytes() == before


def _edit(path: Path, image: str, version: int, old: str, new: str) -> None:
    """Replaces `old` by `new` in one release's lines of the catalog, as a hand edit would."""
    text = path.read_text()
    start = text.index(f"\n  {image}:", text.index("\nreleases:"))
    at = text.index(f"- version: {version}\n", start)
    end = text.find("- version:", at + 1)
    end = len(text) if end < 0 else end
    assert old in text[at:end]
    path.write_text(text[:at] + text[at:end].replace(old, new, 1) + text[end:], encoding="utf-8")


STABLE = channel_parameter_name("web", "stable")
CANDIDATE = channel_parameter_name("web", "candidate")


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_publish_keeps_a_parameter_per_channel_in_every_region_written_once(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(tmp_path, aws, make_ami)
    for region in REGIONS:
        assert _parameter(aws, STABLE, region) == amis["web"][1][region]
        assert _parameter(aws, CANDIDATE, region) == amis["web"][3][region]
        assert _parameter(aws, parameter_name("web"), region) == amis["web"][3][region]
        assert _parameter(aws, channel_parameter_name("base", "stable"), region) == amis["base"][1][region]
    # The second publish writes nothing: the channel parameters are read with the others (one GetParameters call
    # per region) and are already right.
    aws.reset_call_counts()
    second = publish(load_catalog(path, check_files=False), aws, None, dry_run=False)
    assert second.modify_calls == 0 and not second.changes
    counts = aws.call_counts()
    assert "PutParameter" not in counts
    assert counts["GetParameters"] == len(REGIONS)
    assert main(["publish", "--catalog", str(path), "--cloud", "aws", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["modify_calls"] == 0

    assert main(["lookup", "web", "--channel", "stable", "--region", "eu-west-1", "--catalog", str(path)]) == 0
    assert capsys.readouterr().out.strip() == amis["web"][1]["eu-west-1"]
    assert main(["lookup", "web", "--channel", "stable", "--format", "json", "--catalog", str(path)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["version"], found["channel"], found["amis"]) == (1, "stable", amis["web"][1])
    assert main(["lookup", "web", "--channel", "beta", "--catalog", str(path)]) == 1
    assert "image 'web' has no channel 'beta'" in capsys.readouterr().err
    assert main(["lookup", "web", "--channel", "stable", "--version", "1", "--catalog", str(path)]) == 2


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_promote_edits_the_catalog_and_publish_moves_the_channel(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(tmp_path, aws, make_ami)
    before = path.read_text()
    assert _promote(path, "web", "--to", "stable", "--version", "2") == 0
    err = capsys.readouterr().err
    assert "promoted web v2 to stable (in candidate since 2026-11-19T12:00:00Z, soak_days 7)" in err
    assert f"`stamp publish` moves {STABLE}" in err
    removed, added = changed_lines(before, path.read_text())
    assert removed == ['      channels: {candidate: "2026-11-19T12:00:00Z"}\n']
    assert added == ['      channels: {candidate: "2026-11-19T12:00:00Z", stable: "2026-11-27T12:00:00Z"}\n']
    # Nothing moves for consumers until the merge's publish.
    assert _parameter(aws, STABLE) == amis["web"][1]["us-east-1"]
    aws.reset_call_counts()
    report = publish(load_catalog(path, check_files=False), aws, None, dry_run=False)
    assert f"  ~ parameter {STABLE} {amis['web'][1]['us-east-1']} -> {amis['web'][2]['us-east-1']}" in report.lines()
    assert aws.call_counts()["PutParameter"] == len(REGIONS)
    assert report.calls == {"PutParameter": len(REGIONS)}
    for region in REGIONS:
        assert _parameter(aws, STABLE, region) == amis["web"][2][region]
    # Promoting it again changes nothing.
    text = path.read_bytes()
    assert _promote(path, "web", "--to", "stable", "--version", "2") == 0
    assert "web v2 is in stable already" in capsys.readouterr().err
    assert path.read_bytes() == text


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_every_refusal_exits_6_and_leaves_the_catalog_alone(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, base_channels={"candidate": SOAKED})

    def refused(*args: str) -> str:
        capsys.readouterr()
        _refused(path, *args)
        return capsys.readouterr().err

    # Ancestry: web v2 has soaked, but base v1 is only a candidate; --force overrides the soak only, not this.
    err = refused("web", "--to", "stable", "--version", "2")
    assert "refusing to promote web v2 to stable: its parent release base v1 is not in stable" in err
    assert "promote base v1 to stable first" in err
    err = refused("web", "--to", "stable", "--version", "3", "--force", "--reason", "hotfix")
    assert "its parent release base v1 is not in stable" in err
    _edit(path, "base", 1, '"2026-11-19T12:00:00Z"}', '"2026-11-19T12:00:00Z", stable: "2026-11-19T12:00:00Z"}')
    # Before the soak time: v3 entered candidate two days ago.
    err = refused("web", "--to", "stable")
    assert "refusing to promote web v3 to stable: it has been in candidate since 2026-11-25T12:00:00Z" in err
    assert "until 2026-12-02T12:00:00Z" in err and "--force" in err
    # Not in the channel before: the release must be in candidate first.
    _edit(path, "web", 2, '      channels: {candidate: "2026-11-19T12:00:00Z"}\n', "")
    err = refused("web", "--to", "stable", "--version", "2")
    assert "it is not in candidate, the channel before stable" in err
    # A revoked or a deprecated release.
    for was, status in (("previous", "revoked"), ("revoked", "deprecated")):
        _edit(path, "web", 2, f"      status: {was}\n", f"      status: {status}\n")
        err = refused("web", "--to", "stable", "--version", "2")
        assert f"refusing to promote web v2 to stable: it is {status}" in err
    # Usage errors: --force without a reason, a reason without --force, --apply without --due.
    capsys.readouterr()
    assert _promote(path, "web", "--to", "stable", "--force") == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert _promote(path, "web", "--to", "stable", "--reason", "why") == 2
    assert _promote(path, "web", "--to", "stable", "--apply") == 2
    assert _promote(path, "web") == 2


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_promotion_backwards_or_from_a_rolled_away_release_is_refused(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami)
    assert _promote(path, "web", "--to", "stable", "--version", "2") == 0
    capsys.readouterr()
    # A release older than the one stable points at is refused (v1 taken out of stable by hand first).
    _edit(path, "web", 1, ', stable: "2026-11-19T12:00:00Z"}', "}")
    _refused(path, "web", "--to", "stable", "--version", "1")
    assert "stable points at v2, which is newer" in capsys.readouterr().err
    # After a rollback from v3 to v2, v3 is newer than the current release.
    assert main(["rollback", "web", "--catalog", str(path), "--cloud", "aws"]) == 0
    capsys.readouterr()
    _refused(path, "web", "--to", "stable", "--version", "3", "--force", "--reason", "hotfix")
    assert "it is newer than the current release v2: a rollback moved away from it" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_force_with_a_reason_skips_the_soak_and_records_why(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(tmp_path, aws, make_ami)
    before = path.read_text()
    assert _promote(path, "web", "--to", "stable", "--force", "--reason", "CVE-2026-1 fix", "--format", "json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["version"], out["forced"], out["until"]) == (3, "CVE-2026-1 fix", "2026-12-02T12:00:00Z")
    removed, added = changed_lines(before, path.read_text())
    assert removed == ['      channels: {candidate: "2026-11-25T12:00:00Z"}\n']
    assert added == [
        '      channels: {candidate: "2026-11-25T12:00:00Z", stable: "2026-11-27T12:00:00Z"}\n',
        '      forced: {stable: "CVE-2026-1 fix"}\n',
    ]
    assert main(["publish", "--catalog", str(path), "--cloud", "aws"]) == 0
    assert _parameter(aws, STABLE) == amis["web"][3]["us-east-1"]


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_due_lists_then_applies_what_has_soaked(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, base_channels={"candidate": SOAKED})
    before = path.read_bytes()
    assert _promote(path, "--due") == 0
    err = capsys.readouterr().err
    assert "due base v1 to stable (in candidate since 2026-11-19T12:00:00Z, soak_days 7)" in err
    assert "due web v2 to stable" in err
    assert "not yet web v3 to stable: in candidate since 2026-11-25T12:00:00Z, soak_days 7, due at 2026-12-02" in err
    assert "2 promotion(s) due; `stamp promote --due --apply` makes them" in err
    assert path.read_bytes() == before
    # Only one image: web's parent is not promoted, so web is blocked.
    assert _promote(path, "--due", "web", "--format", "json") == 0
    only = json.loads(capsys.readouterr().out)
    assert only["due"] == []
    assert [(p["version"], p["why"]) for p in only["pending"] if p["until"] is None] == [
        (2, "its parent release base v1 is not in stable")
    ]

    assert _promote(path, "--due", "--apply") == 0
    assert "2 promotion(s) made" in capsys.readouterr().err
    catalog = load_catalog(path, check_files=False)
    assert channel_release(catalog, "web", "stable") == catalog.releases["web"][1]
    assert channel_release(catalog, "base", "stable") == catalog.releases["base"][0]
    assert _promote(path, "--due", "--apply") == 0
    assert "no promotion is due" in capsys.readouterr().err
    assert _promote(path, "--due", "--to", "stable") == 2


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_revoke_falls_back_in_each_channel_and_restore_and_rollback_keep_them_consistent(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, amis = _published(tmp_path, aws, make_ami)
    assert _promote(path, "web", "--to", "stable", "--version", "2") == 0
    assert main(["publish", "--catalog", str(path), "--cloud", "aws"]) == 0
    assert _parameter(aws, STABLE) == amis["web"][2]["us-east-1"]
    capsys.readouterr()

    revoke = ["revoke", "web", "2", "--reason", "CVE-2026-2", "--yes", "--catalog", str(path), "--cloud", "aws"]
    assert main(revoke) == 0
    err = capsys.readouterr().err
    assert f"web: channel stable falls back to v1; {STABLE} moves to it" in err
    for region in REGIONS:
        assert _parameter(aws, STABLE, region) == amis["web"][1][region]
        assert _parameter(aws, CANDIDATE, region) == amis["web"][3][region]
    assert main(["lookup", "web", "--channel", "stable", "--region", "us-east-1", "--catalog", str(path)]) == 0
    assert capsys.readouterr().out.strip() == amis["web"][1]["us-east-1"]

    # Revoking the last good release in stable deletes its parameter: never one naming a revoked AMI.
    assert main([*revoke[:2], "1", *revoke[3:]]) == 0
    assert "no good release is left in channel stable" in capsys.readouterr().err
    for region in REGIONS:
        assert _parameter(aws, STABLE, region) is None
    assert main(["lookup", "web", "--channel", "stable", "--catalog", str(path)]) == 1
    assert "no good release in channel 'stable'" in capsys.readouterr().err

    # Restoring v2 puts stable back on it.
    assert main(["restore", "web", "2", "--reason", "not affected", "--catalog", str(path), "--cloud", "aws"]) == 0
    assert _parameter(aws, STABLE) == amis["web"][2]["us-east-1"]
    # A rollback of the current release moves the candidate channel back with it.
    assert main(["rollback", "web", "--catalog", str(path), "--cloud", "aws"]) == 0
    for region in REGIONS:
        assert _parameter(aws, CANDIDATE, region) == amis["web"][2][region]
        assert _parameter(aws, parameter_name("web"), region) == amis["web"][2][region]


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_record_puts_a_new_release_in_the_first_channel(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami)
    build_id = "web-20261127110000-abcdef"
    amis = _amis(make_ami, "web", 4)
    for region, ami_id in amis.items():
        aws.create_tags(region, [ami_id], {BUILD_ID_TAG: build_id, IMAGE_TAG: "web", VERIFIED_TAG: VERIFIED})
    result = build_result(build_id=build_id, amis=amis, started_at="2026-11-27T11:00:00Z")
    write_result(tmp_path / "build", result)
    before = path.read_text()
    argv = ["record", "web", "--catalog", str(path), "--cloud", "aws", "--out", str(tmp_path / "build")]
    assert main(argv) == 0
    assert "in channel candidate" in capsys.readouterr().err
    removed, added = changed_lines(before, path.read_text())
    assert removed == ["      status: current\n"]
    assert added[-1] == "      status: previous\n"
    new = '      status: current\n      channels: {candidate: "2026-11-27T12:00:00Z"}\n    - version: 3\n'
    assert new in path.read_text()
    assert load_catalog(path, check_files=False).releases["web"][0].channels == {"candidate": "2026-11-27T12:00:00Z"}


def test_prune_keeps_the_release_a_channel_points_at() -> None:
    releases = {
        "web": [
            _release(3, _fake(3), "current", {"candidate": SOAKED}),
            _release(2, _fake(2), "previous", {"candidate": SOAKED}),
            _release(1, _fake(1), "previous", {"candidate": SOAKED, "stable": SOAKED}),
        ]
    }
    usage = Usage(amis={(region, ami): AmiState(True) for r in releases["web"] for region, ami in r.amis.items()})
    with_channels = plan_prune(load_text(_text(releases)), NOW, usage, ["web"])
    assert [(a.kind, a.version) for a in with_channels] == [("deprecate", 2)]
    plain = HEAD.replace("  channels:\n    candidate: {}\n    stable: {after: candidate, soak_days: 7}\n", "")
    bare = {"web": [r.model_copy(update={"channels": None}) for r in releases["web"]]}
    assert [(a.kind, a.version) for a in plan_prune(load_text(_text(bare, plain)), NOW, usage, ["web"])] == [
        ("deprecate", 2),
        ("deprecate", 1),
    ]


# -- plan: parent moved ------------------------------------------------------------------------------------


def _plan_text(**changes: Any) -> str:
    from test_plan import TEXT

    base_v2 = """\
  base:
    - version: 2
      amis: {us-east-1: ami-0b00000000000000c, eu-west-1: ami-0b00000000000000d}
      built_at: "2026-11-22T12:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: base-2-aaaaaa
      source: {amis: {us-east-1: ami-0aaaaaaaaaaaaaaa1, eu-west-1: ami-0aaaaaaaaaaaaaaa2}}
      verified: passed
      status: V2
"""
    text: str = TEXT.replace(
        "releases:\n  base:\n", "releases:\n" + base_v2.replace("V2", changes.get("v2", "current"))
    )
    return text.replace("      status: current\n  web:", f"      status: {changes.get('v1', 'previous')}\n  web:", 1)


def test_a_child_on_a_parent_release_that_is_no_longer_current_has_parent_moved() -> None:
    from test_plan import NOW as PLAN_NOW
    from test_plan import catalog, reasons

    moved = catalog(_plan_text())
    result = plan(moved, moved, [], source_lookup=None, now=PLAN_NOW)
    assert reasons(result) == {
        "web": [("parent_moved", "v1 is built on base v1; base's current release is v2")],
        "site": [("parent_rebuilt", "web")],
    }
    assert result.layers() == [["web"], ["site"]]
    data = json.loads(format_json(result))
    assert data["images"][0]["reasons"] == [
        {"kind": "parent_moved", "detail": "v1 is built on base v1; base's current release is v2"}
    ]
    # After a rollback of base to v1, web stands on the parent consumers get again: nothing to build.
    back = catalog(_plan_text(v2="previous", v1="current"))
    assert plan(back, back, [], source_lookup=None, now=PLAN_NOW).images == ()
    # A parent with no current release (all revoked) is `no release yet` for the parent, not `parent moved`.
    gone = catalog(_plan_text(v2="revoked", v1="revoked"))
    found = reasons(plan(gone, gone, [], source_lookup=None, now=PLAN_NOW))
    assert found["web"] == [("parent_rebuilt", "base")]


def test_a_catalog_without_channels_has_nothing_to_promote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = HEAD.replace("  channels:\n    candidate: {}\n    stable: {after: candidate, soak_days: 7}\n", "")
    path = tmp_path / "catalog.yaml"
    path.write_text(_text({"web": [_release(1, _fake(1), "current")]}, plain), encoding="utf-8")
    before = path.read_bytes()
    assert _promote(path, "web", "--to", "stable") == 1
    err = capsys.readouterr().err
    assert "image 'web' has no channel 'stable'" in err and "define defaults.channels" in err
    assert _promote(path, "--due", "--apply") == 0
    assert "no promotion is due" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["lookup", "web", "--channel", "stable", "--catalog", str(path)]) == 1


def test_force_when_the_soak_is_over_records_no_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(_text(_standard()), encoding="utf-8")
    monkeypatch.setattr(clock, "utc_now", lambda: NOW)
    assert _promote(path, "web", "--to", "stable", "--version", "2", "--force", "--reason", "just in case") == 0
    assert "--force changed nothing and its reason is not recorded" in capsys.readouterr().err
    assert "forced" not in path.read_text()
