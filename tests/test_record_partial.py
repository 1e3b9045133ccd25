"""`stamp record` checks only what it edits: `images:`, the edited image's releases, and that nothing else moved."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from builders import build_result
from stamp.catalog import edit as catalog_edit
from stamp.catalog import load as catalog_module
from stamp.catalog.models import Release
from stamp.catalog.results import BuildResult
from stamp.commands import record as record_command
from stamp.commands.record import record
from stamp.errors import CatalogError, CatalogProblems

NOW = datetime(2026, 11, 26, 16, tzinfo=UTC)
REGIONS = ("us-east-1", "eu-west-1")


def _release_lines(version: int, status: str) -> str:
    return (
        f"    - version: {version}\n"
        "      amis:\n"
        f"        us-east-1: ami-0{version:016x}\n"
        f"        eu-west-1: ami-1{version:016x}\n"
        f'      built_at: "2026-11-{version:02d}T12:00:00Z"\n'
        '      commit: "1a2b3c4d5e6f"\n'
        f'      build_id: "img-{version}"\n'
        "      source: {image: base, version: 1}\n"
        "      verified: passed\n"
        f"      status: {status}\n"
    )


def _catalog(others: int = 40) -> str:
    """`base`, `web` and `others` more children, each with three releases; comments to keep byte for byte."""
    names = ["web", *(f"app-{n:02d}" for n in range(others))]
    out = [
        "version: 1  # the catalog\n",
        "defaults:\n  regions: [us-east-1, eu-west-1]\n",
        "images:\n",
        '  base:\n    source: {filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}}\n',
        *(f"  {name}:\n    parent: base\n" for name in names),
        "releases:\n",
        "  # written by stamp record\n",
        "  base:\n",
        _release_lines(1, "current").replace(
            "source: {image: base, version: 1}", "source: {amis: {us-east-1: ami-0aaaaaaaaaaaaaaaa}}"
        ),
    ]
    for name in names:
        out.append(f"  {name}:\n")
        out += [_release_lines(v, "current" if v == 3 else "previous") for v in (3, 2, 1)]
    out.append("# end\n")
    return "".join(out)


def _result(image: str = "web", build_id: str = "web-4-abcdef") -> BuildResult:
    return build_result(image, build_id, amis={region: f"ami-0{n:016x}" for n, region in enumerate(REGIONS, start=40)})


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(_catalog(), encoding="utf-8")
    return path


def test_record_never_parses_the_other_images_releases(catalog_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    parse = catalog_module.parse

    def spy(text: str, path: Path) -> Any:
        parsed.append(text)
        return parse(text, path)

    monkeypatch.setattr(catalog_module, "parse", spy)
    before = catalog_file.read_text(encoding="utf-8")
    (release,) = record(catalog_file, [_result()], now=NOW)
    after = catalog_file.read_text(encoding="utf-8")
    assert release.version == 4
    # Read before and after the edit, each time the images section and web's releases only.
    assert len(parsed) == 2
    assert all(len(text) < len(before) / 10 for text in parsed)
    assert all("app-07:\n    - version" not in text for text in parsed)
    # And the edit itself is as before: web's block gained v4 and lost `current` on v3, nothing else moved.
    web_start = before.index("  web:\n    - version")
    assert after[:web_start] == before[:web_start]
    assert after.endswith(before[before.index("  app-00:\n    - version") :])


def test_an_edit_that_strays_outside_its_block_is_refused(catalog_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_release = catalog_edit.with_release

    def sloppy(text: str, image: str, release: Release) -> str:
        # Still valid YAML, so only the confinement check can tell: app-00's and app-01's v3 AMIs changed too.
        edited = with_release(text, image, release)
        return edited.replace("ami-00000000000000003", "ami-0ffffffffffffffff", 3)

    monkeypatch.setattr(record_command, "with_release", sloppy)
    before = catalog_file.read_bytes()
    with pytest.raises(CatalogError, match=r"would change lines outside releases\.web; .* was left unchanged"):
        record(catalog_file, [_result()], now=NOW)
    assert catalog_file.read_bytes() == before


def test_a_problem_in_the_edited_images_releases_is_reported_at_its_line(catalog_file: Path) -> None:
    text = catalog_file.read_text(encoding="utf-8")
    web = text.index("  web:\n    - version")
    # web v2 says current as well as v3.
    broken = text[:web] + text[web:].replace("      status: previous\n", "      status: current\n", 1)
    catalog_file.write_text(broken, encoding="utf-8")
    line = broken[: broken.index("      status: current\n", broken.index("version: 2", web))].count("\n") + 1
    with pytest.raises(CatalogProblems) as caught:
        record(catalog_file, [_result()], now=NOW)
    assert f"catalog.yaml:{line}:" in str(caught.value)
    assert "more than one release is current" in str(caught.value)
    assert catalog_file.read_text(encoding="utf-8") == broken


def test_a_new_image_block_goes_inside_releases_and_nowhere_else(catalog_file: Path) -> None:
    text = catalog_file.read_text(encoding="utf-8")
    with_new = text.replace("  app-00:\n    parent: base\n", "  app-00:\n    parent: base\n  api:\n    parent: base\n")
    catalog_file.write_text(with_new, encoding="utf-8")
    (release,) = record(catalog_file, [_result("api", "api-1-abcdef")], now=NOW)
    assert release.version == 1
    after = catalog_file.read_text(encoding="utf-8")
    assert after.startswith(with_new[: with_new.index("# end\n")])
    assert after.endswith("  api:\n" + after.split("  api:\n")[-1])
    assert catalog_module.load_catalog(catalog_file, check_files=False).releases["api"][0].build_id == "api-1-abcdef"


def test_the_trade_off_a_problem_elsewhere_in_releases_is_left_to_validate(catalog_file: Path) -> None:
    # Another image's releases are bytes record does not read (`stamp validate` reports them); it keeps them.
    text = catalog_file.read_text(encoding="utf-8")
    app = text.index("  app-03:\n    - version")
    broken = text[:app] + text[app:].replace("      status: previous\n", "      status: current\n", 1)
    catalog_file.write_text(broken, encoding="utf-8")
    record(catalog_file, [_result()], now=NOW)
    after = catalog_file.read_text(encoding="utf-8")
    assert after[after.index("  app-00:\n    - version") :] == broken[broken.index("  app-00:\n    - version") :]
    with pytest.raises(CatalogProblems, match="more than one release is current"):
        catalog_module.load_catalog(catalog_file, check_files=False)
