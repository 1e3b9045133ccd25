"""`stamp record`: the surgical text edit (byte for byte, and by property), the checks, the lock and the write."""

from __future__ import annotations

import multiprocessing
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import build_result, changed_lines, load_text
from conftest import REPO
from stamp.catalog.edit import set_status, with_release
from stamp.catalog.load import load_catalog
from stamp.catalog.models import Release, ReleaseSource
from stamp.catalog.results import BuildResult
from stamp.catalog.store import lock_path
from stamp.commands import record as record_command
from stamp.commands.record import record, release_from_result
from stamp.errors import CatalogError

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
AMIS = {"us-east-1": "ami-0123456789abcdef0", "eu-west-1": "ami-0fedcba9876543210"}

# A catalog stamp has recorded into before, then people commented on: every byte outside the edited lines
# must survive, including odd-but-valid layouts (compact lists, four-space indents, quoted values, comments).
RICH = """\
# top comment
version: 1
defaults:   # defaults comment
  regions: [us-east-1, eu-west-1]
images:
  base:
    source: {filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}}
    share: {accounts: ["111122223333"]}   # keep this comment
  web:
    parent: base
  app:
    parent: base

releases:     # written by stamp record
  # base is the root of everything
  base:
    - version: 2
      amis: {us-east-1: ami-0123456789abcdef0, eu-west-1: ami-0fedcba9876543210}
      built_at: "2026-11-20T10:00:00Z"
      commit: "1a2b3c4d5e6f"
      build_id: base-2-aaaaaa
      source: {amis: {us-east-1: ami-00000000000000001}}
      verified: passed
      status: current      # promoted after the CVE fix

    - version: 1
      amis: {us-east-1: ami-0123456789abcdef1, eu-west-1: ami-0fedcba9876543211}
      built_at: '2026-11-01T10:00:00Z'
      commit: abcdef1
      build_id: base-1-bbbbbb
      source: {amis: {us-east-1: ami-00000000000000000}}
      verified: passed
      status: previous
  web:
  - version: 1    # compact list style
    amis:
        us-east-1: ami-0123456789abcdef2
        eu-west-1: ami-0fedcba9876543212
    built_at: "2026-11-21T10:00:00Z"
    commit: "123456"
    build_id: "web-1-cccccc"
    source: {image: base, version: 2}
    verified: passed
    status: "current"
# trailing comment at column 0
"""


def _release(version: int, *, built_at: str = "2026-11-26T15:00:00Z", **changes: Any) -> Release:
    fields: dict[str, Any] = {
        "version": version,
        "amis": AMIS,
        "built_at": built_at,
        "commit": "0123456",
        "build_id": f"web-{version}-dddddd",
        "source": ReleaseSource(image="base", version=2),
        "verified": "passed",
        "status": "current",
    }
    return Release(**(fields | changes))


# -- with_release, byte for byte -------------------------------------------------------------------------


def test_the_repository_catalog_changes_only_its_releases_line() -> None:
    text = (REPO / "catalog.yaml").read_text(encoding="utf-8")
    out = with_release(text, "web", _release(1))
    prefix = text[: text.index("\nreleases:") + 1]
    assert out.startswith(prefix)
    removed, added = changed_lines(text, out)
    assert removed == [line for line in text.splitlines(keepends=True) if line.startswith("releases:")]
    assert added[0].rstrip() == "releases:"
    assert "".join(added[1:]) == (
        "  web:\n"
        "    - version: 1\n"
        "      amis:\n"
        "        us-east-1: ami-0123456789abcdef0\n"
        "        eu-west-1: ami-0fedcba9876543210\n"
        '      built_at: "2026-11-26T15:00:00Z"\n'
        '      commit: "0123456"\n'
        '      build_id: "web-1-dddddd"\n'
        "      source: {image: base, version: 2}\n"
        "      verified: passed\n"
        "      status: current\n"
    )
    catalog = load_catalog(_write(out, REPO))
    assert catalog.releases["web"] == (_release(1),)


def _write(text: str, folder: Path) -> Path:
    # load_catalog checks referenced files, so the edited repository catalog is loaded from beside the original.
    path = folder / ".test-record-catalog.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _clean_repo_copy() -> Any:
    yield
    (REPO / ".test-record-catalog.yaml").unlink(missing_ok=True)


def test_a_new_current_release_goes_first_and_flips_only_the_old_status_line() -> None:
    out = with_release(RICH, "base", _release(3, build_id="base-3-eeeeee"))
    removed, added = changed_lines(RICH, out)
    assert removed == ["      status: current      # promoted after the CVE fix\n"]
    assert added[-1] == "      status: previous      # promoted after the CVE fix\n"
    block = "".join(added[:-1])
    assert block.startswith("    - version: 3\n")
    assert out.index("    - version: 3\n") < out.index("    - version: 2\n")
    catalog = load_text(out)
    assert [(r.version, r.status) for r in catalog.releases["base"]] == [
        (3, "current"),
        (2, "previous"),
        (1, "previous"),
    ]
    assert catalog.releases["web"][0].status == "current"


