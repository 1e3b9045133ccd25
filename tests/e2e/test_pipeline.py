"""The Stamp pattern end to end on the local cloud: real Packer, real moto over HTTP, real containers, testinfra;
and what is inside a real image (docs/inventory.md): the inventory and the CycloneDX SBOM verification writes, and
`stamp notes` between two recorded releases."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from conftest import local_target
from stamp import local
from stamp.catalog import inventory as inv
from stamp.catalog.load import load_catalog
from stamp.cli import main
from stamp.cloud.aws import AwsCloud
from stamp.cloud.sharing import publish
from stamp.commands.demo import copy_repository
from stamp.commands.launch import launch_instances
from stamp.commands.record import WORKSPACE_MARKER
from stamp.commands.release import release_images
from stamp.drivers.layers import Outcome
from stamp.hosts.local import LocalTarget
from stamp.tags import VERIFIED, VERIFIED_TAG

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
FAILING_TEST = """
def test_this_image_has_a_file_nobody_installed(host):
    assert host.file("/etc/not-installed-by-anyone").exists
"""


@dataclass(frozen=True)
class Pipeline:
    workspace: Path
    target: LocalTarget
    outcomes: list[Outcome]
    catalog_before: str

    @property
    def catalog_path(self) -> Path:
        return self.workspace / "catalog.yaml"


def _git(workspace: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(workspace), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A scratch copy of this repository with base and web released on its own local cloud."""
    workspace = tmp_path_factory.mktemp("workspace")
    copy_repository(REPO, workspace)
    (workspace / WORKSPACE_MARKER).parent.mkdir(parents=True, exist_ok=True)
    (workspace / WORKSPACE_MARKER).touch()
    _git(workspace, "init", "-q", "-b", "main")
    _git(workspace, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "add", "-A")
    _git(workspace, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "init")
    catalog_path = workspace / "catalog.yaml"
    before = catalog_path.read_text()
    target = local_target(load_catalog(catalog_path))
    try:
        outcomes = release_images(catalog_path, ["base", "web"], target, build_root=workspace / "build", parallel=2)
        yield Pipeline(workspace, target, outcomes, before)
    finally:
        local.down(workspace)


def test_release_succeeds_parents_first(pipeline: Pipeline) -> None:
    assert [(o.image, o.error, o.skipped_because) for o in pipeline.outcomes] == [
        ("base", None, None),
        ("web", None, None),
    ]
    catalog = load_catalog(pipeline.catalog_path)
    web = catalog.current_release("web")
    base = catalog.current_release("base")
    assert base is not None and web is not None
    assert web.source.image == "base" and web.source.version == base.version
    assert set(web.amis) == {"us-east-1", "eu-west-1"}


def test_amis_exist_in_moto_with_the_build_id_tag(pipeline: Pipeline) -> None:
    catalog = load_catalog(pipeline.catalog_path)
    for name in ("base", "web"):
        release = catalog.current_release(name)
        assert release is not None
        for region, ami_id in release.amis.items():
            details = pipeline.target.cloud.describe_image(region, ami_id)
            assert details is not None, (name, region)
            assert details.state == "available"
            assert details.tags["stamp:build-id"] == release.build_id


def test_record_changes_nothing_outside_releases(pipeline: Pipeline) -> None:
    after = pipeline.catalog_path.read_text()
    head, _, _ = pipeline.catalog_before.partition("\nreleases:")
    assert after.startswith(head + "\nreleases:")
    assert "web:" in after.partition("\nreleases:")[2]


def test_launch_permissions_are_exactly_the_catalogs_and_a_second_publish_modifies_nothing(
    pipeline: Pipeline,
) -> None:
    catalog = load_catalog(pipeline.catalog_path)
    cloud = pipeline.target.cloud
    release = catalog.current_release("web")
    assert release is not None
    for region, ami_id in release.amis.items():
        shared = cloud.get_launch_permissions(region, ami_id)
        assert shared.accounts == frozenset({"111122223333", "444455556666"}), region
        assert not shared.organizations and not shared.public
    assert isinstance(cloud, AwsCloud)
    before = cloud.call_counts()
    report = publish(catalog, cloud, ["base", "web"], dry_run=False)
    after = cloud.call_counts()
    assert after.get("ModifyImageAttribute", 0) == before.get("ModifyImageAttribute", 0)
    assert after.get("PutParameter", 0) == before.get("PutParameter", 0)
    assert not [line for line in report.lines() if line.lstrip().startswith(("+", "-"))]


