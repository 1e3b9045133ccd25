"""Artifacts beside the catalog (docs/inventory.md): `stamp record` stores each new release's packages.json and
SBOM in the S3 bucket `defaults.artifacts` names, before the catalog names them, on a moto server over HTTP."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from builders import build_result, changed_lines, load_text
from conftest import MakeAmi
from fakes import FakeCloud
from stamp.catalog import inventory as inv
from stamp.catalog.edit import with_release
from stamp.catalog.load import load_catalog
from stamp.catalog.models import Artifacts, SbomRef
from stamp.catalog.results import BuildResult, write_result
from stamp.cli import main
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import Cloud
from stamp.commands.inventory import parse_inventory, take
from stamp.commands.record import SUMMARY_FILE_ENV, ArtifactUpload, record
from stamp.errors import CloudError, MissingResource
from stamp.hosts.ec2 import Ec2Target
from stamp.hosts.local import LocalTarget
from test_custody import _built
from test_inventory import SCRIPT_OUTPUT
from test_lifecycle import _published

BUCKET = "stamp-artifacts-123456789012"
PREFIX = "catalog/releases"
ARTIFACTS_LINE = f"  artifacts: {{bucket: {BUCKET}, prefix: {PREFIX}}}\n"
BUILD_ID = "web-20261127110000-abcdef"
ROOT = Path(__file__).resolve().parents[1]


def _with_artifacts(path: Path, line: str = ARTIFACTS_LINE) -> None:
    text = path.read_text()
    assert text.count("\ndefaults:\n") == 1
    path.write_text(text.replace("\ndefaults:\n", "\ndefaults:\n" + line))


def _result(amis: dict[str, str]) -> BuildResult:
    return build_result(build_id=BUILD_ID, amis=amis, started_at="2026-11-27T11:00:00Z")


def _verified(build_root: Path, result: BuildResult) -> Path:
    """result.json, and the inventory and SBOM a passing verification of it leaves in build/web/."""
    write_result(build_root, result)
    folder = build_root / "web"
    ami_id = result.amis["us-east-1"]
    take(SCRIPT_OUTPUT, image="web", instance="i-1", ami_id=ami_id, build_id=BUILD_ID, out=folder)
    return folder


def _previous_inventory(build_root: Path) -> None:
    """The inventory kept for web 1 (build-1-abcdef, see test_lifecycle._release): openssl one version older."""
    older = SCRIPT_OUTPUT.replace("3.0.15-1~deb12u1", "3.0.14-1~deb12u1")
    kept = parse_inventory(older, image="web", build_id="build-1-abcdef", ami_id="ami-0123456789abcdef0")
    inv.write_json(inv.history_path(build_root, "web", "build-1-abcdef"), kept.model_dump_json())


def _record(path: Path) -> int:
    return main(["record", "web", "--catalog", str(path), "--cloud", "aws", "--out", str(path.parent / "build")])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_record_stores_both_files_and_adds_only_the_sbom_and_packages_lines(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    _with_artifacts(path)
    aws.create_bucket("eu-west-1", BUCKET)  # not the image's first region: S3 finds the bucket anyway
    result = _result(_built(aws, make_ami, BUILD_ID))
    folder = _verified(tmp_path / "build", result)
    _previous_inventory(tmp_path / "build")
    before = path.read_text()

    assert _record(path) == 0
    err = capsys.readouterr().err
    base = f"{PREFIX}/web/2/"
    assert f"artifacts: stored s3://{BUCKET}/{base} (packages.json, sbom.cdx.json; 6 packages)" in err
    assert "notes: web 2: 2 packages upgraded" in err

    # Both objects are there, byte for byte, and the catalog's sha256 is the stored SBOM's.
    for name in ("packages.json", "sbom.cdx.json"):
        assert aws.get_object("us-east-1", BUCKET, base + name) == (folder / name).read_bytes()
    stored_sbom = aws.get_object("eu-west-1", BUCKET, base + "sbom.cdx.json")
    release = load_catalog(path, check_files=False).releases["web"][0]
    assert release.version == 2
    assert release.sbom is not None
    assert release.sbom.uri == f"s3://{BUCKET}/{base}sbom.cdx.json"
    assert release.sbom.sha256 == _sha256(stored_sbom)
    assert release.packages == len(inv.read_inventory(folder / "packages.json").packages) == 6
    head = aws.head_object("us-east-1", BUCKET, base + "sbom.cdx.json")
    assert head is not None and head.size == len(stored_sbom)

    # Byte level: the file is what recording without artifacts writes, plus exactly these lines in the new entry.
    plain = release.model_copy(update={"sbom": None, "packages": None})
    without = with_release(before, "web", plain).splitlines(keepends=True)
    added = [
        f'      sbom: {{uri: "s3://{BUCKET}/{base}sbom.cdx.json", sha256: "{release.sbom.sha256}"}}\n',
        "      packages: 6\n",
    ]
    at = without.index("      source: {image: base, version: 1}\n") + 1  # the new entry's, the first one
    assert path.read_bytes() == "".join(without[:at] + added + without[at:]).encode()
    removed, new_lines = changed_lines(before, path.read_text())
    assert removed == ["      status: current\n"]
    assert len(new_lines) == len(changed_lines(before, "".join(without))[1]) + len(added)
    assert len(added) <= 3  # the budget per release (issue 10)

    # Recording again stores nothing and changes nothing.
    aws.reset_call_counts()
    written = path.read_bytes()
    assert _record(path) == 0
    assert path.read_bytes() == written
    assert not {"PutObject", "CreateBucket"} & set(aws.call_counts())


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_a_missing_bucket_on_aws_writes_nothing_and_exits_5(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    _with_artifacts(path)  # the bucket is the adopter's to make: on AWS stamp never creates it
    _verified(tmp_path / "build", _result(_built(aws, make_ami, BUILD_ID)))
    before = path.read_bytes()

    assert _record(path) == 5
    err = capsys.readouterr().err
    assert path.read_bytes() == before
    assert f"s3://{BUCKET}/{PREFIX}/web/2/packages.json" in err
    assert "NoSuchBucket" in err and "the catalog was not changed" in err
    assert "recorded web" not in err
    with pytest.raises(MissingResource):
        aws.get_object("us-east-1", BUCKET, f"{PREFIX}/web/2/packages.json")


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_without_artifacts_the_files_stay_in_build_and_the_release_has_no_sbom(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    folder = _verified(tmp_path / "build", _result(_built(aws, make_ami, BUILD_ID)))
    aws.reset_call_counts()

    assert _record(path) == 0
    err = capsys.readouterr().err
    assert f"artifacts: kept in {folder}/ (no defaults.artifacts)" in err
    release = load_catalog(path, check_files=False).releases["web"][0]
    assert (release.version, release.sbom, release.packages) == (2, None, None)
    assert "sbom:" not in path.read_text() and "packages:" not in path.read_text()
    assert not {"PutObject", "CreateBucket", "HeadObject"} & set(aws.call_counts())
    assert "notes:" not in err  # no inventory of web 1 was kept


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_a_build_verified_before_inventories_is_recorded_without_the_keys_and_said(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    _with_artifacts(path)
    aws.create_bucket("us-east-1", BUCKET)
    write_result(tmp_path / "build", _result(_built(aws, make_ami, BUILD_ID)))  # no packages.json, no SBOM
    aws.reset_call_counts()

    assert _record(path) == 0
    err = capsys.readouterr().err
    folder = tmp_path / "build" / "web"
    assert (
        f"artifacts: web version 2 is recorded without sbom and packages: no packages.json or sbom.cdx.json in"
        f" {folder}/" in err
    )
    release = load_catalog(path, check_files=False).releases["web"][0]
    assert (release.version, release.sbom, release.packages) == (2, None, None)
    assert "PutObject" not in aws.call_counts()


def test_files_of_another_build_are_not_stored_as_this_ones(tmp_path: Path) -> None:
    """packages.json holds the last passing verification: stored under a release only when it is that build's."""
    cloud = FakeCloud()
    cloud.create_bucket("us-east-1", BUCKET)
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "version: 1\ndefaults:\n" + ARTIFACTS_LINE + "  regions: [us-east-1, eu-west-1]\n"
        "images:\n  base:\n    source: {filter: {name: debian-12-*, owners: [amazon]}}\n  web:\n    parent: base\n"
        "releases: {}\n"
    )
    result = _result({"us-east-1": "ami-0123456789abcdef1", "eu-west-1": "ami-0fedcba987654321f"})
    _verified(tmp_path / "build", result)
    other = result.model_copy(update={"build_id": "web-20261127120000-fedcba"})
    upload = ArtifactUpload(load_catalog(path, check_files=False), Ec2Target(cloud), tmp_path / "build")
    (release,) = record(path, [other], upload=upload)
    assert (release.sbom, release.packages) == (None, None)
    assert not cloud.objects


