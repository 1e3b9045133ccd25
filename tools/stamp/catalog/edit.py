"""Surgical text edits of `releases:` in catalog.yaml: every byte outside the lines they must change stays."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from stamp.catalog import yamlsafe
from stamp.catalog.models import Release
from stamp.catalog.yamlsafe import resolve_plain
from stamp.errors import CatalogError, YamlProblem

_STATUSES = ("current", "previous", "deprecated", "revoked")

_RELEASES_LINE = re.compile(r"^(?:releases|\"releases\"|'releases')[ \t]*:(?P<rest>[^\n]*)$", re.MULTILINE)

_TOP_LEVEL_LINE = re.compile(r"^[^ \t\r\n#]", re.MULTILINE)

_KEY = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]+|$)")

_SCALAR = re.compile(
    r"(?:\"(?P<dq>[^\"\\\n]*)\"|'(?P<sq>[^'\n]*)'|(?P<plain>[^#\s][^#\n]*?))?(?P<tail>[ \t]*(?:#.*)?)$"
)

_SAFE_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")

_NUMBERISH = re.compile(r"[-+0-9._xXoObBeE]+")

# Words a YAML 1.1 reader (PyYAML, ruamel, check-jsonschema) would turn into booleans or null.
_YAML11_WORDS = frozenset(
    w
    for word in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")
    for w in (word, word.title(), word.upper())
)


def with_release(text: str, image: str, release: Release) -> str:
    """`text` with `release` first (newest version first) under `releases.<image>`; every other byte unchanged.

    A new current release turns the old `status: current` into `previous`, unless the new one was built before
    the current one (an older build that finished late): then it goes in as `previous` and nothing else changes.
    """
    doc = _Releases.find(text)
    nl = doc.newline
    block = doc.image_block(image)
    if block is None:
        head, tail = doc.ensure_block_form()
        indent = doc.key_indent
        entry = f"{' ' * indent}{_scalar(image)}:{nl}" + _render(release, indent + 2, nl)
        at = _end_of_content(head, doc.section_start(head), doc.section_end(head))
        return _join(head, at, entry, nl) + tail
    items = block.items()
    versions = {item.version for item in items}
    if release.version in versions:
        raise CatalogError(
            f"releases.{image} already has version {release.version}",
            hint="record a new build; versions are never reused",
        )
    current = next((item for item in items if item.status == "current"), None)
    status = release.status
    edits: list[tuple[int, str]] = []
    if status == "current" and current is not None:
        if current.built_at is not None and release.built_at < current.built_at:
            status = "previous"
        else:
            edits.append(current.set_field("status", "previous"))
    new = release.model_copy(update={"status": status})
    position = next((item for item in items if (item.version or 0) < release.version), None)
    rendered = _render(new, block.dash_indent, nl)
    lines = block.lines[:]
    for index, line in edits:
        lines[index] = line
    at_line = position.first if position is not None else (items[-1].last_content + 1 if items else None)
    if at_line is None:
        # `image: []` or a list with no items yet: the items go right after the key line.
        lines[0] = _drop_empty_flow(lines[0], "[]")
        at_line = 1
    lines.insert(at_line, rendered)
    return text[: block.start] + "".join(lines) + text[block.end :]


def set_status(text: str, image: str, version: int, status: str, reason: str | None = None) -> str:
    """Sets one release's status (and reason); making one current turns the other current one `previous`."""
    if status not in _STATUSES:
        raise CatalogError(f"status must be one of {', '.join(_STATUSES)}, not '{status}'")
    block, target = _release_item(text, image, version)
    lines = block.lines[:]
    edits = [target.set_field("status", status)]
    if status == "current":
        edits += [i.set_field("status", "previous") for i in block.items() if i.status == "current" and i is not target]
    for index, line in edits:
        lines[index] = line
    text = text[: block.start] + "".join(lines) + text[block.end :]
    return text if reason is None else set_field(text, image, version, "reason", reason)