def test_a_fresh_instance_has_the_images_files_and_packages(pipeline: Pipeline) -> None:
    catalog = load_catalog(pipeline.catalog_path)
    launched = launch_instances(catalog, "web", pipeline.target, count=2)
    assert len({item.instance_id for item in launched}) == 2
    for item in launched:
        check = subprocess.run(
            [*item.ssh.split(), "dpkg-query -W -f='${Status}' nginx; cat /etc/stamp-instance; curl -fsS localhost"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
        assert "install ok installed" in check.stdout
        assert f"index={item.index} count=2" in check.stdout
        assert "stamp" in check.stdout.lower()


def test_a_newer_vendor_image_in_the_local_cloud_rebuilds_base_and_its_children(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    local.up(
        pipeline.workspace,
        [
            local.SeedImage(
                name="debian-12-amd64-20261125-0815",
                owner_id="136693071363",
                creation_date="2026-11-25T08:15:00.000Z",
            )
        ],
    )
    capsys.readouterr()
    code = main(
        ["plan", "--base", "HEAD", "--format", "json", "--cloud", "local", "--catalog", str(pipeline.catalog_path)]
    )
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    reasons = {item["name"]: {r["kind"] for r in item["reasons"]} for item in plan["images"]}
    assert "new_source_image" in reasons["base"]
    assert reasons["web"] == {"parent_rebuilt"}
    assert "parent_rebuilt" in reasons["app"]
    assert plan["order"].index("base") < plan["order"].index("web")


def test_the_image_itself_carries_no_identity(pipeline: Pipeline) -> None:
    """Safe to stamp: no host keys, login keys, history or machine ID baked into the image."""
    catalog = load_catalog(pipeline.catalog_path)
    release = catalog.current_release("web")
    assert release is not None and pipeline.target.local is not None
    engine = pipeline.target.local.engine_handle
    probe = (
        "ls /etc/ssh/ssh_host_* /home/*/.ssh/authorized_keys /root/.ssh/authorized_keys /root/.bash_history"
        " /var/lib/dbus/machine-id 2>/dev/null; printf 'machine-id:%s' \"$(cat /etc/machine-id)\""
    )
    done = engine.run(
        ["run", "--rm", "--entrypoint", "/bin/sh", local.container_image_for(release.amis["us-east-1"]), "-c", probe],
        what="inspecting the web image",
        check=False,
    )
    assert done.stdout.strip() == "machine-id:", done.stdout + done.stderr


def test_a_failing_image_test_stops_the_release_before_record_and_publish(pipeline: Pipeline) -> None:
    tests = pipeline.workspace / "images" / "broken" / "tests"
    tests.mkdir(parents=True)
    (tests / "test_broken.py").write_text(FAILING_TEST)
    catalog_text = pipeline.catalog_path.read_text().replace(
        "\nreleases:",
        '\n  broken:\n    parent: base\n    tests: images/broken/tests\n    share: {accounts: ["111122223333"]}\n'
        "\nreleases:",
        1,
    )
    pipeline.catalog_path.write_text(catalog_text)
    outcomes = release_images(
        pipeline.catalog_path, ["broken"], pipeline.target, build_root=pipeline.workspace / "build"
    )
    assert len(outcomes) == 1 and outcomes[0].error is not None
    assert outcomes[0].error.exit_code == 4
    assert "test_this_image_has_a_file_nobody_installed" in str(outcomes[0].error)
    assert pipeline.catalog_path.read_text() == catalog_text
    built = (pipeline.workspace / "build" / "broken" / "result.json").read_text()
    assert '"verified": "failed"' in built
    amis = json.loads(built)["amis"]
    for region, ami_id in amis.items():
        assert not pipeline.target.cloud.get_launch_permissions(region, ami_id)


# -- chain of custody on the local cloud (docs/custody.md) ----------------------------------------------------


def _stamp(pipeline: Pipeline, *argv: str) -> int:
    common = ["--catalog", str(pipeline.catalog_path), "--cloud", "local"]
    out = [] if argv[0] in ("gc", "publish", "lookup") else ["--out", str(pipeline.workspace / "build")]
    return main([*argv, *common, *out])


def _built_web(pipeline: Pipeline) -> dict[str, str]:
    assert _stamp(pipeline, "build", "web") == 0
    assert _stamp(pipeline, "verify", "web") == 0
    amis: dict[str, str] = json.loads((pipeline.workspace / "build" / "web" / "result.json").read_text())["amis"]
    for region, ami_id in amis.items():
        details = pipeline.target.cloud.describe_image(region, ami_id)
        assert details is not None and details.tags[VERIFIED_TAG] == VERIFIED
    time.sleep(1.1)  # older than gc's --older-than 1s
    return amis


def test_gc_keeps_a_verified_build_no_catalog_names_and_record_takes_it(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    amis = _built_web(pipeline)
    capsys.readouterr()
    assert _stamp(pipeline, "gc", "--older-than", "1s") == 0
    err = capsys.readouterr().err
    for region, ami_id in amis.items():
        assert pipeline.target.cloud.describe_image(region, ami_id) is not None
        assert f"kept          image           {ami_id}" in err
    assert "verified build, kept 2w (--keep-verified)" in err
    assert _stamp(pipeline, "record", "web") == 0
    assert load_catalog(pipeline.catalog_path).current_release("web").amis == amis  # type: ignore[union-attr]


def test_record_refuses_a_verified_build_whose_amis_gc_removed(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first-round hole: build, verify, gc, record used to record deleted AMIs that lookup then printed."""
    before = pipeline.catalog_path.read_bytes()
    amis = _built_web(pipeline)
    assert _stamp(pipeline, "gc", "--older-than", "1s", "--keep-verified", "0s") == 0
    capsys.readouterr()
    assert _stamp(pipeline, "record", "web") == 6
    err = capsys.readouterr().err
    for region, ami_id in amis.items():
        assert f"{ami_id} in {region}: does not exist" in err
    assert pipeline.catalog_path.read_bytes() == before
    assert _stamp(pipeline, "lookup", "web") == 0
    assert not set(amis.values()) & set(capsys.readouterr().out.split())


def test_a_build_from_uncommitted_changes_is_dirty_and_recorded_flagged_locally(pipeline: Pipeline) -> None:
    script = pipeline.workspace / "images" / "web" / "scripts" / "20-site.sh"
    original = script.read_text()
    script.write_text(original + "\n# an uncommitted edit\n")
    try:
        _built_web(pipeline)
    finally:
        script.write_text(original)
    result = json.loads((pipeline.workspace / "build" / "web" / "result.json").read_text())
    assert result["dirty"] is True
    assert result["dirty_inputs"] == ["images/web/scripts/20-site.sh"]
    assert _stamp(pipeline, "record", "web") == 0
    current = load_catalog(pipeline.catalog_path).current_release("web")
    assert current is not None and current.dirty
    assert "      dirty: true\n" in pipeline.catalog_path.read_text()


# -- what is inside the image (docs/inventory.md) ------------------------------------------------------------------


def test_verify_writes_the_inventory_and_the_sbom_and_notes_compare_two_releases(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second release of base, built, verified (and so inventoried) and recorded as the release did the first."""
    build = pipeline.workspace / "build" / "base"
    assert _stamp(pipeline, "build", "base") == 0
    assert _stamp(pipeline, "verify", "base") == 0
    assert _stamp(pipeline, "record", "base") == 0
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
    assert _stamp(pipeline, "notes", "base", "--format", "json") == 0
    notes = json.loads(capsys.readouterr().out)
    current = load_catalog(pipeline.catalog_path).current_release("base")
    assert current is not None and (notes["version"], notes["previous"]) == (current.version, current.version - 1)
    # Built twice from the same inputs minutes apart: the same packages.
    assert notes["upgraded"] == notes["downgraded"] == notes["added"] == notes["removed"] == []
    assert notes["kernel"] == {"from": found.kernel, "to": found.kernel}