def _generate_catalog(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("gen_catalog", ROOT / "bench" / "gen_catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.generate_catalog(root)
    return path


def test_the_benchmark_catalog_stays_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1,000 images x 10 releases in 20 regions: what the artifacts add per release, and to the whole file."""
    path = _generate_catalog(tmp_path)
    # A long, realistic location: an account-named bucket and a two-level prefix.
    _with_artifacts(path, f"  artifacts: {{bucket: {BUCKET}, prefix: golden-images/{PREFIX}}}\n")
    original = path.read_text()
    catalog = load_catalog(path, check_files=False)
    image = "img-0123"
    amis = {region: f"ami-{n:017x}" for n, region in enumerate(catalog.images[image].regions, start=1)}
    result = build_result(
        image, f"{image}-20261127110000-abcdef", amis=amis, source={"image": "img-0120", "version": 10}
    )
    folder = tmp_path / "build" / image
    write_result(tmp_path / "build", result)
    take(SCRIPT_OUTPUT, image=image, instance="i-1", ami_id=amis["us-east-1"], build_id=result.build_id, out=folder)
    cloud = FakeCloud()
    cloud.create_bucket("us-east-1", BUCKET)

    (plain,) = record(path, [result])
    without = path.read_bytes()
    path.write_text(original)
    (stored,) = record(path, [result], upload=ArtifactUpload(catalog, Ec2Target(cloud), tmp_path / "build"))
    with_artifacts = path.read_bytes()

    assert stored.version == plain.version == 11 and stored.sbom is not None
    added = len(with_artifacts) - len(without)
    entry = len(without) - len(original.encode())
    releases = sum(len(items) for items in catalog.releases.values())
    projected = len(original.encode()) + added * releases
    with capsys.disabled():
        print(
            f"\nartifacts add {added} bytes and 2 lines to a {entry}-byte release entry ({added / entry:.0%});"
            f" over {releases:,} releases the {len(original.encode()):,}-byte catalog would be {projected:,} bytes"
        )
    assert with_artifacts.count(b"\n") - without.count(b"\n") == 2
    assert added - len(stored.sbom.uri) <= 120  # the 64-digit hash and the keys; the URI is as long as the location
    assert added / entry < 0.25
    assert projected < 16 * 1024 * 1024  # the catalog size stamp reads (docs/catalog.md)
    assert json.loads(cloud.objects[(BUCKET, f"golden-images/{PREFIX}/{image}/11/sbom.cdx.json")][0])


def test_the_artifacts_folder_has_no_empty_parts() -> None:
    assert Artifacts(bucket=BUCKET).folder("web", 3) == "web/3/"
    assert Artifacts(bucket=BUCKET, prefix="a/b").folder("web", 3) == "a/b/web/3/"
    for bad in ("/a", "a/", "a//b", "a b"):
        with pytest.raises(ValueError):
            Artifacts(bucket=BUCKET, prefix=bad)
    with pytest.raises(ValueError):
        Artifacts(bucket="Not_A_Bucket")


@pytest.fixture(params=["fake", "moto"])
def s3(request: pytest.FixtureRequest) -> Cloud:
    """The S3 calls of both clouds, which must agree (as in tests/test_cloud_contract.py)."""
    if request.param == "fake":
        return FakeCloud()
    aws: AwsCloud = request.getfixturevalue("aws")
    return aws


def test_objects_are_stored_read_back_and_missing_ones_named(s3: Cloud) -> None:
    assert s3.create_bucket("eu-west-1", BUCKET) is True
    assert s3.create_bucket("eu-west-1", BUCKET) is False
    assert s3.create_bucket("us-east-1", "stamp-artifacts-use1") is True
    body = b'{"format": 1}\n'
    assert s3.put_object("eu-west-1", BUCKET, "p/web/1/sbom.cdx.json", body, content_type="application/json") == (
        _sha256(body)
    )
    head = s3.head_object("eu-west-1", BUCKET, "p/web/1/sbom.cdx.json")
    assert head is not None and head.size == len(body) and head.sha256 in (None, _sha256(body))
    assert head.uri == f"s3://{BUCKET}/p/web/1/sbom.cdx.json"
    assert s3.get_object("eu-west-1", BUCKET, "p/web/1/sbom.cdx.json") == body
    assert s3.head_object("eu-west-1", BUCKET, "p/web/2/sbom.cdx.json") is None
    with pytest.raises(MissingResource, match=re.escape(f"s3://{BUCKET}/p/web/2/sbom.cdx.json")):
        s3.get_object("eu-west-1", BUCKET, "p/web/2/sbom.cdx.json")
    missing_bucket = re.escape("PutObject in eu-west-1 for s3://no-such-bucket-0/k.json failed")
    with pytest.raises(MissingResource, match=missing_bucket):
        s3.put_object("eu-west-1", "no-such-bucket-0", "k.json", body, content_type="application/json")


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_record_catalog_only_checks_the_amis_and_stores_nothing(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, capsys: pytest.CaptureFixture[str]
) -> None:
    """build-layer.yml's record of the layers before, with the build role: no S3. There is no bucket here, so an
    upload would fail the command (on EC2 stamp never makes one)."""
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    _with_artifacts(path)
    _verified(tmp_path / "build", _result(_built(aws, make_ami, BUILD_ID)))
    argv = [
        "record",
        "web",
        "--catalog-only",
        "--catalog",
        str(path),
        "--cloud",
        "aws",
        "--out",
        str(tmp_path / "build"),
    ]
    assert main(argv) == 0
    assert "artifacts:" not in capsys.readouterr().err
    release = load_catalog(path, check_files=False).releases["web"][0]
    assert release.version == 2 and release.sbom is None and release.packages is None


def test_only_the_local_cloud_makes_the_bucket(tmp_path: Path) -> None:
    """On EC2 the bucket is the adopter's; the local cloud makes it in its moto server when record first needs it."""
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "version: 1\ndefaults:\n" + ARTIFACTS_LINE + "  regions: [us-east-1, eu-west-1]\n"
        "images:\n  base:\n    source: {filter: {name: debian-12-*, owners: [amazon]}}\n  web:\n    parent: base\n"
        "releases: {}\n"
    )
    result = _result({"us-east-1": "ami-0123456789abcdef1", "eu-west-1": "ami-0fedcba987654321f"})
    _verified(tmp_path / "build", result)
    catalog = load_catalog(path, check_files=False)
    ec2 = FakeCloud()
    with pytest.raises(CloudError, match="NoSuchBucket"):
        ArtifactUpload(catalog, Ec2Target(ec2), tmp_path / "build")(result, 1)
    assert "CreateBucket" not in ec2.call_counts()
    local = FakeCloud()
    target = LocalTarget(local, local=None)  # type: ignore[arg-type]  # ensure_bucket needs only the cloud
    stored = ArtifactUpload(catalog, target, tmp_path / "build")(result, 1)
    assert local.buckets == {BUCKET: "us-east-1"}
    assert stored is not None and stored.sbom.uri == f"s3://{BUCKET}/{PREFIX}/web/1/sbom.cdx.json"


def test_later_edits_keep_the_sbom_line_of_an_entry(tmp_path: Path) -> None:
    """A newer release, a revocation and a prune edit the entries around the one-line `sbom:` without harm."""
    from stamp.catalog.edit import set_status, without_releases
    from test_lifecycle import HEAD, _release

    sha = "0" * 63 + "1"
    first = _release(1, {"us-east-1": "ami-00000000000000001", "eu-west-1": "ami-00000000000000002"}, "current")
    first = first.model_copy(
        update={"sbom": SbomRef(uri=f"s3://{BUCKET}/web/1/sbom.cdx.json", sha256=sha), "packages": 176}
    )
    text = with_release(HEAD, "web", first)
    text = with_release(text, "web", _release(2, first.amis, "current"))
    text = set_status(text, "web", 1, "revoked", reason="CVE-2026-1")
    kept = load_text(text).releases["web"]
    assert [(r.version, r.status, r.packages) for r in kept] == [(2, "current", None), (1, "revoked", 176)]
    assert kept[1].sbom is not None and kept[1].sbom.sha256 == sha
    assert "sbom:" not in without_releases(text, "web", [1])


def _verified_build(build_root: Path, result: BuildResult, script_output: str) -> None:
    """What a passing verification of `result` leaves in build/web/, from an instance that printed `script_output`."""
    write_result(build_root, result)
    take(script_output, image="web", instance="i-1", ami_id=result.amis["us-east-1"], build_id=result.build_id,
         out=build_root / "web")  # fmt: skip


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_record_reads_the_previous_inventory_from_s3_and_writes_the_summary_lines(
    tmp_path: Path,
    aws: AwsCloud,
    make_ami: MakeAmi,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A runner that starts empty, as CI's: web 2's inventory is only in S3 when web 3 is recorded."""
    path, _ = _published(tmp_path, aws, make_ami, {1: "current"})
    _with_artifacts(path)
    aws.create_bucket("us-east-1", BUCKET)
    build = tmp_path / "build"
    summary_file = tmp_path / "summaries.txt"
    summary_file.write_text("web 9: left by an earlier run\n")
    monkeypatch.setenv(SUMMARY_FILE_ENV, str(summary_file))
    older = SCRIPT_OUTPUT.replace("3.0.15-1~deb12u1", "3.0.14-1~deb12u1")
    _verified_build(build, _result(_built(aws, make_ami, BUILD_ID)), older)

    # web 2: web 1 has no inventory anywhere (no sbom), so no summary line, and record says why.
    assert _record(path) == 0
    err = capsys.readouterr().err
    assert "notes: no summary for web 2: no inventory of web 1: " in err
    assert "and the release has no sbom" in err
    assert summary_file.read_text() == "", "written over: nothing for a release without both inventories"

    # A fresh runner: only web 3's build is in build/. web 2's packages.json is in S3, beside its SBOM.
    shutil.rmtree(build)
    newer_id = "web-20261127113000-fedcba"
    newer = build_result(build_id=newer_id, amis=_built(aws, make_ami, newer_id), started_at="2026-11-27T11:30:00Z")
    _verified_build(build, newer, SCRIPT_OUTPUT)
    assert _record(path) == 0
    err = capsys.readouterr().err
    (line,) = summary_file.read_text().splitlines()
    assert line.startswith("web 3: 2 packages upgraded")
    assert f"notes: {line}" in err.splitlines()
    kept = inv.history_path(build, "web", BUILD_ID)
    assert kept.read_bytes() == aws.get_object("us-east-1", BUCKET, f"{PREFIX}/web/2/packages.json")

    # Recording the same build again adds no release: the file is written over, empty.
    assert _record(path) == 0
    assert summary_file.read_text() == ""