def test_compact_lists_and_quoted_status_are_edited_in_their_own_style() -> None:
    out = with_release(RICH, "web", _release(2))
    removed, added = changed_lines(RICH, out)
    assert removed == ['    status: "current"\n']
    assert added[-1] == "    status: previous\n"
    assert "  - version: 2\n    amis:\n" in out
    assert [(r.version, r.status) for r in load_text(out).releases["web"]] == [(2, "current"), (1, "previous")]


def test_a_new_image_is_appended_to_the_section_before_trailing_comments() -> None:
    out = with_release(RICH, "app", _release(1, build_id="app-1-ffffff"))
    removed, added = changed_lines(RICH, out)
    assert removed == []
    assert added[0] == "  app:\n"
    assert out.endswith("# trailing comment at column 0\n")
    assert load_text(out).releases["app"][0].build_id == "app-1-ffffff"


def test_releases_before_images_leaves_the_images_section_alone() -> None:
    images = "images:\n  web:\n    source: {filter: {name: x, owners: [self]}}\n"
    text = "version: 1\nreleases: {}   # stamp writes this\n" + images
    out = with_release(text, "web", _release(1))
    assert out.startswith("version: 1\nreleases:   # stamp writes this\n  web:\n    - version: 1\n")
    assert out.endswith("      status: current\n" + images)
    assert load_text(out).releases["web"][0].version == 1


def test_a_catalog_without_releases_gets_the_section_at_the_end() -> None:
    text = "version: 1\nimages:\n  web:\n    source: {filter: {name: x, owners: [self]}}"  # no final newline
    out = with_release(text, "web", _release(1))
    assert out.startswith(text + "\nreleases:\n  web:\n")
    assert load_text(out).releases["web"][0].version == 1


def test_crlf_files_keep_crlf() -> None:
    text = RICH.replace("\n", "\r\n")
    out = with_release(text, "base", _release(3, build_id="base-3-eeeeee"))
    assert "\n" not in out.replace("\r\n", "")
    assert [r.version for r in load_text(out).releases["base"]] == [3, 2, 1]


def test_an_empty_flow_list_becomes_a_block_list() -> None:
    text = RICH.replace("  web:\n  - version: 1", "  app: []   # none yet\n  web:\n  - version: 1")
    out = with_release(text, "app", _release(1, build_id="app-1-ffffff"))
    removed, _ = changed_lines(text, out)
    assert removed == ["  app: []   # none yet\n"]
    assert "  app:   # none yet\n    - version: 1\n" in out
    assert load_text(out).releases["app"][0].version == 1


def test_an_older_build_finishing_late_goes_in_as_previous() -> None:
    late = _release(3, built_at="2026-11-19T09:00:00Z", build_id="base-3-eeeeee")
    out = with_release(RICH, "base", late)
    removed, _ = changed_lines(RICH, out)
    assert removed == []
    assert [(r.version, r.status) for r in load_text(out).releases["base"]] == [
        (3, "previous"),
        (2, "current"),
        (1, "previous"),
    ]


def test_a_lower_version_goes_in_version_order() -> None:
    text = with_release(RICH, "base", _release(5, build_id="base-5-eeeeee"))
    out = with_release(text, "base", _release(4, status="previous", build_id="base-4-eeeeee"))
    assert [r.version for r in load_text(out).releases["base"]] == [5, 4, 2, 1]


def test_risky_strings_are_quoted() -> None:
    release = _release(1, commit="123456", build_id="1e5", source=ReleaseSource(image="true", version=1))
    out = with_release(RICH, "null", release)
    assert '  "null":\n' in out
    assert 'commit: "123456"' in out
    assert 'build_id: "1e5"' in out
    assert 'source: {image: "true", version: 1}' in out
    loaded = load_text(out).releases["null"][0]
    assert (loaded.commit, loaded.build_id, loaded.source.image) == ("123456", "1e5", "true")


def test_a_reused_version_is_refused() -> None:
    with pytest.raises(CatalogError, match="already has version 2"):
        with_release(RICH, "base", _release(2))


def test_flow_style_releases_are_refused_not_mangled() -> None:
    with pytest.raises(CatalogError, match="block form"):
        with_release("version: 1\nreleases: {web: []}\n", "web", _release(1))


# -- set_status ------------------------------------------------------------------------------------------


