"""`stamp notes` on a catalog with releases and the inventories verification kept (docs/inventory.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from stamp.catalog import inventory as inv
from stamp.catalog.load import load_catalog
from stamp.catalog.models import Release
from stamp.cli import main
from stamp.cloud.aws import AwsCloud
from stamp.commands import notes as notes_command
from stamp.commands.notes import load_inventory, s3_fetch
from stamp.errors import CatalogError, CloudError, MissingResource
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


# -- inventories stored in S3 by `stamp record` (defaults.artifacts) --------------------------------------------

BUCKET = "stamp-artifacts-notes"
DEFAULTS = f"defaults:\n  artifacts: {{bucket: {BUCKET}, prefix: golden}}\n"
SBOM_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
STORED_URI = f"s3://{BUCKET}/golden/base/2/packages.json"


def _sbom_line(version: int) -> str:
    return f'      sbom: {{uri: "s3://{BUCKET}/golden/base/{version}/sbom.cdx.json", sha256: "{SBOM_SHA}"}}\n'


def _with_artifacts(workspace: Path, *, sbom_of: tuple[int, ...] = (2,)) -> None:
    """The catalog names defaults.artifacts, and the releases in `sbom_of` an SBOM stored beside a packages.json."""
    path = workspace / "catalog.yaml"
    text = path.read_text().replace("version: 1\n", "version: 1\n" + DEFAULTS, 1)
    for version in sbom_of:
        anchor = f"      build_id: base-{version}-abc123\n"
        text = text.replace(anchor, anchor + _sbom_line(version) + "      packages: 7\n")
    path.write_text(text)


def _moved_to_s3(workspace: Path, aws: AwsCloud) -> bytes:
    """base 2's inventory only in S3, where `stamp record` stored it: a runner that did not verify base 2."""
    local = inv.history_path(workspace / "build", "base", "base-2-abc123")
    data = local.read_bytes()
    local.unlink()
    aws.create_bucket("us-east-1", BUCKET)
    aws.put_object("us-east-1", BUCKET, "golden/base/2/packages.json", data, content_type="application/json")
    return data


def _release(workspace: Path, version: int) -> Release:
    found = load_catalog(workspace / "catalog.yaml", check_files=False).releases["base"]
    return next(r for r in found if r.version == version)


