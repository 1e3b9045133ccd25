"""What is inside a real image on the local cloud: `stamp verify` writes the inventory and a valid CycloneDX SBOM,
and `stamp notes` compares two recorded releases from the inventories verification kept (docs/inventory.md)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from conftest import local_target
from stamp import local
from stamp.catalog import inventory as inv
from stamp.catalog.load import load_catalog
from stamp.cli import main
from stamp.commands.demo import copy_repository
from stamp.commands.record import WORKSPACE_MARKER

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _git(workspace: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(workspace), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch copy of this repository on its own local cloud, as tests/e2e/test_pipeline.py makes one."""
    workspace = tmp_path_factory.mktemp("inventory")
    copy_repository(REPO, workspace)
    (workspace / WORKSPACE_MARKER).parent.mkdir(parents=True, exist_ok=True)
    (workspace / WORKSPACE_MARKER).touch()
    _git(workspace, "init", "-q", "-b", "main")
    _git(workspace, "add", "-A")
    _git(workspace, "commit", "-qm", "init")
    local_target(load_catalog(workspace / "catalog.yaml"))
    try:
        yield workspace
    finally:
        local.down(workspace)


def _stamp(workspace: Path, *argv: str) -> int:
    return main(
        [*argv, "--catalog", str(workspace / "catalog.yaml"), "--cloud", "local", "--out", str(workspace / "build")]
    )


def test_verify_writes_the_inventory_and_the_sbom_and_notes_compare_two_releases(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = workspace / "build" / "base"
    for _ in range(2):  # two releases of base, each verified (and so inventoried) before it is recorded
        assert _stamp(workspace, "build", "base") == 0
        assert _stamp(workspace, "verify", "base") == 0
        assert _stamp(workspace, "record", "base") == 0
    result = json.loads((build / "result.json").read_text())
    found = inv.read_inventory(build / "packages.json")
    assert found.build_id == result["build_id"] and found.packager == "dpkg" and found.kernel
    assert found.os.id == "debian"
    openssh = [p for p in found.packages if p.name == "openssh-server"]
    assert len(openssh) == 1 and openssh[0].source == "openssh"
    assert found.sources and all(s.type in ("deb", "deb-src") for s in found.sources)
    assert found.changelogs  # read on the instance: /usr/share/doc/*/changelog.Debian.gz
    assert (build / "inventory" / f"{result['build_id']}.json").is_file()

    sbom = (build / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom) is None
    document = json.loads(sbom)
    properties = {p["name"]: p["value"] for p in document["metadata"]["properties"]}
    assert {properties[f"stamp:ami:{region}"] for region in result["amis"]} == set(result["amis"].values())
    assert properties["stamp:build-id"] == result["build_id"]
    assert any(c["purl"].startswith("pkg:deb/debian/openssh-server@") for c in document["components"])

    capsys.readouterr()
    assert _stamp(workspace, "notes", "base", "--format", "json") == 0
    notes = json.loads(capsys.readouterr().out)
    current = load_catalog(workspace / "catalog.yaml").current_release("base")
    assert current is not None and (notes["version"], notes["previous"]) == (current.version, current.version - 1)
    # Built twice from the same inputs minutes apart: the same packages.
    assert notes["upgraded"] == notes["downgraded"] == notes["added"] == notes["removed"] == []
    assert notes["kernel"] == {"from": found.kernel, "to": found.kernel}
