"""What is inside an image: the package inventory verification takes, how it is parsed, and how two compare.

Pure: the text comes from the instance (tools/stamp/commands/inventory.py runs the commands), the files are
`build/<image>/packages.json` and `build/<image>/inventory/<build_id>.json`; docs/inventory.md describes both.
"""

from __future__ import annotations

import logging
import re
import shlex
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pydantic
from debian.changelog import Changelog, ChangelogParseError
from debian.deb822 import Deb822
from debian.debian_support import Version
from pydantic import Field

from stamp.catalog.models import Model
from stamp.errors import CatalogError

INVENTORY_FORMAT: Literal[1] = 1
PACKAGES_FILE = "packages.json"
SBOM_FILE = "sbom.cdx.json"
# One file per verified build, named by its build ID: `stamp notes` finds a release's inventory through it.
HISTORY_DIR = "inventory"
# Changelog lines read per package: the newest entries, where the CVEs a rebuild picks up are named.
CHANGELOG_LINES = 200
CVE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")

Packager = Literal["dpkg", "rpm", "none"]


class Package(Model):
    name: str
    version: str
    arch: str
    source: str = Field(description="The source package it was built from (the SRPM's name on RPM systems)")
    source_version: str


class AptSource(Model):
    """One `deb URI SUITE COMPONENT…` line; a deb822 stanza gives one per type, URI and suite."""

    file: str
    type: Literal["deb", "deb-src"]
    uri: str
    suite: str
    components: list[str] = []
    options: dict[str, str] = Field(default={}, description="signed-by, arch, trusted… as the source gives them")


class ChangelogCves(Model):
    """The newest entries of a source package's changelog.Debian.gz, reduced to what notes need."""

    oldest: str = Field(description="The oldest version read: entries before it were past the lines read")
    cves: dict[str, list[str]] = Field(
        default={}, description="Version -> the CVE IDs its entry names; entries naming none are left out"
    )


class OsRelease(Model):
    id: str = ""
    version_id: str = ""
    pretty_name: str = ""


class Inventory(Model):
    format: Literal[1] = INVENTORY_FORMAT
    image: str
    build_id: str
    ami: str = Field(description="The AMI whose instance was inventoried")
    collected_at: str
    packager: Packager
    os: OsRelease = OsRelease()
    kernel: str = Field(description="`uname -r` on the instance; on the local cloud, the host's kernel")
    sources: list[AptSource] = []
    packages: list[Package] = []
    changelogs: dict[str, ChangelogCves] = Field(default={}, description="Source package -> its newest entries")


# -- reading what the instance printed ----------------------------------------------------------------------------

# dpkg-query's fields, tab-separated: status first, so that packages removed but not purged are left out.
DPKG_FORMAT = r"${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n"
RPM_FORMAT = r"%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\n"


def parse_dpkg(text: str) -> list[Package]:
    """`dpkg-query -W -f=DPKG_FORMAT` output: the installed packages (current state `i`), sorted."""
    packages = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or fields[0][1:2] != "i":
            continue
        _status, name, version, arch, source, source_version = fields
        packages.append(
            Package(
                name=name,
                version=version,
                arch=arch,
                source=source or name,
                source_version=source_version or version,
            )
        )
    return sorted(packages, key=lambda p: (p.name, p.arch, p.version))


def parse_rpm(text: str) -> list[Package]:
    """`rpm -qa --queryformat RPM_FORMAT` output, sorted; versions read `EPOCH:VERSION-RELEASE` (no epoch: none).

    The source package and its version come from the SRPM's file name (`openssl-3.0.7-27.el9.src.rpm`); the
    `gpg-pubkey` entries rpm lists for imported keys are not packages and are left out.
    """
    packages = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or fields[0] == "gpg-pubkey":
            continue
        name, epoch, version, release, arch, srpm = fields
        full = f"{version}-{release}" if epoch in ("", "(none)") else f"{epoch}:{version}-{release}"
        source, source_version = _srpm_name(srpm, name, full)
        packages.append(Package(name=name, version=full, arch=arch, source=source, source_version=source_version))
    return sorted(packages, key=lambda p: (p.name, p.arch, p.version))


