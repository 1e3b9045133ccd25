"""Loading the catalog: every bad input is refused with file, line and key; the good one resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stamp.catalog.load import load_catalog
from stamp.cli import main
from stamp.errors import CatalogProblems

FIXTURES = Path(__file__).parent / "fixtures" / "catalog"
GOOD = (FIXTURES / "good.yaml").read_text()


def _write(tmp_path: Path, text: str) -> Path:
    """A catalog in the fixture folder (so its script paths resolve), unique per test."""
    path = FIXTURES / f".tmp-{tmp_path.name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _cleanup() -> object:
    yield
    for stale in FIXTURES.glob(".tmp-*.yaml"):
        stale.unlink()


def test_good_catalog_merges_defaults_and_orders_parents_first() -> None:
    catalog = load_catalog(FIXTURES / "good.yaml")
    assert catalog.images["web"].regions == ("us-east-1", "eu-west-1")
    assert catalog.images["web"].ssh_username == "admin"
    assert catalog.images["web"].retention.keep == 3
    assert catalog.topo_order() == ["base", "web"]
    assert catalog.descendants("base") == ["web"]


def test_image_override_replaces_default() -> None:
    text = GOOD.replace(
        "    parent: base\n", "    parent: base\n    instance_type: t3.large\n    regions: [us-east-1]\n"
    )
    catalog = load_catalog(_write(Path("override"), text))
    assert catalog.images["web"].instance_type == "t3.large"
    assert catalog.images["web"].regions == ("us-east-1",)
    assert catalog.images["base"].instance_type == "t3.micro"


BAD_CASES = {
    # name: (replacement (old, new) applied to GOOD, expected line, expected key fragment, message fragment)
    "octal-looking account id": (
        ('accounts: ["111122223333", "444455556666"]', "accounts: [001234567012, '444455556666']"),
        19,
        "images.web.share.accounts[0]",
        "must be a quoted string",
    ),
    "duplicate key": (
        ("    parent: base\n", "    parent: base\n    parent: base\n"),
        17,
        "images.web.parent",
        "duplicate key",
    ),
    "alias": (("    description: base\n", "    description: &d base\n"), 6, "images.base.description", "anchor"),
    "yaml tag": (("    description: base\n", "    description: !!python/name:os.system base\n"), 6, "", "YAML tag"),
    "unknown key": (
        ("    provision: [images/web", "    provison: [images/web"),
        17,
        "images.web.provison",
        "did you mean 'provision'",
    ),
    "missing parent": (("    parent: base\n", "    parent: bsae\n"), 16, "images.web.parent", "did you mean 'base'"),
    "public share without the guard": (
        ('    share: {accounts: ["111122223333", "444455556666"]}', "    share: {public: true}"),
        19,
        "images.web.share.public",
        "allow_public",
    ),
    "malformed organization arn": (
        ("organization/o-exampleorg1", "organisation/o-exampleorg1"),
        13,
        "images.base.share.organizations[0]",
        "arn:aws:organizations::",
    ),
    "malformed ou arn": (("ou/o-exampleorg1/ou-ab12-abcdefgh", "ou-ab12"), 14, "organizational_units[0]", "ou-"),
    "missing script": (
        ("provision: [images/web/provision.sh]", "provision: [images/web/nope.sh]"),
        17,
        "images.web.provision[0]",
        "does not exist",
    ),
    "path traversal": (
        ("provision: [images/web/provision.sh]", "provision: [../../etc/shadow]"),
        17,
        "images.web.provision[0]",
        "must not leave the repository",
    ),
    "absolute path": (
        ("provision: [images/web/provision.sh]", "provision: [/etc/shadow]"),
        17,
        "images.web.provision[0]",
        "relative to the repository root",
    ),
    "unquoted owner": (('owners: ["136693071363"]', "owners: [136693071363]"), 8, "owners[0]", "quoted"),
    "bad region": (
        ("regions: [us-east-1, eu-west-1]", "regions: [us-east-1, europe]"),
        3,
        "defaults.regions[1]",
        "region",
    ),
    "both source and parent": (
        ("    parent: base\n", "    parent: base\n    source: {filter: {name: x, owners: [amazon]}}\n"),
        15,
        "images.web",
        "exactly one",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_exits_1_naming_file_line_and_key(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (old, new), line, key, fragment = BAD_CASES[case]
    assert old in GOOD, case
    path = _write(Path(case.replace(" ", "-")), GOOD.replace(old, new, 1))
    assert main(["validate", "--catalog", str(path), "--out", str(tmp_path / "render")]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(path.name)}:{line}:\d+: ", err), err
    assert key in err, err
    assert fragment in err, err
    assert "Traceback" not in err


def test_cycle_is_reported_with_the_chain() -> None:
    text = GOOD.replace(
        '    source:\n      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}\n', "    parent: web\n"
    )
    with pytest.raises(CatalogProblems) as info:
        load_catalog(_write(Path("cycle"), text))
    assert "cycle" in str(info.value)
    assert "base → web → base" in str(info.value) or "web → base → web" in str(info.value)


def test_symlink_leaving_the_repository_is_refused(tmp_path: Path) -> None:
    link = FIXTURES / "images" / "web" / ".tmp-escape.sh"
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/hostname")
    try:
        text = GOOD.replace("images/web/provision.sh", "images/web/.tmp-escape.sh")
        with pytest.raises(CatalogProblems, match="outside the repository"):
            load_catalog(_write(tmp_path, text))
    finally:
        link.unlink()


def test_several_problems_are_reported_together() -> None:
    text = GOOD.replace("parent: base", "parent: nope").replace('"111122223333"]\n', "111122223333]\n", 1)
    with pytest.raises(CatalogProblems) as info:
        load_catalog(_write(Path("many"), text))
    assert len(info.value.problems) >= 1
    assert all(re.match(r"\S+:\d+:\d+: ", p) for p in info.value.problems)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"version: 1\nimages: {a: \xff}\n", "not valid UTF-8"),
        (b"\x00\x01\x02binary", "NUL bytes"),
        (b"a: &a [x, x]\nb: *a\n", "anchor"),
        (b"- just\n- a list\n", "must be a mapping"),
        (b"version: 1\nimages: {base: [unclosed\n", "not valid YAML"),
    ],
)
def test_junk_is_refused_cleanly(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(content)
    with pytest.raises(CatalogProblems, match=fragment):
        load_catalog(path)


def test_missing_catalog_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CatalogProblems, match="no such file"):
        load_catalog(tmp_path / "catalog.yaml")


def test_validate_passes_on_the_good_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--catalog", str(FIXTURES / "good.yaml"), "--out", str(tmp_path)]) == 0
    assert "packer fmt and packer validate: OK for base, web" in capsys.readouterr().err


def test_the_repository_catalog_loads() -> None:
    catalog = load_catalog(Path(__file__).parents[1] / "catalog.yaml", check_files=False)
    assert set(catalog.images) >= {"base", "web", "app"}
    assert catalog.images["web"].parent == "base"