def _no_target(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every target `stamp notes` builds, refused: the list stays empty when it builds none."""
    built: list[str] = []

    def refuse(args: object, catalog: object) -> None:
        built.append("target")
        raise AssertionError("stamp notes built a target it does not need")

    monkeypatch.setattr(notes_command, "target_of", refuse)
    return built


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_an_inventory_missing_from_build_is_read_from_s3_and_kept(
    workspace: Path, aws: AwsCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_artifacts(workspace)
    stored = _moved_to_s3(workspace, aws)
    local = inv.history_path(workspace / "build", "base", "base-2-abc123")

    assert main([*notes(workspace, "base", "3", "--format", "json"), "--cloud", "aws"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["version"], found["previous"]) == (3, 2)
    assert [u["name"] for u in found["upgraded"]] == ["libssl3", "openssl"]
    assert found["kernel"] == {"from": "6.1.0-27-cloud-amd64", "to": "6.1.0-28-cloud-amd64"}
    assert local.read_bytes() == stored, "the fetched inventory is kept where verification keeps them"
    assert not list(local.parent.glob("*.tmp"))

    # Gone from S3: the second run reads the copy kept in build/ and asks S3 nothing it could fail on.
    aws.s3("us-east-1").delete_object(Bucket=BUCKET, Key="golden/base/2/packages.json")
    assert main([*notes(workspace, "base", "3", "--format", "json"), "--cloud", "aws"]) == 0
    assert json.loads(capsys.readouterr().out) == found


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_an_inventory_neither_in_build_nor_in_s3_says_why_s3_did_not_help(
    workspace: Path, aws: AwsCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_artifacts(workspace)
    _moved_to_s3(workspace, aws)
    aws.s3("us-east-1").delete_object(Bucket=BUCKET, Key="golden/base/2/packages.json")
    local = inv.history_path(workspace / "build", "base", "base-2-abc123")

    assert main([*notes(workspace, "base", "3"), "--cloud", "aws"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        f"stamp notes: no inventory kept for base 2 (build base-2-abc123): {local} does not exist, and {STORED_URI}"
        f" cannot be read: GetObject in us-east-1 for {STORED_URI} failed: NoSuchKey"
    ) in captured.err
    assert "Traceback" not in captured.err
    assert not local.exists()


def test_without_artifacts_or_without_an_sbom_no_cloud_is_asked(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = _no_target(monkeypatch)
    local = inv.history_path(workspace / "build", "base", "base-1-abc123")

    # No defaults.artifacts: as before, with why S3 has nothing either.
    assert main(notes(workspace, "base", "2")) == 1
    assert (
        f"no inventory kept for base 1 (build base-1-abc123): {local} does not exist, and the release has no sbom:"
        " no copy of it was stored in S3"
    ) in capsys.readouterr().err

    # defaults.artifacts, but base 1 was recorded without an SBOM; and base 3 against 2, both kept in build/.
    _with_artifacts(workspace)
    assert main(notes(workspace, "base", "2")) == 1
    assert "and the release has no sbom" in capsys.readouterr().err
    assert main(notes(workspace, "base", "3")) == 0
    assert capsys.readouterr().out.startswith("## base 3 (against base 2)\n")
    assert built == []


def test_load_inventory_reads_build_first_then_s3_and_checks_the_build(workspace: Path) -> None:
    _with_artifacts(workspace, sbom_of=(2, 3))
    build = workspace / "build"
    local = inv.history_path(build, "base", "base-2-abc123")
    stored = local.read_bytes()
    asked: list[str] = []

    def answer(data: bytes | Exception) -> Callable[[str], bytes]:
        def fetch(uri: str) -> bytes:
            asked.append(uri)
            if isinstance(data, Exception):
                raise data
            return data

        return fetch

    two, three = _release(workspace, 2), _release(workspace, 3)
    # Kept in build/: S3 is not asked.
    kept = load_inventory(build, "base", three, fetch=answer(MissingResource("never")))
    assert isinstance(kept, inv.Inventory) and kept.build_id == "base-3-abc123"
    assert asked == []

    local.unlink()
    missing = f"{local} does not exist, and "
    assert load_inventory(build, "base", two, fetch=None) == f"{missing}S3 was not asked for its copy {STORED_URI}"
    gone = MissingResource(f"GetObject in us-east-1 for {STORED_URI} failed: NoSuchKey")
    assert load_inventory(build, "base", two, fetch=answer(gone)) == f"{missing}{STORED_URI} cannot be read: {gone}"
    unreadable = load_inventory(build, "base", two, fetch=answer(b"<html>no</html>"))
    assert isinstance(unreadable, str)
    assert unreadable.startswith(f"{missing}{STORED_URI} is not a package inventory stamp can read: ")
    other_build = load_inventory(
        build, "base", two, fetch=answer(inv.history_path(build, "base", "base-3-abc123").read_bytes())
    )
    assert other_build == f"{missing}{STORED_URI} is the inventory of build base-3-abc123, not base-2-abc123"
    assert asked == [STORED_URI] * 3
    assert not local.exists(), "nothing that failed a check is kept"

    fetched = load_inventory(build, "base", two, fetch=answer(stored))
    assert isinstance(fetched, inv.Inventory) and fetched.build_id == "base-2-abc123"
    assert local.read_bytes() == stored
    again = load_inventory(build, "base", two, fetch=answer(CloudError("S3 must not be asked again")))
    assert again == fetched
    assert asked == [STORED_URI] * 4


@pytest.mark.integration
def test_s3_fetch_reads_an_object_and_a_missing_one_is_a_cloud_error(aws: AwsCloud) -> None:
    aws.create_bucket("us-east-1", BUCKET)
    aws.put_object("us-east-1", BUCKET, "golden/base/2/packages.json", b"{}\n", content_type="application/json")
    fetch = s3_fetch(aws, "us-east-1")
    assert fetch(STORED_URI) == b"{}\n"
    with pytest.raises(MissingResource, match="NoSuchKey"):
        fetch(f"s3://{BUCKET}/golden/base/9/packages.json")
    with pytest.raises(CatalogError, match="is not an s3://BUCKET/KEY URI"):
        fetch(f"https://{BUCKET}.example.invalid/packages.json")
