"""What is inside an image (docs/inventory.md): parsing what the instance printed (recorded dpkg-query, rpm and
changelog output), comparing two inventories, the CVEs a changelog names, and the CycloneDX SBOM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from stamp.catalog import inventory as inv
from stamp.commands.inventory import SCRIPT, parse_inventory, read, sbom_json, sections, take
from stamp.errors import ProcessError, VerifyError
from stamp.hosts.base import Host

# `dpkg-query -W -f=DPKG_FORMAT` on a bookworm instance, cut down; `rc` is removed with its configuration kept.
DPKG = (
    "ii \tbash\t5.2.15-2+b7\tamd64\tbash\t5.2.15-2\n"
    "ii \tlibc6\t2.36-9+deb12u8\tamd64\tglibc\t2.36-9+deb12u8\n"
    "ii \tlibc6\t2.36-9+deb12u8\ti386\tglibc\t2.36-9+deb12u8\n"
    "ii \tlibssl3\t3.0.15-1~deb12u1\tamd64\topenssl\t3.0.15-1~deb12u1\n"
    "rc \tlibssl1.1\t1.1.1w-0+deb11u1\tamd64\topenssl\t1.1.1w-0+deb11u1\n"
    "ii \topenssl\t3.0.15-1~deb12u1\tamd64\topenssl\t3.0.15-1~deb12u1\n"
    "hi \ttzdata\t2024a-0+deb12u1\tall\ttzdata\t2024a-0+deb12u1\n"
)

# `rpm -qa --queryformat RPM_FORMAT` on a Fedora instance, cut down: an epoch, two kernels installed at once, a
# multilib pair and the pseudo-package of an imported signing key.
RPM = (
    "bash\t(none)\t5.2.26\t3.fc40\tx86_64\tbash-5.2.26-3.fc40.src.rpm\n"
    "openssl-libs\t1\t3.2.2\t3.fc40\tx86_64\topenssl-3.2.2-3.fc40.src.rpm\n"
    "kernel-core\t(none)\t6.9.7\t200.fc40\tx86_64\tkernel-6.9.7-200.fc40.src.rpm\n"
    "kernel-core\t(none)\t6.10.3\t200.fc40\tx86_64\tkernel-6.10.3-200.fc40.src.rpm\n"
    "gpg-pubkey\t(none)\ta15b79cc\t63d04c2c\t(none)\t(none)\n"
    "glibc\t(none)\t2.39\t17.fc40\ti686\tglibc-2.39-17.fc40.src.rpm\n"
    "glibc\t(none)\t2.39\t17.fc40\tx86_64\tglibc-2.39-17.fc40.src.rpm\n"
)

# The first lines of /usr/share/doc/openssl/changelog.Debian.gz: the last entry is cut off by `head`.
OPENSSL_CHANGELOG = """\
openssl (3.0.16-1~deb12u1) bookworm-security; urgency=medium

  * Import 3.0.16
    - CVE-2024-9143 (Low-level invalid GF(2^m) parameters lead to OOB memory
      access).
    - CVE-2024-13176 (Timing side-channel in ECDSA signature computation).

 -- Jane Doe <jane@example.org>  Mon, 17 Feb 2025 21:12:05 +0100

openssl (3.0.15-1~deb12u1) bookworm; urgency=medium

  * Import 3.0.15
    - CVE-2024-5535 (SSL_select_next_proto buffer overread).
    - CVE-2024-6119 (Possible denial of service in X.509 name checks).

 -- Jane Doe <jane@example.org>  Sun, 08 Sep 2024 11:17:36 +0200

openssl (3.0.14-1~deb12u2) bookworm; urgency=medium

  * Fix regression in CVE-2024-4741 handling.

 -- Jane Doe <jane@example.org>  Sun, 30 Jun 2024 10:01:12 +0200

