"""Pending package updates (docs/inventory.md, "Updates available" and "The security gate"): the rules on their
own, then against a real signed repository on loopback (gpg, gpgv, HTTP), then through `stamp plan`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aptrepo import AptRepo, Deb
from builders import commit_all, load_text
from stamp.catalog import inventory as inv
from stamp.catalog.load import Image, load_catalog
from stamp.catalog.models import Release
from stamp.catalog.rebuilds import plan as plan_catalogs
from stamp.catalog.updates import (
    Index,
    NoInventory,
    Unverified,
    UpdateCheck,
    index_keys,
    parse_packages,
    parse_release,
    pending,
)
from stamp.cli import main
from stamp.commands.pending import security_gate
from stamp.drivers.aptrepo import DEBIAN_KEYRING, AptIndexes

PROBE = "stamp-probe"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def inventory_of(sources: list[inv.AptSource], **versions: str) -> inv.Inventory:
    packages = [
        inv.Package(name=name.replace("_", "-"), version=v, arch="amd64", source="probe", source_version=v)
        for name, v in versions.items()
    ]
    return inv.Inventory(
        image="base",
        build_id="base-1-abc123",
        ami="ami-0123456789abcdef1",
        collected_at="2026-11-30T10:00:00Z",
        packager="dpkg",
        kernel="6.1.0-28-cloud-amd64",
        sources=sources,
        packages=packages,
    )


def source(uri: str, suite: str) -> inv.AptSource:
    return inv.AptSource(file="/etc/apt/sources.list", type="deb", uri=uri, suite=suite, components=["main"])


# -- the rules ---------------------------------------------------------------------------------------------------


def test_release_files_and_security_suites_are_read_from_the_signed_text() -> None:
    release = parse_release(
        "Origin: Debian\nLabel: Debian-Security\nSuite: oldstable-security\nCodename: bookworm-security\n"
        "Valid-Until: Mon, 07 Dec 2026 00:53:14 UTC\nSHA256:\n"
        " 838af9c803e0c9688cb614537a6e65ec0eaa3e2bf33a0bfa84f78a6c883385cc  2560365 main/binary-amd64/Packages\n"
        " f9556704820a471d41f399a81a2c38c3675d61979d7262c6f3231353a0871ac2   383424 main/binary-amd64/Packages.xz\n"
    )
    assert release.security("bookworm-security") and release.valid_until == "Mon, 07 Dec 2026 00:53:14 UTC"
    assert release.files["main/binary-amd64/Packages.xz"].size == 383424
    plain = parse_release("Label: Debian\nSuite: oldstable\nCodename: bookworm\n")
    assert not plain.security("bookworm") and plain.files == {}


def test_the_newest_version_of_each_package_and_architecture_is_kept() -> None:
    newest = parse_packages(
        "Package: openssl\nVersion: 3.0.15-1~deb12u1\nArchitecture: amd64\n\n"
        "Package: openssl\nVersion: 3.0.16-1~deb12u1\nArchitecture: amd64\nDescription: x\n second line\n\n"
        "Package: tzdata\nVersion: 2025b-0+deb12u1\nArchitecture: all\n\n"
        "Package: broken\nArchitecture: amd64\n"
    )
    assert newest == {("openssl", "amd64"): "3.0.16-1~deb12u1", ("tzdata", "all"): "2025b-0+deb12u1"}


def test_updates_are_security_when_a_security_index_offers_one_and_show_the_newest_version() -> None:
    installed = inventory_of([], openssl="3.0.15-1~deb12u1", bash="5.2.15-2+b2", vim="2:9.0.1378-2", zsh="5.9-4")
    main = Index("http://a", "bookworm", "main", "amd64", False, {("bash", "amd64"): "5.2.15-2+b7"})
    security = Index(
        "http://b",
        "bookworm-security",
        "main",
        "amd64",
        True,
        {("openssl", "amd64"): "3.0.16-1~deb12u1", ("vim", "amd64"): "2:9.0.1378-1", ("zsh", "amd64"): "5.9-4"},
    )
    check = pending(installed, [main, security])
    assert [u.text() for u in check.security] == ["openssl 3.0.15-1~deb12u1 → 3.0.16-1~deb12u1"]
    assert [u.text() for u in check.other] == ["bash 5.2.15-2+b2 → 5.2.15-2+b7"]
    assert (
        check.summary()
        == "1 security (openssl 3.0.15-1~deb12u1 → 3.0.16-1~deb12u1), 1 other (bash 5.2.15-2+b2 → 5.2.15-2+b7)"
    )


def test_a_long_list_is_cut_to_two_examples() -> None:
    installed = inventory_of([], a="1", b="1", c="1")
    index = Index("http://a", "s-security", "main", "amd64", True, {(n, "amd64"): "2" for n in "abc"})
    assert pending(installed, [index]).summary() == "3 security (a 1 → 2, b 1 → 2, c …)"


def test_index_keys_follow_the_sources_components_and_architectures() -> None:
    narrowed = source("http://b/", "bookworm-security").model_copy(update={"options": {"arch": "arm64"}})
    keys = index_keys(
        [source("http://a", "bookworm"), source("http://a/", "bookworm"), narrowed], ["amd64", "all", "amd64"]
    )
    assert keys == [("http://a", "bookworm", "main", "amd64")]


# -- a real signed repository on loopback ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AptRepo]:
    made = AptRepo(tmp_path_factory.mktemp("apt"))
    made.publish("bookworm", [Deb(PROBE, "1.0"), Deb("other-tool", "2.0")])
    made.publish("bookworm-security", [Deb(PROBE, "1.1")], label="stamp-test-security")
    yield made
    made.close()


@pytest.fixture
def served(repo: AptRepo) -> Iterator[str]:
    repo.requests.clear()
    with repo.serve() as uri:
        yield uri


def probe_at(uri: str, version: str = "1.0") -> inv.Inventory:
    return inventory_of(
        [source(uri, "bookworm"), source(uri, "bookworm-security")], stamp_probe=version, other_tool="1.0"
    )


def test_a_signed_repository_gives_its_pending_updates(repo: AptRepo, served: str, tmp_path: Path) -> None:
    check = AptIndexes([repo.keyring], cache=tmp_path).check(probe_at(served))
    assert check.unverified == () and check.checked == 2
    assert [u.text() for u in check.security] == [f"{PROBE} 1.0 → 1.1"]
    assert [u.text() for u in check.other] == ["other-tool 1.0 → 2.0"]


def test_each_index_is_fetched_once_and_an_unchanged_one_comes_from_the_cache(
    repo: AptRepo, served: str, tmp_path: Path
) -> None:
    indexes = AptIndexes([repo.keyring], cache=tmp_path)
    for version in ("1.0", "1.1", "1.0"):
        indexes.check(probe_at(served, version))
    assert sorted(repo.requests) == sorted(
        f"/dists/{suite}/{name}"
        for suite in ("bookworm", "bookworm-security")
        for name in ("InRelease", "main/binary-amd64/Packages.xz")
    )
    repo.requests.clear()
    again = AptIndexes([repo.keyring], cache=tmp_path).check(probe_at(served))
    assert len(again.security) == 1
    assert sorted(repo.requests) == ["/dists/bookworm-security/InRelease", "/dists/bookworm/InRelease"]


def test_the_security_gate_reads_only_security_indexes(repo: AptRepo, served: str, tmp_path: Path) -> None:
    check = AptIndexes([repo.keyring], cache=tmp_path).check(probe_at(served), security_only=True)
    assert [u.name for u in check.updates] == [PROBE]
    assert "/dists/bookworm/main/binary-amd64/Packages.xz" not in repo.requests


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[AptRepo]:
    """A second repository whose suites the tests spoil one way each."""
    made = AptRepo(tmp_path / "repo")
    made.publish("bookworm-security", [Deb(PROBE, "1.1")])
    yield made
    made.close()


def security_probe(uri: str) -> inv.Inventory:
    return inventory_of([source(uri, "bookworm-security")], stamp_probe="1.0")


def test_a_tampered_inrelease_cannot_be_verified_and_hides_nothing(broken: AptRepo, tmp_path: Path) -> None:
    signed = broken.root / "dists" / "bookworm-security" / "InRelease"
    signed.write_bytes(signed.read_bytes().replace(b"Label: stamp-test", b"Label: stamp-tesT"))
    with broken.serve() as uri:
        check = AptIndexes([broken.keyring], cache=tmp_path / "c").check(security_probe(uri))
    assert check.updates == ()
    assert [u.text() for u in check.unverified] == [f"cannot verify {uri} bookworm-security: BAD signature from"
                                                    ' "stamp test archive <archive@example.invalid>"']  # fmt: skip


def test_an_unsigned_index_or_one_signed_by_an_unknown_key_cannot_be_verified(broken: AptRepo, tmp_path: Path) -> None:
    with broken.serve() as uri:
        unknown = AptIndexes([DEBIAN_KEYRING], cache=tmp_path / "a").check(security_probe(uri))
        broken.publish("bookworm-security", [Deb(PROBE, "1.1")], sign=False)
        unsigned = AptIndexes([broken.keyring], cache=tmp_path / "b").check(security_probe(uri))
    assert unknown.updates == unsigned.updates == ()
    assert "No public key" in unknown.unverified[0].why
    assert unsigned.unverified[0].why == "no valid OpenPGP data found."


def test_an_index_that_differs_from_its_signed_digest_cannot_be_verified(broken: AptRepo, tmp_path: Path) -> None:
    index = broken.root / "dists" / "bookworm-security" / "main" / "binary-amd64" / "Packages.xz"
    index.write_bytes(index.read_bytes() + b"\0")
    with broken.serve() as uri:
        check = AptIndexes([broken.keyring], cache=tmp_path / "c").check(security_probe(uri))
    assert check.updates == ()
    assert (
        check.unverified[0].why == "main/binary-amd64/Packages.xz does not match the SHA-256 its signed InRelease lists"
    )


def test_an_expired_release_cannot_be_verified(broken: AptRepo, tmp_path: Path) -> None:
    broken.publish("bookworm-security", [Deb(PROBE, "1.1")], valid_until="Sun, 01 Nov 2026 00:00:00 UTC")
    with broken.serve() as uri:
        check = AptIndexes([broken.keyring], cache=tmp_path / "c").check(security_probe(uri))
    assert check.updates == () and check.unverified[0].why == "expired: Valid-Until Sun, 01 Nov 2026 00:00:00 UTC"


def test_an_unreachable_repository_or_a_missing_keyring_is_said(broken: AptRepo, tmp_path: Path) -> None:
    with broken.serve() as uri:
        missing = AptIndexes([tmp_path / "nope.gpg"], cache=tmp_path / "a").check(security_probe(uri))
    gone = AptIndexes([broken.keyring], cache=tmp_path / "b").check(security_probe(uri))
    assert missing.unverified[0].why == f"keyring not found: {tmp_path / 'nope.gpg'}"
    assert gone.unverified and "Connection refused" in gone.unverified[0].why


# -- the gate and the plan, through the catalog ------------------------------------------------------------------

CATALOG = """\
version: 1
defaults:
  apt_keyrings: [keys/archive.gpg]
  {extra}