def test_set_status_revokes_with_a_reason_and_touches_only_that_release() -> None:
    out = set_status(RICH, "base", 2, "revoked", reason='CVE-2026-1 "sshd" # urgent')
    removed, added = changed_lines(RICH, out)
    assert removed == ["      status: current      # promoted after the CVE fix\n"]
    assert added == [
        "      status: revoked      # promoted after the CVE fix\n",
        '      reason: "CVE-2026-1 \\"sshd\\" # urgent"\n',
    ]
    release = load_text(out).releases["base"][0]
    assert (release.status, release.reason) == ("revoked", 'CVE-2026-1 "sshd" # urgent')
    again = set_status(out, "base", 2, "revoked", reason="superseded")
    assert load_text(again).releases["base"][0].reason == "superseded"


def test_set_status_current_rolls_back() -> None:
    out = set_status(RICH, "base", 1, "current")
    assert [(r.version, r.status) for r in load_text(out).releases["base"]] == [(2, "previous"), (1, "current")]
    removed, _ = changed_lines(RICH, out)
    assert len(removed) == 2


def test_set_status_names_a_missing_version() -> None:
    with pytest.raises(CatalogError, match=r"releases\.base has no version 9"):
        set_status(RICH, "base", 9, "revoked")


# -- the property ----------------------------------------------------------------------------------------

FOUR_SPACES = """\
version: 1
releases:
    # four-space section, wide list items, releases before images
    web:
        -   version: 1
            amis: {us-east-1: ami-0123456789abcdef2}
            built_at: "2026-11-21T10:00:00Z"
            commit: "123456"
            build_id: "web-1-cccccc"
            source: {image: base, version: 2}
            verified: passed
            status: current   # note
images:
  web:
    source: {filter: {name: x, owners: [self]}}
"""
STARTS = [
    (REPO / "catalog.yaml").read_text(encoding="utf-8"),
    RICH,
    RICH.replace("\n", "\r\n"),
    "version: 1\nimages:\n  web:\n    source: {filter: {name: x, owners: [self]}}\n",
    FOUR_SPACES,
]
REGIONS = ["us-east-1", "eu-west-1", "ap-south-1"]
_hex = st.text(alphabet="0123456789abcdef", min_size=6, max_size=40)
_ami = st.text(alphabet="0123456789abcdef", min_size=17, max_size=17).map(lambda h: f"ami-{h}")
_amis = st.dictionaries(st.sampled_from(REGIONS), _ami, min_size=1, max_size=3)
_stamp = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
)
_source = st.one_of(
    st.builds(ReleaseSource, image=st.sampled_from(["base", "web", "true"]), version=st.integers(1, 99)),
    st.builds(ReleaseSource, amis=_amis),
)
_release_strategy: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    amis=_amis,
    built_at=_stamp,
    commit=st.one_of(_hex, st.text(alphabet="0123456789", min_size=6, max_size=12)),
    build_id=st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    source=_source,
    status=st.sampled_from(["current", "current", "previous", "deprecated", "revoked"]),
    reason=st.one_of(st.none(), st.text(max_size=40)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.sampled_from(STARTS),
    steps=st.lists(
        st.tuples(st.sampled_from(["base", "web", "app", "no", "x-1"]), st.integers(1, 60), _release_strategy),
        min_size=1,
        max_size=6,
    ),
)
def test_with_release_always_loads_and_keeps_the_prefix(
    start: str, steps: list[tuple[str, int, dict[str, Any]]]
) -> None:
    releases_at = re.search(r"^releases:", start, re.MULTILINE)
    prefix = start[: releases_at.start()] if releases_at else start
    initial = load_text(start)
    model: dict[str, list[Release]] = {name: list(items) for name, items in initial.releases.items()}
    text = start
    for image, version, fields in steps:
        if any(r.version == version for r in model.get(image, [])):
            continue
        release = Release(version=version, verified="passed", **fields)
        text = with_release(text, image, release)
        items = model.setdefault(image, [])
        current = next((r for r in items if r.status == "current"), None)
        status = release.status
        if status == "current" and current is not None:
            if release.built_at < current.built_at:
                status = "previous"
            else:
                items[items.index(current)] = current.model_copy(update={"status": "previous"})
        at = next((i for i, r in enumerate(items) if r.version < version), len(items))
        items.insert(at, release.model_copy(update={"status": status}))

        assert text.startswith(prefix)
        loaded = load_text(text)
        assert {name: list(items) for name, items in loaded.releases.items()} == model
    if releases_at is not None and "\nimages:" in start[releases_at.start() :]:
        assert text.endswith(start[start.index("\nimages:", releases_at.start()) :])


# -- release_from_result -----------------------------------------------------------------------------------


def _result(**changes: Any) -> BuildResult:
    return build_result(
        **({"build_id": "web-9-abcdef", "amis": AMIS, "source": {"image": "base", "version": 2}} | changes)
    )