def _srpm_name(srpm: str, name: str, version: str) -> tuple[str, str]:
    stem = srpm.removesuffix(".rpm").removesuffix(".src").removesuffix(".nosrc")
    parts = stem.rsplit("-", 2)
    if srpm in ("", "(none)") or len(parts) != 3:
        return name, version
    # The SRPM's name has no epoch: the binary's, which is the source's too, is kept in front.
    epoch = version.partition(":")[0] + ":" if ":" in version else ""
    return parts[0], f"{epoch}{parts[1]}-{parts[2]}"


def parse_os_release(text: str) -> OsRelease:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("ID", "VERSION_ID", "PRETTY_NAME"):
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value]
            values[key.strip().lower()] = " ".join(words)
    return OsRelease.model_validate(values)


def parse_sources_list(text: str, file: str) -> list[AptSource]:
    """One-line-style sources (`/etc/apt/sources.list`, `*.list`): `deb [opt=value …] URI SUITE [COMPONENT…]`."""
    found = []
    for raw in text.splitlines():
        line = raw.partition("#")[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind not in ("deb", "deb-src"):
            continue
        rest = rest.strip()
        options: dict[str, str] = {}
        if rest.startswith("["):
            inside, _, rest = rest[1:].partition("]")
            for option in inside.split():
                key, _, value = option.partition("=")
                options[key.lower()] = value
        words = rest.split()
        if len(words) < 2:
            continue
        found.append(
            AptSource(file=file, type=kind, uri=words[0], suite=words[1], components=words[2:], options=options)
        )
    return found


def parse_deb822_sources(text: str, file: str) -> list[AptSource]:
    """deb822 `*.sources` files: one stanza per source, `Enabled: no` ones left out; an inline key is not kept."""
    found = []
    for stanza in Deb822.iter_paragraphs(text.splitlines()):
        fields = {key.lower(): value for key, value in stanza.items()}
        if fields.get("enabled", "yes").strip().lower() == "no":
            continue
        options = {
            key: ("(inline key)" if "BEGIN PGP" in value else " ".join(value.split()))
            for key, value in fields.items()
            if key not in ("types", "uris", "suites", "components", "enabled")
        }
        components = fields.get("components", "").split()
        for kind in fields.get("types", "").split():
            if kind not in ("deb", "deb-src"):
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    found.append(
                        AptSource(file=file, type=kind, uri=uri, suite=suite, components=components, options=options)
                    )
    return found


def parse_changelogs(texts: Iterable[str]) -> dict[str, ChangelogCves]:
    """Source package -> the CVEs its newest changelog entries name, from the first lines of each file.

    Binary packages of one source share its changelog: the first file read for a source is kept.
    """
    found: dict[str, ChangelogCves] = {}
    # In its lenient mode python-debian logs each line it cannot place; the cut-off last entry is expected here.
    quiet = logging.getLogger("debian.changelog")
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        for text in texts:
            _read_changelog(text, found)
    finally:
        quiet.disabled = was_disabled
    return found


def _read_changelog(text: str, found: dict[str, ChangelogCves]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            changelog = Changelog(text, strict=False)
        except (ChangelogParseError, ValueError):
            return  # a changelog python-debian cannot read names no CVEs
    blocks = [block for block in changelog if block.package and block.version is not None]
    source = blocks[0].package if blocks else None
    if source is None or source in found:
        return
    cves = {}
    for block in blocks:
        named = sorted(set(CVE.findall("\n".join(block.changes()))))
        if named:
            cves[str(block.version)] = named
    found[source] = ChangelogCves(oldest=str(blocks[-1].version), cves=cves)


# -- versions --------------------------------------------------------------------------------------------------


def compare_versions(packager: Packager, a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is older than, the same as or newer than `b`: dpkg's rules, or rpm's."""
    if packager == "rpm":
        return _rpm_compare(a, b)
    left, right = Version(a), Version(b)
    return (left > right) - (left < right)


def _rpm_split(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    ver, _, release = rest.partition("-")
    return int(epoch) if epoch.isdigit() else 0, ver, release


def _rpmvercmp(a: str, b: str) -> int:
    """rpm's rpmvercmp: alternating digit and letter segments; digits beat letters, a longer number is newer,
    `~` sorts before anything (even the end), `^` after the end but before anything else."""
    if a == b:
        return 0
    one, two = a, b
    while one or two:
        one, two = _skip_separators(one), _skip_separators(two)
        if one.startswith("~") or two.startswith("~"):
            if not one.startswith("~"):
                return 1
            if not two.startswith("~"):
                return -1
            one, two = one[1:], two[1:]
            continue
        if one.startswith("^") or two.startswith("^"):
            if not one:
                return -1
            if not two:
                return 1
            if not one.startswith("^"):
                return 1
            if not two.startswith("^"):
                return -1
            one, two = one[1:], two[1:]
            continue
        if not one or not two:
            break
        pattern = _DIGITS if one[0].isdigit() else _LETTERS
        first, second = pattern.match(one), pattern.match(two)
        seg1 = first.group() if first else ""
        seg2 = second.group() if second else ""
        one, two = one[len(seg1) :], two[len(seg2) :]
        if not seg2:  # a number against letters: the number is newer
            return 1 if pattern is _DIGITS else -1
        if pattern is _DIGITS:
            seg1, seg2 = seg1.lstrip("0"), seg2.lstrip("0")
            if len(seg1) != len(seg2):
                return 1 if len(seg1) > len(seg2) else -1
        if seg1 != seg2:
            return 1 if seg1 > seg2 else -1
    if not one and not two:
        return 0
    return 1 if one else -1


_DIGITS = re.compile(r"[0-9]+")
_LETTERS = re.compile(r"[A-Za-z]+")
_SEPARATORS = re.compile(r"[^A-Za-z0-9~^]+")


def _skip_separators(text: str) -> str:
    return _SEPARATORS.sub("", text, count=1) if _SEPARATORS.match(text) else text


def _rpm_compare(a: str, b: str) -> int:
    (ea, va, ra), (eb, vb, rb) = _rpm_split(a), _rpm_split(b)
    if ea != eb:
        return 1 if ea > eb else -1
    return _rpmvercmp(va, vb) or _rpmvercmp(ra, rb)


# -- two inventories -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    name: str
    arch: str
    old: str
    new: str
    source: str


@dataclass(frozen=True)
class PackageDiff:
    added: list[Package]
    removed: list[Package]
    upgraded: list[Change]
    downgraded: list[Change]


def diff_packages(old: Inventory, new: Inventory) -> PackageDiff:
    """Packages added, removed, upgraded and downgraded from `old` to `new`.

    A package pairs with the one of the same name and architecture, or of the same name when each side has only
    one (its architecture changed, e.g. to `all`). A name installed in several versions at once on either side
    (RPM kernels) does not pair: its versions come and go, as added and removed.
    """
    packager = new.packager if new.packager != "none" else old.packager
    before: dict[str, list[Package]] = {}
    after: dict[str, list[Package]] = {}
    for package in old.packages:
        before.setdefault(package.name, []).append(package)
    for package in new.packages:
        after.setdefault(package.name, []).append(package)
    diff = PackageDiff([], [], [], [])
    for name in sorted(before.keys() | after.keys()):
        _diff_one(packager, before.get(name, []), after.get(name, []), diff)
    return diff


def _diff_one(packager: Packager, olds: list[Package], news: list[Package], diff: PackageDiff) -> None:
    same = {(p.arch, p.version) for p in olds} & {(p.arch, p.version) for p in news}
    left = [p for p in olds if (p.arch, p.version) not in same]
    right = [p for p in news if (p.arch, p.version) not in same]
    pairs: list[tuple[Package, Package]] = []
    if len(olds) == 1 and len(news) == 1:
        pairs = [(olds[0], news[0])] if left and right else []
    else:
        for arch in sorted({p.arch for p in left} & {p.arch for p in right}):
            one_old = [p for p in olds if p.arch == arch]
            one_new = [p for p in news if p.arch == arch]
            if len(one_old) == 1 and len(one_new) == 1:
                pairs.append((one_old[0], one_new[0]))
    paired_old = [a for a, _ in pairs]
    paired_new = [b for _, b in pairs]
    diff.removed.extend(p for p in left if p not in paired_old)
    diff.added.extend(p for p in right if p not in paired_new)
    for a, b in pairs:
        order = compare_versions(packager, b.version, a.version)
        if order:
            change = Change(b.name, b.arch, a.version, b.version, b.source)
            (diff.upgraded if order > 0 else diff.downgraded).append(change)


@dataclass(frozen=True)
class FixedCves:
    source: str
    old: str
    new: str
    cves: dict[str, list[str]]  # version -> CVE IDs its entry names, newest first
    # "read": the changelog reached back to the old version; "partial": the lines read stopped before it;
    # "missing": no changelog was collected for the source.
    changelog: Literal["read", "partial", "missing"]


def cves_fixed(old: Inventory, new: Inventory) -> list[FixedCves]:
    """Per source package whose version went up: the CVEs named by its changelog entries newer than the old
    version, up to the new one. dpkg images only (rpm's changelogs are not collected)."""
    before = {p.source: p.source_version for p in old.packages}
    found = []
    for source, version in sorted({p.source: p.source_version for p in new.packages}.items()):
        previous = before.get(source)
        if previous is None or new.packager != "dpkg" or compare_versions("dpkg", version, previous) <= 0:
            continue
        entries = new.changelogs.get(source)
        if entries is None:
            found.append(FixedCves(source, previous, version, {}, "missing"))
            continue
        cves = {
            entry: ids
            for entry, ids in entries.cves.items()
            if compare_versions("dpkg", entry, previous) > 0 and compare_versions("dpkg", entry, version) <= 0
        }
        reached = compare_versions("dpkg", entries.oldest, previous) <= 0
        found.append(FixedCves(source, previous, version, cves, "read" if reached else "partial"))
    return found


# -- the files -------------------------------------------------------------------------------------------------


def history_path(build_root: Path, image: str, build_id: str) -> Path:
    return build_root / image / HISTORY_DIR / f"{build_id}.json"


def read_inventory(path: Path) -> Inventory:
    try:
        return Inventory.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise CatalogError(f"{path}: no package inventory") from None
    except pydantic.ValidationError as exc:
        raise CatalogError(f"{path}: not a package inventory stamp can read: {exc.errors()[0]['msg']}") from None


def write_json(path: Path, text: str) -> Path:
    """Atomically, as result.json is written: a killed stamp leaves no truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def unique_sources(sources: Sequence[AptSource]) -> list[AptSource]:
    """In the order found, each once (a file listed twice by the globs, a line repeated)."""
    seen: dict[str, AptSource] = {}
    for source in sources:
        seen.setdefault(source.model_dump_json(), source)
    return list(seen.values())


def summary(diff: PackageDiff, fixed: Sequence[FixedCves]) -> Mapping[str, int]:
    """Counts for one line: `12 packages upgraded, 3 CVEs fixed`."""
    return {
        "added": len(diff.added),
        "removed": len(diff.removed),
        "upgraded": len(diff.upgraded),
        "downgraded": len(diff.downgraded),
        "cves_fixed": len({cve for item in fixed for ids in item.cves.values() for cve in ids}),
    }