openssl (3.0.14-1~deb12u1) bookworm; urgency=medium

  * Import 3.0.14
    - CVE-2024-2511 (Unbounded memory growth with session handling in
"""

BASH_CHANGELOG = """\
bash (5.2.15-2) unstable; urgency=medium

  * Apply upstream patch 15.

 -- John Roe <john@example.org>  Mon, 26 Dec 2022 12:00:00 +0100
"""

SOURCES_LIST = (
    "# See sources.list(5)\n"
    "deb http://mirror.example/debian bookworm main contrib\n"
    "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian"
    " bookworm-updates main\n"
    "deb-src http://mirror.example/debian bookworm main\n"
    "\n"
    "deb http://security.example/debian-security bookworm-security main # security\n"
)

DEB822 = """\
Types: deb deb-src
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://vendor.example/apt
Suites: stable
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGTestKeyTestKey
 -----END PGP PUBLIC KEY BLOCK-----
"""

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"""

# What SCRIPT prints on a dpkg instance (the same recorded pieces, framed as the script frames them).
SCRIPT_OUTPUT = (
    "@@stamp kernel\n6.1.0-28-cloud-amd64\n"
    f"@@stamp os-release\n{OS_RELEASE}"
    f"@@stamp dpkg\n{DPKG}"
    f"@@stamp changelog /usr/share/doc/libssl3/changelog.Debian.gz\n{OPENSSL_CHANGELOG}"
    f"@@stamp changelog /usr/share/doc/openssl/changelog.Debian.gz\n{OPENSSL_CHANGELOG}"
    f"@@stamp changelog /usr/share/doc/bash/changelog.Debian.gz\n{BASH_CHANGELOG}"
    f"@@stamp apt-source /etc/apt/sources.list\n{SOURCES_LIST}\n"
    f"@@stamp apt-source /etc/apt/sources.list.d/debian.sources\n{DEB822}\n"
    "@@stamp end\n"
)


def test_dpkg_output_gives_the_installed_packages_with_their_source() -> None:
    packages = inv.parse_dpkg(DPKG)
    assert [(p.name, p.arch) for p in packages] == [
        ("bash", "amd64"),
        ("libc6", "amd64"),
        ("libc6", "i386"),
        ("libssl3", "amd64"),
        ("openssl", "amd64"),
        ("tzdata", "all"),
    ]
    bash = packages[0]
    assert (bash.version, bash.source, bash.source_version) == ("5.2.15-2+b7", "bash", "5.2.15-2")
    assert packages[3].source == "openssl"


def test_rpm_output_gives_epochs_sources_and_both_kernels_and_no_signing_keys() -> None:
    packages = inv.parse_rpm(RPM)
    assert [(p.name, p.version, p.arch) for p in packages] == [
        ("bash", "5.2.26-3.fc40", "x86_64"),
        ("glibc", "2.39-17.fc40", "i686"),
        ("glibc", "2.39-17.fc40", "x86_64"),
        ("kernel-core", "6.10.3-200.fc40", "x86_64"),
        ("kernel-core", "6.9.7-200.fc40", "x86_64"),
        ("openssl-libs", "1:3.2.2-3.fc40", "x86_64"),
    ]
    ssl = packages[-1]
    assert (ssl.source, ssl.source_version) == ("openssl", "1:3.2.2-3.fc40")
    assert packages[3].source == "kernel"


def test_sources_one_line_and_deb822() -> None:
    found = inv.parse_sources_list(SOURCES_LIST, "/etc/apt/sources.list")
    assert [(s.type, s.uri, s.suite, s.components) for s in found] == [
        ("deb", "http://mirror.example/debian", "bookworm", ["main", "contrib"]),
        ("deb", "http://mirror.example/debian", "bookworm-updates", ["main"]),
        ("deb-src", "http://mirror.example/debian", "bookworm", ["main"]),
        ("deb", "http://security.example/debian-security", "bookworm-security", ["main"]),
    ]
    assert found[1].options == {"arch": "amd64", "signed-by": "/usr/share/keyrings/debian-archive-keyring.gpg"}
    stanzas = inv.parse_deb822_sources(DEB822, "/etc/apt/sources.list.d/debian.sources")
    assert [(s.type, s.uri, s.suite) for s in stanzas] == [
        ("deb", "http://mirror.example/debian", "bookworm"),
        ("deb", "http://mirror.example/debian", "bookworm-updates"),
        ("deb-src", "http://mirror.example/debian", "bookworm"),
        ("deb-src", "http://mirror.example/debian", "bookworm-updates"),
        ("deb", "http://vendor.example/apt", "stable"),
    ]
    assert stanzas[0].options == {"signed-by": "/usr/share/keyrings/debian-archive-keyring.gpg"}
    assert stanzas[-1].options == {"signed-by": "(inline key)"}


def test_changelogs_keep_the_cves_of_each_entry_by_source_and_how_far_back_they_were_read() -> None:
    found = inv.parse_changelogs([OPENSSL_CHANGELOG, OPENSSL_CHANGELOG, BASH_CHANGELOG, "not a changelog\n"])
    assert sorted(found) == ["bash", "openssl"]
    openssl = found["openssl"]
    assert openssl.oldest == "3.0.14-1~deb12u1"
    assert openssl.cves == {
        "3.0.16-1~deb12u1": ["CVE-2024-13176", "CVE-2024-9143"],
        "3.0.15-1~deb12u1": ["CVE-2024-5535", "CVE-2024-6119"],
        "3.0.14-1~deb12u2": ["CVE-2024-4741"],
        "3.0.14-1~deb12u1": ["CVE-2024-2511"],
    }
    assert found["bash"] == inv.ChangelogCves(oldest="5.2.15-2", cves={})


def test_the_script_output_becomes_an_inventory() -> None:
    found = parse_inventory(SCRIPT_OUTPUT, image="base", build_id="base-7-abc", ami_id="ami-0123456789abcdef0")
    assert found.packager == "dpkg" and found.kernel == "6.1.0-28-cloud-amd64"
    assert found.os == inv.OsRelease(id="debian", version_id="12", pretty_name="Debian GNU/Linux 12 (bookworm)")
    assert len(found.packages) == 6 and sorted(found.changelogs) == ["bash", "openssl"]
    assert len(found.sources) == 9
    # What is written is what is read back.
    assert inv.Inventory.model_validate_json(found.model_dump_json()) == found


def test_an_output_cut_short_is_refused() -> None:
    with pytest.raises(VerifyError, match="stopped before its end"):
        sections(SCRIPT_OUTPUT.removesuffix("@@stamp end\n"))


def test_the_script_reads_dpkg_then_rpm_and_prints_only_ascii() -> None:
    assert "dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}" in SCRIPT
    assert "rpm -qa --queryformat '%{NAME}" in SCRIPT
    assert f"head -n {inv.CHANGELOG_LINES}" in SCRIPT
    assert SCRIPT.rstrip().endswith("| tr -cd '\\11\\12\\40-\\176'")


def inventory(
    version: str, *, kernel: str = "6.1.0-28-cloud-amd64", extra: str = "", **changelog: str
) -> inv.Inventory:
    """An inventory of `base` whose openssl (libssl3, openssl) is at `version`."""
    dpkg = DPKG.replace("3.0.15-1~deb12u1", version) + extra
    return inv.Inventory(
        image="base",
        build_id=f"base-{version}",
        ami="ami-0123456789abcdef0",
        collected_at="2026-11-27T12:00:00Z",
        packager="dpkg",
        kernel=kernel,
        packages=inv.parse_dpkg(dpkg),
        changelogs=inv.parse_changelogs(changelog.values()),
    )


def test_diff_names_upgrades_downgrades_additions_and_removals() -> None:
    old = inventory("3.0.15-1~deb12u1", extra="ii \tcurl\t7.88.1-10+deb12u8\tamd64\tcurl\t7.88.1-10+deb12u8\n")
    new = inventory("3.0.16-1~deb12u1", extra="ii \tvim-tiny\t2:9.0.1378-2\tamd64\tvim\t2:9.0.1378-2\n")
    new = new.model_copy(
        update={
            "packages": [p if p.name != "bash" else p.model_copy(update={"version": "5.2.15-1"}) for p in new.packages]
        }
    )
    diff = inv.diff_packages(old, new)
    assert [(c.name, c.arch, c.old, c.new, c.source) for c in diff.upgraded] == [
        ("libssl3", "amd64", "3.0.15-1~deb12u1", "3.0.16-1~deb12u1", "openssl"),
        ("openssl", "amd64", "3.0.15-1~deb12u1", "3.0.16-1~deb12u1", "openssl"),
    ]
    assert [(c.name, c.old, c.new) for c in diff.downgraded] == [("bash", "5.2.15-2+b7", "5.2.15-1")]
    assert [p.name for p in diff.added] == ["vim-tiny"]
    assert [p.name for p in diff.removed] == ["curl"]


def test_diff_pairs_an_architecture_change_and_rpm_kernels_version_by_version() -> None:
    def rpm(text: str) -> inv.Inventory:
        return inv.Inventory(
            image="f",
            build_id="f-1",
            ami="ami-0123456789abcdef0",
            collected_at="2026-11-27T12:00:00Z",
            packager="rpm",
            kernel="6.10.3-200.fc40.x86_64",
            packages=inv.parse_rpm(text),
        )

    newer = (
        RPM.replace("kernel-core\t(none)\t6.9.7\t200.fc40\tx86_64\tkernel-6.9.7-200.fc40.src.rpm\n", "").replace(
            "openssl-libs\t1\t3.2.2\t3.fc40\tx86_64\topenssl-3.2.2-3.fc40",
            "openssl-libs\t1\t3.2.2\t10.fc40\tnoarch\topenssl-3.2.2-10.fc40",
        )
        + "kernel-core\t(none)\t6.11.0\t63.fc40\tx86_64\tkernel-6.11.0-63.fc40.src.rpm\n"
    )
    diff = inv.diff_packages(rpm(RPM), rpm(newer))
    assert [(c.name, c.arch, c.old, c.new) for c in diff.upgraded] == [
        ("openssl-libs", "noarch", "1:3.2.2-3.fc40", "1:3.2.2-10.fc40")
    ]
    assert [(p.name, p.version) for p in diff.added] == [("kernel-core", "6.11.0-63.fc40")]
    assert [(p.name, p.version) for p in diff.removed] == [("kernel-core", "6.9.7-200.fc40")]


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.0", "1.0", 0),
        ("2.0.1", "2.0", 1),
        ("1.0a", "1.0", 1),
        ("1.0~rc1", "1.0", -1),
        ("1.0^git1", "1.0", 1),
        ("1.0^git1", "1.01", -1),
        ("1.0010", "1.9", 1),
        ("fc4", "fc.4", 0),
        ("2.0a", "2.0.1", -1),
        ("1:1.0-1", "2.0-1", 1),
        ("6.10.3-200.fc40", "6.9.7-200.fc40", 1),
    ],
)
def test_rpm_versions_compare_as_rpm_does(a: str, b: str, order: int) -> None:
    assert inv.compare_versions("rpm", a, b) == order
    assert inv.compare_versions("rpm", b, a) == -order


