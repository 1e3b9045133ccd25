"""Pending package updates: an image's inventory against the package indexes of its apt sources.

Pure: the signed `Release` text and the `Packages` indexes come from tools/stamp/drivers/aptrepo.py, which
fetches them and checks their signatures. The rules: docs/inventory.md, Updates available.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from debian.debian_support import Version

from stamp.catalog.inventory import AptSource, Inventory

# How many packages a one-line description names before "…".
EXAMPLES = 2


@dataclass(frozen=True)
class IndexFile:
    """One file a Release lists: its path under dists/SUITE/, size and SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ReleaseFile:
    """The parts of a signed Release (InRelease) file stamp uses."""

    suite: str
    codename: str
    label: str
    valid_until: str | None
    files: Mapping[str, IndexFile]

    def security(self, suite_path: str) -> bool:
        """Debian's security archive: suite `bookworm-security` (old: `bookworm/updates`), label Debian-Security."""
        names = (suite_path, self.suite, self.codename, self.label)
        return any("security" in name.lower() for name in names if name)


def parse_release(text: str) -> ReleaseFile:
    """A Release file's text (the signed part of InRelease)."""
    fields: dict[str, str] = {}
    files: dict[str, IndexFile] = {}
    current = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if current == "sha256":
                parts = line.split()
                if len(parts) == 3 and parts[1].isdigit():
                    files[parts[2]] = IndexFile(parts[2], int(parts[1]), parts[0].lower())
            continue
        key, _, value = line.partition(":")
        current = key.strip().lower()
        fields[current] = value.strip()
    return ReleaseFile(
        suite=fields.get("suite", ""),
        codename=fields.get("codename", ""),
        label=fields.get("label", ""),
        valid_until=fields.get("valid-until"),
        files=files,
    )


def packages_path(release: ReleaseFile, component: str, arch: str) -> IndexFile | None:
    """The smallest form of COMPONENT/binary-ARCH/Packages the Release lists (xz, gz, then plain)."""
    for suffix in (".xz", ".gz", ""):
        found = release.files.get(f"{component}/binary-{arch}/Packages{suffix}")
        if found is not None:
            return found
    return None


# Newest version per (name, arch) in one index: what an image could upgrade to from it.
Newest = dict[tuple[str, str], str]

_STANZA_FIELD = re.compile(r"^(Package|Version|Architecture):[ \t]*(\S+)", re.MULTILINE)


def parse_packages(text: str) -> Newest:
    """A Packages index: the newest version of each (name, architecture).

    A regex pass over the stanzas, not python-debian's Deb822: bookworm's main index is 50 MB and ~63,000
    stanzas, which Deb822 takes ~20 s to read and this takes about 1 s.
    """
    newest: Newest = {}
    for stanza in text.split("\n\n"):
        values = dict(_STANZA_FIELD.findall(stanza))
        name, version, arch = values.get("Package"), values.get("Version"), values.get("Architecture")
        if not (name and version and arch):
            continue
        key = (name, arch)
        known = newest.get(key)
        if known is None or Version(version) > Version(known):
            newest[key] = version
    return newest


@dataclass(frozen=True)
class Index:
    """One verified Packages index: where it came from and what it offers."""

    uri: str
    suite: str
    component: str
    arch: str
    security: bool
    newest: Newest


@dataclass(frozen=True)
class Update:
    name: str
    arch: str
    installed: str
    available: str
    suite: str
    security: bool

    def text(self) -> str:
        return f"{self.name} {self.installed} → {self.available}"


@dataclass(frozen=True)
class Unverified:
    """An index that could not be read or whose signature does not check: its packages are unknown."""

    uri: str
    suite: str
    why: str

    def text(self) -> str:
        return f"cannot verify {self.uri} {self.suite}: {self.why}"


@dataclass(frozen=True)
class NoInventory:
    """Why a release's updates were not checked. `stored` says a copy was stored (in S3) but could not be read:
    worth showing on its own line, unlike a release that simply predates inventories."""

    why: str
    stored: bool = False


@dataclass(frozen=True)
class UpdateCheck:
    """Pending updates of one inventory. `unverified` non-empty means the answer is incomplete: never read it as
    "up to date"."""

    updates: tuple[Update, ...] = ()
    unverified: tuple[Unverified, ...] = ()
    checked: int = 0  # indexes read and verified

    @property
    def security(self) -> tuple[Update, ...]:
        return tuple(u for u in self.updates if u.security)

    @property
    def other(self) -> tuple[Update, ...]:
        return tuple(u for u in self.updates if not u.security)

    def summary(self) -> str:
        """`2 security (openssl 3.0.15-1~deb12u1 → 3.0.16-1~deb12u1, libssl3 …), 5 other`."""
        parts = []
        for label, found in (("security", self.security), ("other", self.other)):
            if found:
                shown = ", ".join(u.text() for u in found[:EXAMPLES])
                more = f", {found[EXAMPLES].name} …" if len(found) > EXAMPLES else ""
                parts.append(f"{len(found)} {label} ({shown}{more})")
        return ", ".join(parts) or "none"

    def examples(self, security: bool) -> list[dict[str, str]]:
        found = self.security if security else self.other
        return [{"name": u.name, "installed": u.installed, "available": u.available} for u in found[:EXAMPLES]]


def index_keys(sources: Sequence[AptSource], archs: Iterable[str]) -> list[tuple[str, str, str, str]]:
    """(uri, suite, component, arch) of every binary index the sources name, each once, in order.

    `arch=` on a source narrows the architectures; `Architecture: all` packages are in every binary-ARCH index.
    """
    wanted = sorted(set(archs) - {"all"})
    keys: dict[tuple[str, str, str, str], None] = {}
    for source in sources:
        if source.type != "deb":
            continue
        only = source.options.get("arch")
        for arch in wanted:
            if only is not None and arch not in only.split(","):
                continue
            for component in source.components:
                keys[(source.uri.rstrip("/"), source.suite, component, arch)] = None
    return list(keys)


def pending(inventory: Inventory, indexes: Sequence[Index], unverified: Sequence[Unverified] = ()) -> UpdateCheck:
    """The packages of `inventory` some index offers in a newer version, sorted security first, then by name.

    An update is a security update when a security index offers a version newer than the installed one; the
    version shown is the newest any index offers.
    """
    found: list[Update] = []
    for package in inventory.packages:
        key = (package.name, package.arch)
        # Most offers are the installed version itself: a string compare spares parsing two versions.
        offers = [(i, v) for i in indexes if (v := i.newest.get(key)) is not None and v != package.version]
        if not offers:
            continue
        installed = Version(package.version)
        newer = [(index, Version(offered)) for index, offered in offers if Version(offered) > installed]
        if not newer:
            continue
        best_index, best = max(newer, key=lambda pair: pair[1])
        security = any(index.security for index, _ in newer)
        found.append(Update(package.name, package.arch, package.version, str(best), best_index.suite, security))
    found.sort(key=lambda u: (not u.security, u.name, u.arch))
    return UpdateCheck(tuple(found), tuple(unverified), checked=len(indexes))
