"""`stamp record`: writes verified build results into `releases:` by editing only the lines it must."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic

from stamp import catalog as catalog_module
from stamp.catalog import Catalog
from stamp.errors import CatalogError, CatalogProblems
from stamp.models import Release
from stamp.results import BuildResult
from stamp.yamlsafe import resolve_plain

# A result stamped more than this far in the future comes from a skewed clock; recorded, it would stay
# "newest" and block every later build from becoming current.
_CLOCK_SKEW = timedelta(minutes=10)
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


# -- the pure text edit ------------------------------------------------------------------------------------


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


# -- rendering ------------------------------------------------------------------------------------------


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
    if release.dirty:
        out.append(f"{pad}dirty: true{nl}")
    out.append(f"{pad}verified: {release.verified}{nl}")
    out.append(f"{pad}status: {release.status}{nl}")
    if release.reason is not None:
        out.append(f"{pad}reason: {_quote(release.reason)}{nl}")
    if release.revoke_at is not None:
        out.append(f"{pad}revoke_at: {_quote(release.revoke_at)}{nl}")
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


# -- from a build result to a release --------------------------------------------------------------------


def release_from_result(result: BuildResult, catalog: Catalog, *, now: datetime, cloud: str | None = None) -> Release:
    """The release a verified result becomes: the next version of its image, `current` (see with_release)."""
    where = f"build {result.build_id} of image '{result.image}'"
    if cloud is not None and result.cloud != cloud:
        raise CatalogError(
            f"{where} ran on the {result.cloud} cloud, not {cloud}: it cannot be recorded here",
            hint=f"record it with --cloud {result.cloud}, in the catalog it was built for",
        )
    if result.verified != "passed":
        raise CatalogError(
            f"{where} is not verified (verified: {result.verified}): stamp records only images whose tests passed",
            hint=f"run `stamp verify {result.image}` and fix the failing tests first"
            + (f" ({', '.join(result.failed_tests[:5])})" if result.failed_tests else ""),
        )
    image = catalog.images.get(result.image)
    if image is None:
        raise CatalogError(f"{where}: the catalog has no image '{result.image}'", hint="define it under images:")
    missing = [region for region in image.regions if region not in result.amis]
    if missing:
        raise CatalogError(
            f"{where} has no AMI in {', '.join(missing)}, which the catalog lists for '{result.image}'",
            hint=f"rebuild with `stamp build {result.image}`",
        )
    started = _parse_time(result.started_at, where)
    if started > now + _CLOCK_SKEW:
        raise CatalogError(
            f"{where} says it started at {result.started_at}, after now ({now:%Y-%m-%dT%H:%M:%SZ})",
            hint="check the build machine's clock, then rebuild",
        )
    versions = [r.version for r in catalog.releases.get(result.image, ())]
    try:
        return Release(
            version=max(versions, default=0) + 1,
            amis=dict(result.amis),
            # When the build started orders builds: the newer commit wins even if an older build finishes later.
            built_at=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            commit=result.commit,
            build_id=result.build_id,
            source=result.source,
            verified="passed",
            status="current",
            dirty=result.dirty,
        )
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise CatalogError(f"{where}: {field} is not valid for a release: {error['msg']}") from None


def _parse_time(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CatalogError(f"{where}: started_at {value!r} is not a UTC time like 2026-11-26T15:00:00Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# -- the side effect: locked, checked, atomic --------------------------------------------------------------


def lock_path(catalog_path: Path) -> Path:
    return catalog_path.with_name(f".{catalog_path.name}.lock")


@contextlib.contextmanager
def catalog_lock(catalog_path: Path) -> Iterator[None]:
    """An exclusive lock beside the catalog, so concurrent `stamp record` runs apply one after another."""
    fd = os.open(lock_path(catalog_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def record(
    catalog_path: Path,
    results: Sequence[BuildResult],
    *,
    cloud: str | None = None,
    now: datetime | None = None,
) -> list[Release]:
    """Record each result as a release; returns one Release per result, in order.

    A result whose build_id is already recorded returns the existing release and changes nothing, so running
    `stamp record` twice is harmless.
    """
    when = now or datetime.now(UTC)
    images = {result.image for result in results}
    with catalog_lock(catalog_path):
        original = catalog_module.read_text(catalog_path)
        text = original
        try:
            layout = _Layout.of(text, images)
        except CatalogError:
            _check(text, catalog_path, what="the catalog")  # an invalid file is reported as that, at its line
            raise
        catalog = _check_part(layout, catalog_path, what="the catalog")
        written: list[tuple[str, int]] = []
        for result in results:
            known = next((r for r in catalog.releases.get(result.image, ()) if r.build_id == result.build_id), None)
            if known is not None:
                written.append((result.image, known.version))
                continue
            release = release_from_result(result, catalog, now=when, cloud=cloud)
            edited = _Layout.of(with_release(text, result.image, release), images)
            if not edited.confined(layout, result.image):
                # Read all of it: if the edit broke the file, that names the line; if not, it still strayed.
                _check(edited.text, catalog_path, what="the edited catalog")
                raise CatalogError(
                    f"stamp record would change lines outside releases.{result.image}; {catalog_path} was left "
                    "unchanged",
                    hint="this is a bug in stamp record: please report it with the releases: section of the catalog",
                )
            text, layout = edited.text, edited
            written.append((result.image, release.version))
            # The next result may be for the same image: it needs this version, so read the edit back.
            catalog = _check_part(layout, catalog_path, what="the edited catalog")
        if text != original:
            _write_atomically(catalog_path, text)
    return [next(r for r in catalog.releases[image] if r.version == version) for image, version in written]


@dataclass
class _Layout:
    """Where `releases:`, its end and the blocks of the recorded images sit in one text: each is a scan of the
    whole file (10 MB for a large catalog), so record works them out once per version of the text."""

    text: str
    doc: _Releases
    end: int
    blocks: dict[str, _ImageBlock | None]

    @classmethod
    def of(cls, text: str, images: Collection[str]) -> _Layout:
        doc = _Releases.find(text)
        if doc.line_start < 0:
            return cls(text, doc, len(text), dict.fromkeys(images))
        return cls(text, doc, doc.section_end(text), {image: doc.image_block(image) for image in images})

    def confined(self, before: _Layout, image: str) -> bool:
        """Whether the edit from `before` to this text of `releases.<image>` changed no byte outside that block
        (or, for a new block, outside `releases:`): the cheap half of the trade in `_check_part`, so the releases
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