def test_dpkg_versions_compare_with_python_debian() -> None:
    assert inv.compare_versions("dpkg", "3.0.16-1~deb12u1", "3.0.15-1~deb12u1") == 1
    assert inv.compare_versions("dpkg", "1.0~rc1-1", "1.0-1") == -1
    assert inv.compare_versions("dpkg", "2:1.0", "1:9.9") == 1


def test_the_cves_fixed_are_those_of_the_entries_newer_than_the_old_version() -> None:
    old = inventory("3.0.15-1~deb12u1")
    new = inventory("3.0.16-1~deb12u1", openssl=OPENSSL_CHANGELOG, bash=BASH_CHANGELOG)
    (fixed,) = inv.cves_fixed(old, new)
    assert (fixed.source, fixed.old, fixed.new, fixed.changelog) == (
        "openssl",
        "3.0.15-1~deb12u1",
        "3.0.16-1~deb12u1",
        "read",
    )
    assert fixed.cves == {"3.0.16-1~deb12u1": ["CVE-2024-13176", "CVE-2024-9143"]}


def test_a_changelog_not_read_back_far_enough_or_not_at_all_is_said() -> None:
    older = inventory("3.0.11-1~deb12u2")
    new = inventory("3.0.16-1~deb12u1", openssl=OPENSSL_CHANGELOG)
    (partial,) = inv.cves_fixed(older, new)
    assert partial.changelog == "partial" and len(partial.cves) == 4
    (missing,) = inv.cves_fixed(older, inventory("3.0.16-1~deb12u1"))
    assert missing.changelog == "missing" and missing.cves == {}


