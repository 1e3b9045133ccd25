"""The pure planner and its renderers, on catalogs built in memory (git scenarios are in test_changes.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stamp.catalog.load import Catalog, Image, build_catalog, parse
from stamp.catalog.rebuilds import ImagePlan, Plan, PublishOnly, Reason, images_for_paths, plan
from stamp.commands.plan import MARKDOWN_MARKER, format_json, format_markdown, format_matrix, format_table

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

TEXT = """\
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
  rebuild: {max_age_days: 30, on_new_source: true}
images:
  base:
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/base/scripts/10-upgrade.sh]
    tests: images/base/tests
  web:
    parent: base
    provision: [./images/web/scripts/10-nginx.sh]
    files: images/web/files/
    share: {accounts: ["111122223333"]}
  site:
    parent: web
    provision: [images/site/setup.sh]
releases:
  base:
    - version: 1
      amis: {us-east-1: ami-0b00000000000000a, eu-west-1: ami-0b00000000000000b}
      built_at: "2026-11-20T12:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: base-1-aaaaaa
      source: {amis: {us-east-1: ami-0aaaaaaaaaaaaaaa1, eu-west-1: ami-0aaaaaaaaaaaaaaa2}}
      verified: passed
      status: current
  web:
    - version: 1
      amis: {us-east-1: ami-0c00000000000000a, eu-west-1: ami-0c00000000000000b}
      built_at: "2026-11-20T12:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: web-1-bbbbbb
      source: {image: base, version: 1}
      verified: passed
      status: current
  site:
    - version: 1
      amis: {us-east-1: ami-0d00000000000000a, eu-west-1: ami-0d00000000000000b}
      built_at: "2026-11-20T12:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: site-1-cccccc
      source: {image: web, version: 1}
      verified: passed
      status: current
