"""A security update reaches the catalog, on the local cloud with real Packer (docs/inventory.md, "Updates
available"): a signed apt repository on the container network offers `stamp-probe` 1.0; `base` and its child
are released with it; 1.1 appears in the `-security` suite with a CVE in its changelog; `stamp plan` lists
`base` (updates available) and the child (parent rebuilt); a release picks 1.1 up; `stamp notes` names the
CVE; the SBOM stored in the moto bucket is the one recorded and lists 1.1; and the plan is empty again."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aptrepo import AptRepo, Deb
from conftest import local_target
from stamp import local
from stamp.catalog.load import load_catalog
from stamp.cli import main
from stamp.commands.record import WORKSPACE_MARKER
from stamp.local.aptcache import bridge_gateway

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PROBE = "stamp-probe"
CVE = "CVE-2026-40404"
BUCKET = "stamp-e2e-updates"

CATALOG = f"""\
version: 1
defaults:
  regions: [us-east-1]
  apt_keyrings: [keys/archive.gpg]
  artifacts: {{bucket: {BUCKET}, prefix: golden}}
images:
  base:
    source:
      filter: {{name: "debian-12-amd64-*", owners: ["136693071363"]}}
    provision: [images/base/probe.sh]
    files: images/base/files
    tests: images/base/tests
  child:
    parent: base
    provision: [images/child/child.sh]
    tests: images/child/tests
releases: {{}}
"""

PROBE_SCRIPT = f"""\
#!/usr/bin/env bash
# Only the test's repository: the updates this image can have are the ones the test publishes.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
mkdir -p /etc/apt/keyrings
install -m 0644 /tmp/stamp-files/archive.gpg /etc/apt/keyrings/stamp-probe.gpg
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
echo "deb [signed-by=/etc/apt/keyrings/stamp-probe.gpg] $(cat /tmp/stamp-files/repo-uri) bookworm-security main" \\
  > /etc/apt/sources.list.d/probe.list
apt-get -o APT::Update::Error-Mode=any update
apt-get install -y {PROBE}
"""

PROBE_TEST = f"""\
def test_probe_installed(host):
    assert host.package("{PROBE}").is_installed
"""

CHILD_TEST = """\
def test_child_marker(host):
    assert host.file("/etc/stamp-child").exists
"""


def _git(workspace: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(workspace), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        check=True,
        capture_output=True,
    )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, AptRepo, str]]:
    """A workspace on its own local cloud, and the signed repository served where its containers reach the host."""
    workspace = tmp_path_factory.mktemp("updates")
    _write(workspace / "catalog.yaml", CATALOG)
    _write(workspace / "images" / "base" / "probe.sh", PROBE_SCRIPT, 0o755)
    _write(workspace / "images" / "base" / "tests" / "test_probe.py", PROBE_TEST)
    _write(workspace / "images" / "child" / "child.sh", "#!/bin/sh\nset -e\ntouch /etc/stamp-child\n", 0o755)
    _write(workspace / "images" / "child" / "tests" / "test_child.py", CHILD_TEST)
    (workspace / WORKSPACE_MARKER).parent.mkdir(parents=True, exist_ok=True)
    (workspace / WORKSPACE_MARKER).touch()
    repo = AptRepo(tmp_path_factory.mktemp("apt"))
    repo.publish("bookworm-security", [Deb(PROBE, "1.0", changelog=[("1.0", "Initial release.")])], debs=True)
    for keyring in (workspace / "keys" / "archive.gpg", workspace / "images" / "base" / "files" / "archive.gpg"):
        keyring.parent.mkdir(parents=True, exist_ok=True)
        keyring.write_bytes(repo.keyring.read_bytes())
    target = local_target(load_catalog(workspace / "catalog.yaml"))
    gateway = bridge_gateway(target.local.engine_handle)
    assert gateway is not None, "the container network has no gateway address"
    try:
        with repo.serve(gateway) as uri:
            _write(workspace / "images" / "base" / "files" / "repo-uri", uri + "\n")
            _git(workspace, "init", "-q", "-b", "main")
            _git(workspace, "add", "-A")
            _git(workspace, "commit", "-qm", "init")
            yield workspace, repo, uri
    finally:
        repo.close()
        local.down(workspace)


def _stamp(workspace: Path, *argv: str) -> int:
    return main(
        [*argv, "--catalog", str(workspace / "catalog.yaml"), "--cloud", "local", "--out", str(workspace / "build")]
    )


def _plan(workspace: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, list[dict[str, str]]]:
    _git(workspace, "commit", "-qam", "record", "--allow-empty")
    capsys.readouterr()
    assert _stamp(workspace, "plan", "--base", "HEAD", "--format", "json") == 0
    found = json.loads(capsys.readouterr().out)
    return {item["name"]: item["reasons"] for item in found["images"]}


def test_a_security_update_is_planned_released_and_described(
    cloud: tuple[Path, AptRepo, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, repo, _uri = cloud
    monkeypatch.setenv("STAMP_CACHE_DIR", str(workspace / ".stamp" / "cache"))
    assert _stamp(workspace, "release", "base", "child") == 0
    assert _plan(workspace, capsys) == {}

    repo.publish(
        "bookworm-security",
        [
            Deb(
                PROBE,
                "1.1",
                changelog=[("1.1", f"Fix {CVE}: a probe that says too much."), ("1.0", "Initial release.")],
            )
        ],
        debs=True,
    )
    planned = _plan(workspace, capsys)
    assert planned["base"] == [
        {
            "kind": "updates_available",
            "detail": f"1 security ({PROBE} 1.0 → 1.1)",
            "security": 1,
            "other": 0,
            "examples": {"security": [{"name": PROBE, "installed": "1.0", "available": "1.1"}], "other": []},
            "updates": [{"name": PROBE, "arch": "amd64", "installed": "1.0", "available": "1.1", "security": True}],
        }
    ]
    assert {"kind": "parent_rebuilt", "detail": "base"} in planned["child"]

    assert _stamp(workspace, "release", "base", "child") == 0
    capsys.readouterr()
    assert _stamp(workspace, "notes", "base", "--format", "json") == 0
    notes = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["from"], u["to"]) for u in notes["upgraded"]] == [(PROBE, "1.0", "1.1")]
    assert [c["id"] for c in notes["cves_fixed"]] == [CVE]

    release = load_catalog(workspace / "catalog.yaml").current_release("base")
    assert release is not None and release.sbom is not None and release.version == 2
    target = local_target(load_catalog(workspace / "catalog.yaml"))
    key = release.sbom.uri.removeprefix(f"s3://{BUCKET}/")
    sbom = target.cloud.get_object("us-east-1", BUCKET, key)
    assert hashlib.sha256(sbom).hexdigest() == release.sbom.sha256
    purls = [c["purl"] for c in json.loads(sbom)["components"]]
    assert f"pkg:deb/debian/{PROBE}@1.1?arch=amd64" in purls

    assert _plan(workspace, capsys) == {}