def set_field(text: str, image: str, version: int, key: str, value: str | None) -> str:
    """Sets one scalar field of a release to the quoted `value` (a new one goes right after `status`), or with
    None removes it; every other byte unchanged."""
    block, target = _release_item(text, image, version)
    lines = block.lines[:]
    line = f"{' ' * target.inner}{key}: {_quote(value)}{_Releases.find(text).newline}" if value is not None else None
    if key in target.fields:
        index = target.fields[key]
        # A value stamp did not write may continue on deeper lines: those go too.
        end = index + 1
        while end <= target.last_content and _indent(lines[end]) > target.inner:
            end += 1
        lines[index:end] = [line] if line is not None else []
    elif line is not None:
        lines.insert(target.fields["status"] + 1, line)
    return text[: block.start] + "".join(lines) + text[block.end :]


def set_channel(text: str, image: str, version: int, channel: str, time: str) -> str:
    """Records that a release entered `channel` at `time`: its one-line `channels: {…}` gains (or updates) that
    entry, and is added at the end of the release when it has none; every other byte unchanged."""
    return _set_flow_entry(text, image, version, "channels", channel, time)


def set_forced(text: str, image: str, version: int, channel: str, reason: str) -> str:
    """Records why a release entered `channel` before its soak time (`stamp promote --force --reason`), in the
    release's one-line `forced: {…}`, the way set_channel does."""
    return _set_flow_entry(text, image, version, "forced", channel, reason)


def _set_flow_entry(text: str, image: str, version: int, key: str, name: str, value: str) -> str:
    block, target = _release_item(text, image, version)
    lines = block.lines[:]
    nl = _Releases.find(text).newline
    entries: dict[str, str] = {}
    if key in target.fields:
        index = target.fields[key]
        # A value stamp did not write (block style, or on several lines) is read, then written back as one line.
        end = index + 1
        while end <= target.last_content and _indent(lines[end]) > target.inner:
            end += 1
        entries = _read_mapping(lines[index:end], target.inner, key, image, version)
        at, count = index, end - index
    else:
        at, count = target.last_content + 1, 0
        if not lines[at - 1].endswith("\n"):  # the file's last line, without a line break
            lines[at - 1] += nl
    entries[name] = value
    body = ", ".join(f"{_scalar(k)}: {_quote(v)}" for k, v in entries.items())
    lines[at : at + count] = [f"{' ' * target.inner}{key}: {{{body}}}{nl}"]
    return text[: block.start] + "".join(lines) + text[block.end :]


