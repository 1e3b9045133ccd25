"""How stamp writes a release into catalog.yaml: its lines, and scalars every YAML reader reads back as the same
string."""

from __future__ import annotations

import re

from stamp.catalog.models import Release
from stamp.catalog.yamlsafe import resolve_plain

_SAFE_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")

_NUMBERISH = re.compile(r"[-+0-9._xXoObBeE]+")

# Words a YAML 1.1 reader (PyYAML, ruamel, check-jsonschema) would turn into booleans or null.
_YAML11_WORDS = frozenset(
    w
    for word in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")
    for w in (word, word.title(), word.upper())
)


def render_release(release: Release, dash: int, nl: str) -> str:
    pad = " " * (dash + 2)
    out = [f"{' ' * dash}- version: {release.version}{nl}", f"{pad}amis:{nl}"]
    out += [f"{pad}  {yaml_scalar(region)}: {yaml_scalar(ami)}{nl}" for region, ami in release.amis.items()]
    # Always quoted: an all-digit commit or build id would otherwise be read as a number.
    out.append(f"{pad}built_at: {yaml_quote(release.built_at)}{nl}")
    out.append(f"{pad}commit: {yaml_quote(release.commit)}{nl}")
    out.append(f"{pad}build_id: {yaml_quote(release.build_id)}{nl}")
    source = release.source
    if source.amis:
        out.append(f"{pad}source:{nl}{pad}  amis:{nl}")
        out += [f"{pad}    {yaml_scalar(region)}: {yaml_scalar(ami)}{nl}" for region, ami in source.amis.items()]
        if source.image is not None:
            out.append(f"{pad}  image: {yaml_scalar(source.image)}{nl}")
        if source.version is not None:
            out.append(f"{pad}  version: {source.version}{nl}")
    else:
        parts = []
        if source.image is not None:
            parts.append(f"image: {yaml_scalar(source.image)}")
        if source.version is not None:
            parts.append(f"version: {source.version}")
        out.append(f"{pad}source: {{{', '.join(parts)}}}{nl}")
    # What `defaults.artifacts` stored: one line each, so 1,000 images x 10 releases stay small (docs/inventory.md).
    if release.sbom is not None:
        out.append(f"{pad}sbom: {{uri: {yaml_quote(release.sbom.uri)}, sha256: {yaml_quote(release.sbom.sha256)}}}{nl}")
    if release.packages is not None:
        out.append(f"{pad}packages: {release.packages}{nl}")
    if release.dirty:
        out.append(f"{pad}dirty: true{nl}")
    out.append(f"{pad}verified: {release.verified}{nl}")
    out.append(f"{pad}status: {release.status}{nl}")
    if release.reason is not None:
        out.append(f"{pad}reason: {yaml_quote(release.reason)}{nl}")
    if release.revoke_at is not None:
        out.append(f"{pad}revoke_at: {yaml_quote(release.revoke_at)}{nl}")
    # Rollout channels (docs/rollout.md): one line each, as set_channel and set_forced write them.
    for key, entries in (("channels", release.channels), ("forced", release.forced)):
        if entries:
            body = ", ".join(f"{yaml_scalar(k)}: {yaml_quote(v)}" for k, v in entries.items())
            out.append(f"{pad}{key}: {{{body}}}{nl}")
    return "".join(out)


def yaml_scalar(value: str) -> str:
    """Plain when every YAML reader would read it back as this same string; quoted otherwise."""
    plain = (
        _SAFE_PLAIN.fullmatch(value) is not None
        and value not in _YAML11_WORDS
        and resolve_plain(value) == value
        # `1e5`, `0x1f` or `1_000` read as numbers in YAML 1.1 readers even where 1.2 sees strings.
        and _NUMBERISH.fullmatch(value) is None
    )
    return value if plain else yaml_quote(value)


def yaml_quote(value: str) -> str:
    """A YAML double-quoted scalar; escapes everything that is not printable or that YAML treats as a break."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\t":
            out.append("\\t")
        elif char == "\n":
            out.append("\\n")
        elif _printable(code):
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _printable(code: int) -> bool:
    # YAML's printable set, minus the characters YAML 1.1 treats as line breaks (NEL, LS, PS) and the BOM.
    return (
        0x20 <= code <= 0x7E
        or (0xA0 <= code <= 0xD7FF and code not in (0x2028, 0x2029))
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or 0x10000 <= code <= 0x10FFFF
    )