def test_release_from_result_takes_the_next_version_and_the_start_time() -> None:
    release = release_from_result(_result(), load_text(RICH), now=NOW)
    assert release == _release(
        2,
        build_id="web-9-abcdef",
        commit="0a1b2c3d",
        built_at="2026-11-26T15:00:00Z",
        source=ReleaseSource(image="base", version=2),
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"verified": "failed", "failed_tests": ["test_nginx"]}, "is not verified \\(verified: failed\\)"),
        ({"verified": "pending"}, "only images whose tests passed"),
        ({"cloud": "local"}, "ran on the local cloud, not aws"),
        ({"amis": {"us-east-1": "ami-0123456789abcdef0"}}, "no AMI in eu-west-1"),
        ({"image": "db"}, "has no image 'db'"),
        ({"started_at": "2026-12-30T00:00:00Z"}, "after now"),
        ({"commit": "not-a-hash"}, "commit is not valid"),
    ],
)
def test_release_from_result_refuses(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        release_from_result(_result(**changes), load_text(RICH), now=NOW, cloud="aws")


# -- record: lock, check, atomic write ----------------------------------------------------------------------


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(RICH, encoding="utf-8")
    path.chmod(0o640)
    return path


def test_record_writes_and_returns_the_release(catalog_file: Path) -> None:
    (release,) = record(catalog_file, [_result()], now=NOW)
    assert (release.version, release.status) == (2, "current")
    text = catalog_file.read_text(encoding="utf-8")
    assert text.startswith(RICH[: RICH.index("releases:")])
    assert load_catalog(catalog_file, check_files=False).current_release("web") == release
    assert oct(catalog_file.stat().st_mode & 0o777) == "0o640"
    assert lock_path(catalog_file).exists()
    assert sorted(p.name for p in catalog_file.parent.iterdir()) == [".catalog.yaml.lock", "catalog.yaml"]


def test_record_twice_is_harmless(catalog_file: Path) -> None:
    first = record(catalog_file, [_result()], now=NOW)
    text = catalog_file.read_bytes()
    assert record(catalog_file, [_result()], now=NOW) == first
    assert catalog_file.read_bytes() == text


def test_an_unverified_result_is_refused_and_the_file_untouched(catalog_file: Path) -> None:
    before = catalog_file.read_bytes()
    stamp = catalog_file.stat().st_mtime_ns
    with pytest.raises(CatalogError, match="not verified") as caught:
        record(catalog_file, [_result(build_id="web-8-abcdef"), _result(verified="failed")], now=NOW)
    assert caught.value.exit_code == 1
    assert catalog_file.read_bytes() == before
    assert catalog_file.stat().st_mtime_ns == stamp


def test_a_bad_edit_never_lands(catalog_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = catalog_file.read_bytes()
    monkeypatch.setattr(record_command, "with_release", lambda text, image, release: text + "  web: [oops\n")
    with pytest.raises(CatalogError, match="would write an invalid catalog"):
        record(catalog_file, [_result()], now=NOW)
    assert catalog_file.read_bytes() == before
    assert [p.name for p in catalog_file.parent.iterdir() if p.suffix == ".tmp"] == []


def test_an_older_build_recorded_later_stays_previous(catalog_file: Path) -> None:
    newer = _result(build_id="web-new", started_at="2026-11-26T15:00:00Z")
    older = _result(build_id="web-old", started_at="2026-11-26T14:00:00Z")
    record(catalog_file, [newer], now=NOW)
    (late,) = record(catalog_file, [older], now=NOW)
    assert (late.version, late.status) == (3, "previous")
    assert load_catalog(catalog_file, check_files=False).current_release("web").build_id == "web-new"  # type: ignore[union-attr]


def test_local_results_are_refused_when_recording_for_aws(catalog_file: Path) -> None:
    with pytest.raises(CatalogError, match="local cloud"):
        record(catalog_file, [_result(cloud="local")], cloud="aws", now=NOW)


def _record_one(path: str, index: int, barrier: Any) -> None:
    barrier.wait()
    # Start times in a scrambled order, so the newest build is not always the last to finish.
    minute = (index * 7) % 10
    result = _result(build_id=f"web-par-{index}", started_at=f"2026-11-26T15:{minute:02d}:00Z")
    record(Path(path), [result], now=NOW)


def test_concurrent_records_lose_no_update(catalog_file: Path) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(10)
    workers = [context.Process(target=_record_one, args=(str(catalog_file), i, barrier)) for i in range(10)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * 10
    releases = load_catalog(catalog_file, check_files=False).releases["web"]
    assert sorted(r.version for r in releases) == list(range(1, 12))
    assert {r.build_id for r in releases} >= {f"web-par-{i}" for i in range(10)}
    current = [r for r in releases if r.status == "current"]
    assert len(current) == 1
    assert current[0].built_at == max(r.built_at for r in releases)
    assert not [p for p in catalog_file.parent.iterdir() if p.suffix == ".tmp"]
    assert os.access(catalog_file, os.R_OK)
