"""`stamp notes` on a catalog with releases and the inventories verification kept (docs/inventory.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stamp.catalog import inventory as inv
from stamp.cli import main
from test_inventory import BASH_CHANGELOG, OPENSSL_CHANGELOG, inventory

CATALOG = """\
version: 1
images:
  base:
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/base/setup.sh]
    tests: images/base/tests
releases:
  base:
"""

RELEASE = """\
    - version: {version}
      amis: {{us-east-1: ami-0123456789abcdef{version}}}
      built_at: "2026-11-2{version}T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: base-{version}-abc123
      source: {{amis: {{us-east-1: ami-0aaaaaaaaaaaaaaaa}}}}
      verified: passed
      status: {status}
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Releases 1 (no inventory kept), 2 and 3 of base; 3 upgraded openssl and the kernel, added vim-tiny."""
    statuses = {1: "previous", 2: "previous", 3: "current"}
    text = CATALOG + "".join(RELEASE.format(version=v, status=s) for v, s in statuses.items())
    (tmp_path / "catalog.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "images" / "base" / "tests").mkdir(parents=True)
    (tmp_path / "images" / "base" / "setup.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    kept = {
        2: inventory("3.0.15-1~deb12u1", kernel="6.1.0-27-cloud-amd64"),
        3: inventory(
            "3.0.16-1~deb12u1",
            extra="ii \tvim-tiny\t2:9.0.1378-2\tamd64\tvim\t2:9.0.1378-2\n",
            openssl=OPENSSL_CHANGELOG,
            bash=BASH_CHANGELOG,
        ),
    }
    for version, found in kept.items():
        path = inv.history_path(tmp_path / "build", "base", f"base-{version}-abc123")
        inv.write_json(path, found.model_copy(update={"build_id": f"base-{version}-abc123"}).model_dump_json())
    return tmp_path


def notes(workspace: Path, *argv: str) -> list[str]:
    return ["notes", *argv, "--catalog", str(workspace / "catalog.yaml"), "--out", str(workspace / "build")]


def test_json_notes_name_the_changes_the_kernel_and_the_cves_fixed(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(notes(workspace, "base", "--format", "json")) == 0
    found = json.loads(capsys.readouterr().out)
    assert set(found) == {
        "image",
        "version",
        "previous",
        "added",
        "removed",
        "upgraded",
        "downgraded",
        "kernel",
        "cves_fixed",
    }
    assert (found["image"], found["version"], found["previous"]) == ("base", 3, 2)
    assert found["added"] == [{"name": "vim-tiny", "arch": "amd64", "version": "2:9.0.1378-2"}]
    assert found["removed"] == [] and found["downgraded"] == []
    assert [(u["name"], u["from"], u["to"], u["changelog"]) for u in found["upgraded"]] == [
        ("libssl3", "3.0.15-1~deb12u1", "3.0.16-1~deb12u1", "read"),
        ("openssl", "3.0.15-1~deb12u1", "3.0.16-1~deb12u1", "read"),
    ]
    assert found["kernel"] == {"from": "6.1.0-27-cloud-amd64", "to": "6.1.0-28-cloud-amd64"}
    assert found["cves_fixed"] == [
        {"id": "CVE-2024-9143", "source": "openssl", "version": "3.0.16-1~deb12u1"},
        {"id": "CVE-2024-13176", "source": "openssl", "version": "3.0.16-1~deb12u1"},
    ]


def test_markdown_notes_for_people(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(notes(workspace, "base", "3")) == 0
    out = capsys.readouterr().out
    assert out.startswith("## base 3 (against base 2)\n\nbase 3: 2 packages upgraded, 1 package added, 2 CVEs fixed\n")
    assert "Kernel: 6.1.0-27-cloud-amd64 → 6.1.0-28-cloud-amd64" in out
    assert "| openssl | 3.0.15-1~deb12u1 | 3.0.16-1~deb12u1 | CVE-2024-9143, CVE-2024-13176 |" in out
    assert "- vim-tiny 2:9.0.1378-2 (amd64)" in out
    assert "- CVE-2024-9143 (openssl 3.0.16-1~deb12u1)" in out


def test_a_release_without_an_inventory_is_reported_clearly(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(notes(workspace, "base", "2")) == 1
    err = capsys.readouterr().err
    assert "no inventory kept for base 1 (build base-1-abc123)" in err
    assert "Traceback" not in err


def test_an_unknown_release_lists_the_releases(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(notes(workspace, "base", "9")) == 1
    assert "image 'base' has no release 9" in capsys.readouterr().err