def _read_mapping(lines: list[str], inner: int, key: str, image: str, version: int) -> dict[str, str]:
    snippet = "".join(line[inner:] if _indent(line) >= inner else line.lstrip(" ") for line in lines)
    try:
        found = yamlsafe.load(snippet)
    except YamlProblem:
        found = None
    value = found.get(key) if isinstance(found, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise CatalogError(
            f"releases.{image} version {version}: cannot read its {key}: as a mapping of names to quoted text",
            hint="releases: is written by stamp; restore it from git",
        )
    return dict(value)


def _release_item(text: str, image: str, version: int) -> tuple[_ImageBlock, _Item]:
    block = _Releases.find(text).image_block(image)
    target = next((item for item in block.items() if item.version == version), None) if block else None
    if block is None or target is None:
        raise CatalogError(
            f"releases.{image} has no version {version}", hint=f"see `stamp lookup {image} --format json`"
        )
    return block, target


def without_releases(text: str, image: str, versions: Collection[int]) -> str:
    """`text` without the list items of `versions` under `releases.<image>`; every other byte unchanged.

    An item is its lines from `- version:` to its last content line: blank lines and comments around it stay.
    Removing every item leaves `<image>: []`, since a key with no items would read as null.
    """
    wanted = set(versions)
    if not wanted:
        return text
    block = _Releases.find(text).image_block(image)
    items = block.items() if block else []
    missing = sorted(wanted - {item.version for item in items})
    if block is None or missing:
        raise CatalogError(
            f"releases.{image} has no version {(missing or sorted(wanted))[0]}",
            hint=f"see `stamp lookup {image} --format json`",
        )
    lines = block.lines[:]
    doomed = [item for item in items if item.version in wanted]
    for item in sorted(doomed, key=lambda i: i.first, reverse=True):
        del lines[item.first : item.last_content + 1]
    if len(doomed) == len(items):
        body, ending = _split_ending(lines[0])
        colon = body.index(":")
        lines[0] = body[: colon + 1] + " []" + body[colon + 1 :] + ending
    return text[: block.start] + "".join(lines) + text[block.end :]


def _join(text: str, at: int, insert: str, nl: str) -> str:
    if at > 0 and not text[:at].endswith("\n"):
        insert = nl + insert
    return text[:at] + insert + text[at:]


def _end_of_content(text: str, start: int, end: int) -> int:
    """Offset just after the last line in [start, end) that holds more than blanks or a comment."""
    # Scans backwards: the releases section is most of a large catalog, and only its tail matters here.
    stop = end
    while stop > start:
        line_start = text.rfind("\n", start, stop - 1) + 1
        line_start = max(line_start, start)
        stripped = text[line_start:stop].strip()
        if stripped and not stripped.startswith("#"):
            return stop
        stop = line_start
    return start


def _drop_empty_flow(line: str, empty: str) -> str:
    """`key: {}  # c` → `key:  # c`: the value goes, the key, comment and line ending stay."""
    body, ending = _split_ending(line)
    colon = body.index(":")
    value = body[colon + 1 :]
    if value.split("#", 1)[0].strip() != empty:
        return line
    kept = value.replace(f" {empty}" if f" {empty}" in value else empty, "", 1)
    return body[: colon + 1] + (kept if kept.strip() else "") + ending


def _split_ending(line: str) -> tuple[str, str]:
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith("\n"):
        return line[:-1], "\n"
    return line, ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


@dataclass
class _Releases:
    """Where `releases:` sits in the text, found with a line scan rather than a YAML parse (10 MB catalogs)."""

    text: str
    line_start: int
    line_end: int
    rest: str
    newline: str
    key_indent: int

    @classmethod
    def find(cls, text: str) -> _Releases:
        match = _RELEASES_LINE.search(text)
        newline = "\r\n" if "\r\n" in text[: (text.find("\n") + 1) or len(text)] else "\n"
        if match is None:
            return cls(text, -1, -1, "", newline, 2)
        rest = match.group("rest").rstrip("\r")
        value = rest.split("#", 1)[0].strip()
        if value not in ("", "{}"):
            raise CatalogError(
                f"releases: must be written in block form (one image per line) for stamp record to edit it, "
                f"not `{value[:40]}`",
                hint="write `releases: {}` when there are none; stamp writes the rest",
            )
        line_end = match.end() + 1 if match.end() < len(text) else match.end()
        doc = cls(text, match.start(), line_end, rest, newline, 2)
        if text[match.end() - 1 : match.end()] == "\r":
            doc.newline = "\r\n"
        first = _first_content_line(text, line_end, doc.section_end(text))
        if first is not None:
            doc.key_indent = _indent(first)
            if doc.key_indent == 0:
                raise CatalogError("releases: its images must be indented under it")
        return doc

    def section_start(self, text: str) -> int:
        return self.line_end

    def section_end(self, text: str) -> int:
        match = _TOP_LEVEL_LINE.search(text, self.line_end)
        return match.start() if match else len(text)

    def ensure_block_form(self) -> tuple[str, str]:
        """(text up to the end of the releases section, the rest), with a `releases:` line in block form."""
        text = self.text
        if self.line_start < 0:
            head = text if not text or text.endswith("\n") else text + self.newline
            self.line_start = len(head)
            head += f"releases:{self.newline}"
            self.line_end = len(head)
            return head, ""
        if self.rest.split("#", 1)[0].strip() == "{}":
            line = text[self.line_start : self.line_end]
            fixed = _drop_empty_flow(line, "{}")
            text = text[: self.line_start] + fixed + text[self.line_end :]
            self.line_end = self.line_start + len(fixed)
            if not fixed.endswith("\n"):
                text += self.newline
                self.line_end += len(self.newline)
        end = self.section_end(text)
        return text[:end], text[end:]

    def image_block(self, image: str) -> _ImageBlock | None:
        if self.line_start < 0:
            return None
        text = self.text
        start, end = self.line_end, self.section_end(text)
        names = "|".join(re.escape(n) for n in (image, f'"{image}"', f"'{image}'"))
        key = re.compile(rf"^ {{{self.key_indent}}}(?:{names})[ \t]*:(?P<rest>[^\n]*)$", re.MULTILINE)
        match = key.search(text, start, end)
        if match is None:
            return None
        value = match.group("rest").rstrip("\r").split("#", 1)[0].strip()
        if value not in ("", "[]"):
            raise CatalogError(
                f"releases.{image} must be a block list (one `- version:` item per release) for stamp record "
                f"to edit it, not `{value[:40]}`"
            )
        block_start = match.start()
        after_key = match.end() + 1 if match.end() < end else match.end()
        sibling = re.compile(rf"^ {{0,{self.key_indent}}}[^ \t\r\n#-]", re.MULTILINE).search(text, after_key, end)
        block_end = sibling.start() if sibling else end
        return _ImageBlock(image, block_start, block_end, text[block_start:block_end].splitlines(keepends=True))


def _first_content_line(text: str, start: int, end: int) -> str | None:
    pos = start
    while pos < end:
        newline = text.find("\n", pos, end)
        stop = end if newline < 0 else newline + 1
        line = text[pos:stop]
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return line
        pos = stop
    return None


@dataclass
class _Item:
    """One `- version: …` item: line indexes into its image block, and the top-level keys' lines."""

    lines: list[str]
    first: int
    last_content: int
    inner: int
    fields: dict[str, int]

    def value(self, key: str) -> str | None:
        index = self.fields.get(key)
        if index is None:
            return None
        parsed = _parse_key_line(self.lines[index], self.inner)
        return parsed[1] if parsed else None

    @property
    def version(self) -> int | None:
        value = self.value("version")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def status(self) -> str | None:
        return self.value("status")

    @property
    def built_at(self) -> str | None:
        return self.value("built_at")

    def set_field(self, key: str, value: str) -> tuple[int, str]:
        """(line index, the line with only its value replaced): comment and line ending stay."""
        index = self.fields[key]
        line = self.lines[index]
        body, ending = _split_ending(line)
        match = _KEY.match(body, self.inner)
        if match is None:
            raise CatalogError(f"cannot edit the {key} line: {body.strip()}")
        scalar = _SCALAR.match(body, match.end())
        tail = scalar.group("tail") if scalar else ""
        return index, body[: match.end()] + value + tail + ending


@dataclass
class _ImageBlock:
    image: str
    start: int
    end: int
    lines: list[str]

    @property
    def dash_indent(self) -> int:
        for line in self.lines[1:]:
            stripped = line.lstrip(" ")
            if stripped.startswith("-"):
                return _indent(line)
            if stripped.strip() and not stripped.startswith("#"):
                break
        return _indent(self.lines[0]) + 2

    def items(self) -> list[_Item]:
        items: list[_Item] = []
        dash = self.dash_indent
        for index, line in enumerate(self.lines[1:], start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            indent = _indent(line)
            body = line[indent:].rstrip("\r\n")
            if indent == dash and body.startswith("-") and (len(body) == 1 or body[1] in " \t"):
                rest = body[1:].lstrip(" ")
                inner = -1 if not rest or rest.startswith("#") else indent + (len(body) - len(rest))
                items.append(_Item(self.lines, index, index, inner, {}))
                if inner >= 0:
                    self._field(items[-1], index)
                continue
            if not items or indent < dash:
                raise CatalogError(
                    f"releases.{self.image}: cannot read the line `{stripped[:60]}` as part of a release list",
                    hint="releases: is written by stamp record; restore it from git",
                )
            item = items[-1]
            item.last_content = index
            if item.inner < 0:
                item.inner = indent
            if indent == item.inner:
                self._field(item, index)
        return items

    @staticmethod
    def _field(item: _Item, index: int) -> None:
        parsed = _parse_key_line(item.lines[index], item.inner)
        if parsed is not None:
            item.fields[parsed[0]] = index


def _parse_key_line(line: str, column: int) -> tuple[str, str | None] | None:
    body = line.rstrip("\r\n")
    match = _KEY.match(body, column)
    if match is None:
        return None
    scalar = _SCALAR.match(body, match.end())
    if scalar is None:
        return match.group("key"), None
    value = scalar.group("dq") if scalar.group("dq") is not None else scalar.group("sq")
    if value is None:
        value = scalar.group("plain")
    return match.group("key"), value


def _render(release: Release, dash: int, nl: str) -> str:
    pad = " " * (dash + 2)
    out = [f"{' ' * dash}- version: {release.version}{nl}", f"{pad}amis:{nl}"]
    out += [f"{pad}  {_scalar(region)}: {_scalar(ami)}{nl}" for region, ami in release.amis.items()]
    # Always quoted: an all-digit commit or build id would otherwise be read as a number.
    out.append(f"{pad}built_at: {_quote(release.built_at)}{nl}")
    out.append(f"{pad}commit: {_quote(release.commit)}{nl}")
    out.append(f"{pad}build_id: {_quote(release.build_id)}{nl}")
    source = release.source
    if source.amis:
        out.append(f"{pad}source:{nl}{pad}  amis:{nl}")
        out += [f"{pad}    {_scalar(region)}: {_scalar(ami)}{nl}" for region, ami in source.amis.items()]
        if source.image is not None:
            out.append(f"{pad}  image: {_scalar(source.image)}{nl}")
        if source.version is not None:
            out.append(f"{pad}  version: {source.version}{nl}")
    else:
        parts = []
        if source.image is not None:
            parts.append(f"image: {_scalar(source.image)}")
        if source.version is not None:
            parts.append(f"version: {source.version}")
        out.append(f"{pad}source: {{{', '.join(parts)}}}{nl}")
    # What `defaults.artifacts` stored: one line each, so 1,000 images x 10 releases stay small (docs/inventory.md).
    if release.sbom is not None:
        out.append(f"{pad}sbom: {{uri: {_quote(release.sbom.uri)}, sha256: {_quote(release.sbom.sha256)}}}{nl}")
    if release.packages is not None:
        out.append(f"{pad}packages: {release.packages}{nl}")
    if release.dirty:
        out.append(f"{pad}dirty: true{nl}")
    out.append(f"{pad}verified: {release.verified}{nl}")
    out.append(f"{pad}status: {release.status}{nl}")
    if release.reason is not None:
        out.append(f"{pad}reason: {_quote(release.reason)}{nl}")
    if release.revoke_at is not None:
        out.append(f"{pad}revoke_at: {_quote(release.revoke_at)}{nl}")
    # Rollout channels (docs/rollout.md): one line each, as set_channel and set_forced write them.
    for key, entries in (("channels", release.channels), ("forced", release.forced)):
        if entries:
            body = ", ".join(f"{_scalar(k)}: {_quote(v)}" for k, v in entries.items())
            out.append(f"{pad}{key}: {{{body}}}{nl}")
    return "".join(out)


def _scalar(value: str) -> str:
    """Plain when every YAML reader would read it back as this same string; quoted otherwise."""
    plain = (
        _SAFE_PLAIN.fullmatch(value) is not None
        and value not in _YAML11_WORDS
        and resolve_plain(value) == value
        # `1e5`, `0x1f` or `1_000` read as numbers in YAML 1.1 readers even where 1.2 sees strings.
        and _NUMBERISH.fullmatch(value) is None
    )
    return value if plain else _quote(value)


def _quote(value: str) -> str:
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


@dataclass
class Layout:
    """Where `releases:`, its end and the blocks of the recorded images sit in one text: each is a scan of the
    whole file (10 MB for a large catalog), so record works them out once per version of the text."""

    text: str
    doc: _Releases
    end: int
    blocks: dict[str, _ImageBlock | None]

    @classmethod
    def of(cls, text: str, images: Collection[str]) -> Layout:
        doc = _Releases.find(text)
        if doc.line_start < 0:
            return cls(text, doc, len(text), dict.fromkeys(images))
        return cls(text, doc, doc.section_end(text), {image: doc.image_block(image) for image in images})

    def confined(self, before: Layout, image: str) -> bool:
        """Whether the edit from `before` to this text of `releases.<image>` changed no byte outside that block
        (or, for a new block, outside `releases:`): the cheap half of the trade in `check_part`, so the releases
        it does not parse cannot have changed."""
        old_block, new_block = before.blocks.get(image), self.blocks.get(image)
        if new_block is None:
            return False
        old, new = before.text, self.text
        if old_block is not None:
            return old[: old_block.start] == new[: new_block.start] and old[old_block.end :] == new[new_block.end :]
        # A new image block: the text before the `releases:` line and after the section stays.
        if before.doc.line_start < 0:
            return new.startswith(old)
        return old[: before.doc.line_start] == new[: self.doc.line_start] and old[before.end :] == new[self.end :]