def validate(document: str) -> None:
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document)
    assert errors is None, errors


def test_the_sbom_is_valid_cyclonedx_1_6_with_purls_amis_and_the_build() -> None:
    found = parse_inventory(SCRIPT_OUTPUT, image="base", build_id="base-7-abc", ami_id="ami-0123456789abcdef0")
    amis = {"us-east-1": "ami-0123456789abcdef0", "eu-west-1": "ami-0fedcba9876543210"}
    document = sbom_json(found, amis)
    validate(document)
    sbom = json.loads(document)
    assert sbom["specVersion"] == "1.6"
    properties = {p["name"]: p["value"] for p in sbom["metadata"]["properties"]}
    assert properties["stamp:ami:us-east-1"] == "ami-0123456789abcdef0"
    assert properties["stamp:ami:eu-west-1"] == "ami-0fedcba9876543210"
    assert properties["stamp:build-id"] == "base-7-abc" and properties["stamp:image"] == "base"
    assert properties["stamp:kernel"] == "6.1.0-28-cloud-amd64"
    assert sbom["metadata"]["component"]["name"] == "base"
    purls = {c["purl"] for c in sbom["components"]}
    assert "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64" in purls
    assert {
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u8?arch=amd64",
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u8?arch=i386",
    } <= purls
    assert len(sbom["components"]) == 6
    (root,) = [d for d in sbom["dependencies"] if d["ref"] == sbom["metadata"]["component"]["bom-ref"]]
    assert len(root["dependsOn"]) == 6