def _check_part(layout: _Layout, path: Path, *, what: str) -> Catalog:
    """`_check` of everything but the other images' releases: `images:`, `defaults:` and the like in full, and
    under `releases:` only the blocks of the images being recorded.

    Why not all of it: the releases section is nearly all of a large catalog (10 MB for 1,000 images with 10
    releases in 20 regions), and parsing it twice made `stamp record` take seconds. What is given up: a problem
    in another image's releases that is already in the file goes unnoticed here (record leaves those bytes as
    they are, `_Layout.confined` makes sure of it, and `stamp validate` in the pull-request check reports them).
    Only when this partial read fails is the whole file read, so problems are reported at their real lines.
    """
    text, doc = layout.text, layout.doc
    if doc.line_start < 0:
        return _check(text, path, what=what)
    blocks = sorted((b for b in layout.blocks.values() if b is not None), key=lambda b: b.start)
    body = "".join(text[b.start : b.end] for b in blocks)
    if body and not body.endswith("\n"):
        body += doc.newline
    releases = f"releases:{doc.newline}{body}" if body else f"releases: {{}}{doc.newline}"
    part = text[: doc.line_start] + releases + text[layout.end :]
    try:
        return catalog_module.build_catalog(catalog_module.parse(part, path), part, path, check_files=False)
    except CatalogProblems:
        return _check(text, path, what=what)


def _check(text: str, path: Path, *, what: str, command: str = "stamp record") -> Catalog:
    try:
        return catalog_module.build_catalog(catalog_module.parse(text, path), text, path, check_files=False)
    except CatalogProblems as exc:
        if what == "the catalog":
            raise
        raise CatalogError(
            f"{command} would write an invalid catalog; {path} was left unchanged:\n" + "\n".join(exc.problems),
            hint=f"this is a bug in {command}: please report it with the releases: section of the catalog",
        ) from None


def read_checked(catalog_path: Path) -> tuple[str, Catalog]:
    """The catalog's text and what it says, for a command about to edit it (hold `catalog_lock` around both)."""
    text = catalog_module.read_text(catalog_path)
    return text, _check(text, catalog_path, what="the catalog")


def write_checked(catalog_path: Path, original: str, text: str, *, command: str) -> Catalog:
    """Validates the edited text and replaces the file atomically (only when it changed); call under the lock."""
    catalog = _check(text, catalog_path, what="the edited catalog", command=command)
    if text != original:
        _write_atomically(catalog_path, text)
    return catalog


def edit_catalog(catalog_path: Path, edit: Callable[[str, Catalog], str], *, command: str) -> Catalog:
    """Locked read, `edit(text, catalog)`, check, atomic write: how revoke and rollback change `releases:`."""
    with catalog_lock(catalog_path):
        original, catalog = read_checked(catalog_path)
        return write_checked(catalog_path, original, edit(original, catalog), command=command)


def _write_atomically(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename over: readers see the old file or the new one, never half.

    Call with `catalog_lock` held: temp files a killed writer left are removed first (see _remove_stale_temp_files).
    A write that fails (a full disk, a file-size limit) removes its temp file and becomes one CatalogError.
    """
    data = text.encode("utf-8")
    mode = stat.S_IMODE(path.stat().st_mode)
    _remove_stale_temp_files(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_failed(path, exc) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_failed(path, exc) from None
        raise
    # The rename is durable only once the folder's entry is on disk too.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _remove_stale_temp_files(path: Path) -> None:
    """Remove the temp files (`.catalog.yaml.XXXXXXXX.tmp`) that writers killed mid-write left beside `path`.

    Only stale ones: every writer holds `catalog_lock` from before it makes its temp file until the rename, so
    with the lock held no live writer has one. They are git-ignored too (.gitignore), so none gets committed.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    Path(entry.path).unlink()


def _write_failed(path: Path, exc: OSError) -> CatalogError:
    """One line for a write that failed: which file, the system's words, that it is intact, and what to do."""
    reason = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or 0)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        action = f"free space on the disk holding {path.parent} (or raise the quota)"
    elif exc.errno == errno.EFBIG:
        action = "raise the file-size limit (`ulimit -f`) above the catalog's size"
    else:
        action = f"check that {path.parent} is writable"
    what = f"{reason} ({code})" if code else reason
    return CatalogError(f"cannot write {path}: {what}; it was left unchanged: {action}, then run the command again")