"""


def catalog(text: str = TEXT) -> Catalog:
    path = Path("catalog.yaml")
    return build_catalog(parse(text, path), text, path, check_files=False)


def reasons(result: Plan) -> dict[str, list[tuple[str, str]]]:
    return {p.name: [(r.kind, r.detail) for r in p.reasons] for p in result.images}


def no_lookup(image: Image, region: str) -> str | None:
    raise AssertionError(f"source lookup for {image.name} in {region} was not expected")


def test_nothing_changed_builds_nothing() -> None:
    same = catalog()
    result = plan(same, same, [], source_lookup=None, now=NOW)
    assert result == Plan(images=(), publish_only=(), sources_checked=False, updates_checked=False)


def test_grandchildren_get_later_layers_and_a_planned_child_alone_is_layer_zero() -> None:
    same = catalog()
    everything = plan(same, same, ["images/base/scripts/10-upgrade.sh"], source_lookup=None, now=NOW)
    assert everything.layers() == [["base"], ["web"], ["site"]]
    assert reasons(everything)["site"] == [("parent_rebuilt", "web")]

    child = plan(same, same, ["images/web/files/index.html"], source_lookup=None, now=NOW)
    assert [(p.name, p.layer) for p in child.images] == [("web", 0), ("site", 1)]


def test_catalog_paths_are_normalised_before_matching() -> None:
    found = images_for_paths(
        catalog(), ["images/web/scripts/10-nginx.sh", "images/web/files/a/b.css", "images/web/filesystem.txt"]
    )
    assert found == {"web": ["images/web/files/a/b.css", "images/web/scripts/10-nginx.sh"]}


def test_source_lookup_is_asked_only_for_root_images_that_want_it() -> None:
    asked: list[tuple[str, str]] = []

    def lookup(image: Image, region: str) -> str | None:
        asked.append((image.name, region))
        return None  # nothing matches the filter: not a reason to build

    same = catalog()
    assert plan(same, same, [], source_lookup=lookup, now=NOW).images == ()
    assert asked == [("base", "us-east-1"), ("base", "eu-west-1")]

    off = catalog(TEXT.replace("on_new_source: true", "on_new_source: false"))
    assert plan(off, off, [], source_lookup=no_lookup, now=NOW).images == ()


def test_new_source_in_every_region_gives_one_reason_per_region() -> None:
    same = catalog()
    result = plan(same, same, [], source_lookup=lambda image, region: f"ami-0ffffffffffff{region[-1]}", now=NOW)
    assert reasons(result)["base"] == [
        ("new_source_image", "us-east-1: ami-0aaaaaaaaaaaaaaa1 → ami-0ffffffffffff1"),
        ("new_source_image", "eu-west-1: ami-0aaaaaaaaaaaaaaa2 → ami-0ffffffffffff1"),
    ]
    assert result.sources_checked


def test_age_limit_is_exclusive() -> None:
    same = catalog()
    built = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    at_limit = plan(same, same, [], source_lookup=None, now=built + timedelta(days=30))
    assert at_limit.images == ()
    past = plan(same, same, [], source_lookup=None, now=built + timedelta(days=30, seconds=1))
    assert past.order() == ["base", "web", "site"]
    assert reasons(past)["base"] == [
        ("release_too_old", "v1 built 2026-11-20T12:00:00Z, 30 days ago (max_age_days: 30)")
    ]


def test_naive_now_is_taken_as_utc() -> None:
    same = catalog()
    result = plan(same, same, [], source_lookup=None, now=datetime(2027, 1, 1))
    assert result.order() == ["base", "web", "site"]


def test_regions_change_names_the_key_and_public_sharing_is_publish_only() -> None:
    old = catalog()
    new = catalog(
        TEXT.replace('share: {accounts: ["111122223333"]}', 'share: {public: true, accounts: ["111122223333"]}')
        .replace("defaults:\n", "defaults:\n  allow_public: true\n")
        .replace("  site:\n    parent: web\n", "  site:\n    parent: web\n    regions: [us-east-1]\n")
    )
    result = plan(old, new, [], source_lookup=None, now=NOW)
    assert reasons(result) == {"site": [("definition_changed", "images.site.regions changed")]}
    assert result.publish_only == (PublishOnly("web", (Reason("share_changed", "share.public: false → true"),)),)


def test_share_diff_lists_each_added_and_removed_target() -> None:
    old = catalog()
    new = catalog(
        TEXT.replace(
            'share: {accounts: ["111122223333"]}',
            'share: {accounts: ["444455556666"], organizations: '
            '["arn:aws:organizations::111122223333:organization/o-exampleorg1"]}',
        )
    )
    result = plan(old, new, [], source_lookup=None, now=NOW)
    assert result.images == ()
    assert result.publish_only == (
        PublishOnly(
            "web",
            (
                Reason("share_changed", "share.accounts: +444455556666 -111122223333"),
                Reason(
                    "share_changed",
                    "share.organizations: +arn:aws:organizations::111122223333:organization/o-exampleorg1",
                ),
            ),
        ),
    )


def test_image_rebuilt_anyway_is_not_publish_only() -> None:
    old = catalog()
    new = catalog(TEXT.replace('share: {accounts: ["111122223333"]}', "share: {}"))
    result = plan(old, new, ["images/web/files/x"], source_lookup=None, now=NOW)
    assert result.order() == ["web", "site"]
    assert result.publish_only == ()


SAMPLE = Plan(
    images=(
        ImagePlan("base", 0, (Reason("file_changed", "images/base/scripts/10-upgrade.sh"),)),
        ImagePlan("app", 1, (Reason("parent_rebuilt", "base"),)),
        ImagePlan("web", 1, (Reason("parent_rebuilt", "base"),)),
    ),
    publish_only=(PublishOnly("db", (Reason("share_changed", "share.accounts: +444455556666"),)),),
)


def test_json_format_has_structured_reasons() -> None:
    assert json.loads(format_json(SAMPLE)) == {
        "images": [
            {
                "name": "base",
                "layer": 0,
                "reasons": [{"kind": "file_changed", "detail": "images/base/scripts/10-upgrade.sh"}],
            },
            {"name": "app", "layer": 1, "reasons": [{"kind": "parent_rebuilt", "detail": "base"}]},
            {"name": "web", "layer": 1, "reasons": [{"kind": "parent_rebuilt", "detail": "base"}]},
        ],
        "publish_only": [
            {"name": "db", "reasons": [{"kind": "share_changed", "detail": "share.accounts: +444455556666"}]}
        ],
        "order": ["base", "app", "web"],
        "sources_checked": True,
        "updates_checked": True,
        "update_notes": [],
    }


def test_matrix_format_is_one_strategy_matrix_per_layer() -> None:
    assert json.loads(format_matrix(SAMPLE)) == {
        "layers": [
            {"include": [{"image": "base", "layer": 0}]},
            {"include": [{"image": "app", "layer": 1}, {"image": "web", "layer": 1}]},
        ]
    }
    assert json.loads(format_matrix(Plan(images=()))) == {"layers": []}
    # One line: it goes into $GITHUB_OUTPUT as name=value.
    assert format_matrix(SAMPLE).count("\n") == 1


def test_table_format() -> None:
    assert format_table(SAMPLE) == (
        "IMAGE  LAYER  REASONS\n"
        "base   0      file changed: images/base/scripts/10-upgrade.sh\n"
        "app    1      parent rebuilt: base\n"
        "web    1      parent rebuilt: base\n"
        "\n"
        "publish only (sharing changed, nothing to build):\n"
        "  db: share.accounts: +444455556666\n"
    )
    assert format_table(Plan(images=(), sources_checked=False)).startswith("nothing to build\n\nVendor source images")


def test_markdown_format_is_a_pr_comment() -> None:
    text = format_markdown(SAMPLE)
    assert text.startswith(MARKDOWN_MARKER + "\n### stamp plan: 3 images to build\n")
    assert "| 0 | `base` | **file changed**: images/base/scripts/10\\-upgrade\\.sh |" in text
    assert "Build order: `base` → `app` + `web`" in text
    assert "- `db`: share\\.accounts: \\+444455556666" in text
    assert "nothing to build" in format_markdown(Plan(images=()))


def test_markdown_escapes_what_a_pull_request_controls() -> None:
    hostile = Plan(
        images=(
            ImagePlan(
                "web",
                0,
                (Reason("definition_changed", 'images.web.description: "x | <img src=x onerror=alert(1)>\n[a](b)"'),),
            ),
        )
    )
    row = next(line for line in format_markdown(hostile).splitlines() if line.startswith("| 0 |"))
    # Every character Markdown or HTML could act on is backslash-escaped, so it shows as typed.
    assert re.search(r"(?<!\\)[<>\[\]()`]", row.replace("`web`", "")) is None
    assert "\\<img src=x onerror=alert\\(1\\)\\>" in row
    # The only unescaped pipes are the table's own four.
    assert row.replace("\\|", "").count("|") == 4


def test_markdown_cuts_long_file_lists() -> None:
    many = Plan(images=(ImagePlan("web", 0, tuple(Reason("file_changed", f"f{i}") for i in range(25))),))
    assert "and 15 more" in format_markdown(many)