def test_an_rpm_sbom_has_rpm_purls_with_the_epoch_as_a_qualifier() -> None:
    found = inv.Inventory(
        image="f",
        build_id="f-1",
        ami="ami-0123456789abcdef0",
        collected_at="2026-11-27T12:00:00Z",
        packager="rpm",
        os=inv.OsRelease(id="fedora", version_id="40"),
        kernel="6.10.3-200.fc40.x86_64",
        packages=inv.parse_rpm(RPM),
    )
    document = sbom_json(found, {})
    validate(document)
    purls = {c["purl"] for c in json.loads(document)["components"]}
    assert "pkg:rpm/fedora/openssl-libs@3.2.2-3.fc40?arch=x86_64&epoch=1" in purls
    assert "pkg:rpm/fedora/kernel-core@6.9.7-200.fc40?arch=x86_64" in purls


class RecordedLauncher:
    """Answers `run` with recorded output, as an instance would; no instance is started."""

    ssh_config = Path("/dev/null")

    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.commands: list[str] = []

    def launch(self, ami_id: str, *, name: str, ssh_user: str, labels: dict[str, str]) -> Host:
        raise NotImplementedError

    def terminate(self, host: Host) -> None:
        raise NotImplementedError

    def run(self, host: Host, command: str) -> str:
        self.commands.append(command)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_take_writes_the_inventory_its_history_copy_and_the_sbom(tmp_path: Path) -> None:
    from builders import build_result
    from stamp.catalog.results import write_result

    write_result(tmp_path, build_result("base", "base-7-abc"))
    launcher = RecordedLauncher(SCRIPT_OUTPUT)
    host = Host("i-1", "127.0.0.1", 2222, "admin")
    out = tmp_path / "base"
    text = read(launcher, host, image="base")
    assert launcher.commands == [SCRIPT]
    take(text, image="base", instance="i-1", ami_id="ami-0123456789abcdef1", build_id="base-7-abc", out=out)
    written = inv.read_inventory(out / "packages.json")
    assert written == inv.read_inventory(out / "inventory" / "base-7-abc.json")
    assert written.build_id == "base-7-abc" and len(written.packages) == 6
    sbom = (out / "sbom.cdx.json").read_text()
    validate(sbom)
    properties = {p["name"]: p["value"] for p in json.loads(sbom)["metadata"]["properties"]}
    assert properties["stamp:ami:eu-west-1"] == "ami-0fedcba987654321f"


def test_read_fails_the_verification_when_the_instance_cannot_be_read() -> None:
    launcher = RecordedLauncher(ProcessError(["ssh"], 255, "", "connection reset"))
    with pytest.raises(VerifyError, match="could not take the package inventory of i-1"):
        read(launcher, Host("i-1", "127.0.0.1", 2222, "admin"), image="base")
