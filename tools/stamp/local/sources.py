"""The Debian mirrors this machine's apt sources configure, turned into mmdebstrap source lines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stamp.errors import BuildError

RELEASE = "bookworm"


@dataclass(frozen=True)
class AptSource:
    """One (type, URI, suite) triple of an apt source, with its components."""

    kind: str
    uri: str
    suite: str
    components: tuple[str, ...]


def parse_one_line(text: str) -> list[AptSource]:
    """Parse the one-line format of `sources.list` and `*.list` files."""
    out: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        # Options sit in brackets after the type: `deb [arch=amd64 signed-by=...] URI suite comp...`.
        if "[" in line and "]" in line:
            head, rest = line.split("[", 1)
            line = head + rest.split("]", 1)[1]
        fields = line.split()
        if len(fields) < 3:
            continue
        out.append(AptSource(fields[0], fields[1].rstrip("/"), fields[2], tuple(fields[3:])))
    return out


def parse_deb822(text: str) -> list[AptSource]:
    """Parse the deb822 format of `*.sources` files (stanzas separated by blank lines)."""
    out: list[AptSource] = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        kinds = stanza.get("types", "").split()
        uris = stanza.get("uris", "").split()
        suites = stanza.get("suites", "").split()
        components = tuple(stanza.get("components", "").split())
        for kind in kinds:
            for uri in uris:
                for suite in suites:
                    out.append(AptSource(kind, uri.rstrip("/"), suite, components))
    return out


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
            continue
        if raw[0] in " \t" and key:
            # A continuation line of a multi-line field (e.g. an inline Signed-By key).
            current[key] += "\n" + raw.strip()
            continue
        if ":" in raw:
            key, value = raw.split(":", 1)
            key = key.strip().lower()
            current[key] = value.strip()
    return stanzas


def read_apt_sources(apt_dir: Path) -> list[AptSource]:
    """Every source configured under `apt_dir` (normally /etc/apt), in apt's reading order."""
    sources: list[AptSource] = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        sources += parse_one_line(main_list.read_text(encoding="utf-8", errors="replace"))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            # apt ignores every other suffix (e.g. `.disabled`, `.save`), and so do we.
            if path.suffix == ".list":
                sources += parse_one_line(path.read_text(encoding="utf-8", errors="replace"))
            elif path.suffix == ".sources":
                sources += parse_deb822(path.read_text(encoding="utf-8", errors="replace"))
    return sources


def debian_source_lines(sources: Iterable[AptSource], release: str = RELEASE) -> list[str]:
    """mmdebstrap source lines for `release`, its -updates and -security suites, where the sources have them.

    Only `deb` entries carrying the `main` component count, so a third-party repository that happens to
    name its suite after the release is not mistaken for a Debian mirror.
    """
    wanted = (release, f"{release}-updates", f"{release}-security")
    seen: set[tuple[str, str]] = set()
    lines: list[str] = []
    for suite in wanted:
        for source in sources:
            if source.kind != "deb" or source.suite != suite or "main" not in source.components:
                continue
            if (source.uri, suite) in seen:
                continue
            seen.add((source.uri, suite))
            lines.append(f"deb {source.uri} {suite} main")
    if not any(line.split()[2] == release for line in lines):
        raise BuildError(
            f"no Debian {release} mirror found in this machine's apt sources, so the local cloud's base image"
            " cannot be built",
            hint=f"configure an apt source for Debian {release} (suite {release}, component main) in"
            " /etc/apt/sources.list or /etc/apt/sources.list.d/, then run `stamp local up` again",
        )
    return lines