images:
  base:
    source:
      filter: {{name: "debian-12-amd64-*", owners: ["136693071363"]}}
    provision: [images/base/setup.sh]
    tests: images/base/tests
  web:
    parent: base
    provision: [images/base/setup.sh]
    tests: images/base/tests
releases:
  base:
    - version: 1
      amis: {{us-east-1: ami-0123456789abcdef1}}
      built_at: "2026-11-29T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: base-1-abc123
      source: {{amis: {{us-east-1: ami-0aaaaaaaaaaaaaaaa}}}}
      verified: passed
      status: current
  web:
    - version: 1
      amis: {{us-east-1: ami-0123456789abcdef2}}
      built_at: "2026-11-29T11:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: web-1-abc123
      source: {{image: base, version: 1}}
      verified: passed
      status: current
"""


def workspace(root: Path, repo: AptRepo, inventory: inv.Inventory, extra: str = "") -> Path:
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "archive.gpg").write_bytes(repo.keyring.read_bytes())
    (root / "images" / "base" / "tests").mkdir(parents=True)
    (root / "images" / "base" / "tests" / "test_x.py").write_text("def test_x() -> None:\n    assert True\n")
    (root / "images" / "base" / "setup.sh").write_text("#!/bin/sh\n")
    (root / "catalog.yaml").write_text(CATALOG.format(extra=extra))
    inv.write_json(inv.history_path(root / "build", "base", "base-1-abc123"), inventory.model_dump_json())
    commit_all(root)
    return root


def plan(root: Path, *argv: str) -> int:
    return main(["plan", "--base", "HEAD", "--no-source-check", "--catalog", str(root / "catalog.yaml"),
                 "--out", str(root / "build"), *argv])  # fmt: skip


def test_plan_rebuilds_an_image_with_a_security_update_and_its_children(
    repo: AptRepo, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_CACHE_DIR", str(tmp_path / "cache"))
    root = workspace(tmp_path / "ws", repo, probe_at(served))
    assert plan(root, "--format", "json") == 0
    found = json.loads(capsys.readouterr().out)
    assert found["order"] == ["base", "web"]
    reason = found["images"][0]["reasons"][0]
    assert reason == {
        "kind": "updates_available",
        "detail": f"1 security ({PROBE} 1.0 → 1.1), 1 other (other-tool 1.0 → 2.0)",
        "security": 1,
        "other": 1,
        "examples": {
            "security": [{"name": PROBE, "installed": "1.0", "available": "1.1"}],
            "other": [{"name": "other-tool", "installed": "1.0", "available": "2.0"}],
        },
        "updates": [
            {"name": PROBE, "arch": "amd64", "installed": "1.0", "available": "1.1", "security": True},
        ],
    }
    assert found["images"][1]["reasons"] == [{"kind": "parent_rebuilt", "detail": "base"}]
    assert found["update_notes"] == ["updates not checked for 1 image without an inventory: web v1"]
    assert plan(root) == 0
    table = capsys.readouterr().err
    assert f"updates available: 1 security ({PROBE} 1.0 → 1.1), 1 other" in table
    assert plan(root, "--format", "markdown") == 0
    markdown = capsys.readouterr().out
    assert "<details><summary>base: 1 pending update</summary>" in markdown
    assert "| stamp\\-probe | 1\\.0 | 1\\.1 | yes |" in markdown


def test_plan_follows_rebuild_on_updates(
    repo: AptRepo, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_CACHE_DIR", str(tmp_path / "cache"))
    patched = probe_at(served, "1.1")  # only other-tool is behind: not a security update
    root = workspace(tmp_path / "security", repo, patched)
    assert plan(root, "--format", "json") == 0
    found = json.loads(capsys.readouterr().out)
    assert found["order"] == []
    assert found["update_notes"] == [
        "base: 1 other (other-tool 1.0 → 2.0) pending (rebuild.on_updates: security)",
        "updates not checked for 1 image without an inventory: web v1",
    ]
    every = workspace(tmp_path / "all", repo, patched, extra="rebuild: {on_updates: all}")
    assert plan(every, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["order"] == ["base", "web"]
    repo.requests.clear()
    never = workspace(tmp_path / "never", repo, probe_at(served), extra="rebuild: {on_updates: never}")
    assert plan(never, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["order"] == [] and repo.requests == []


def test_plan_says_cannot_verify_for_a_tampered_index_never_up_to_date(
    broken: AptRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_CACHE_DIR", str(tmp_path / "cache"))
    signed = broken.root / "dists" / "bookworm-security" / "InRelease"
    signed.write_bytes(signed.read_bytes().replace(b"Suite: bookworm-security", b"Suite: bookworm-securitY"))
    with broken.serve() as uri:
        root = workspace(tmp_path / "ws", broken, inventory_of([source(uri, "bookworm-security")], stamp_probe="1.0"))
        assert plan(root) == 0
        table = capsys.readouterr().err
        assert plan(root, "--format", "markdown") == 0
        markdown = capsys.readouterr().out
    assert "nothing to build" in table
    assert f"package updates:\n  base: cannot verify {uri} bookworm-security: BAD signature" in table
    assert "up to date" not in table
    assert "cannot verify" in markdown and "**Package updates**" in markdown


def test_no_update_check_reads_nothing_and_says_so(
    repo: AptRepo, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace(tmp_path / "ws", repo, probe_at(served))
    assert plan(root, "--no-update-check") == 0
    assert "Pending package updates were not checked (--no-update-check)." in capsys.readouterr().err
    assert repo.requests == []


def test_the_security_gate_fails_a_build_with_pending_security_updates(
    repo: AptRepo, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_CACHE_DIR", str(tmp_path / "cache"))
    root = workspace(tmp_path / "ws", repo, probe_at(served))
    catalog = load_catalog(root / "catalog.yaml")
    assert security_gate(catalog, catalog.images["base"], probe_at(served)) == [
        f"stamp::security-updates: 1 pending (verify.max_security_updates: 0): {PROBE} 1.0 → 1.1"
    ]
    assert security_gate(catalog, catalog.images["base"], probe_at(served, "1.1")) == []
    lenient = workspace(tmp_path / "lenient", repo, probe_at(served), extra="verify: {max_security_updates: 1}")
    off = workspace(tmp_path / "off", repo, probe_at(served), extra="verify: {max_security_updates: null}")
    for path in (lenient, off):
        catalog = load_catalog(path / "catalog.yaml")
        assert security_gate(catalog, catalog.images["base"], probe_at(served)) == []


def test_the_security_gate_fails_closed_on_a_security_index_it_cannot_verify(
    broken: AptRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_CACHE_DIR", str(tmp_path / "cache"))
    broken.publish("bookworm-security", [Deb(PROBE, "1.0")], sign=False)
    with broken.serve() as uri:
        inventory = inventory_of([source(uri, "bookworm-security")], stamp_probe="1.0")
        root = workspace(tmp_path / "ws", broken, inventory)
        catalog = load_catalog(root / "catalog.yaml")
        problems = security_gate(catalog, catalog.images["base"], inventory)
    assert problems == [f"stamp::security-updates: cannot verify {uri} bookworm-security: no valid OpenPGP data found."]


def test_unverified_is_never_an_update() -> None:
    check = pending(inventory_of([], a="1"), [], [Unverified("http://a", "s", "why")])
    assert check.updates == () and check.summary() == "none"


def test_a_stored_inventory_that_cannot_be_read_is_named_and_others_are_counted() -> None:
    root_catalog = load_text(CATALOG.format(extra=""))

    def lookup(image: Image, release: Release) -> UpdateCheck | NoInventory:
        if image.name == "base":
            return NoInventory("s3://bucket/golden/base/1/packages.json cannot be read: AccessDenied", stored=True)
        return NoInventory("build/web/inventory/web-1-abc123.json does not exist")

    found = plan_catalogs(root_catalog, root_catalog, [], source_lookup=None, now=NOW, update_lookup=lookup)
    assert found.images == () and found.updates_checked
    assert found.update_notes == (
        "base v1: updates not checked: s3://bucket/golden/base/1/packages.json cannot be read: AccessDenied",
        "updates not checked for 1 image without an inventory: web v1",
    )
