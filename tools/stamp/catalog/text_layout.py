"""Where things sit in catalog.yaml's text: the `releases:` section, each image's block under it and each release
item in that, found with line scans rather than a YAML parse, so that edits change only the lines they must."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from stamp.errors import CatalogError

_RELEASES_LINE = re.compile(r"^(?:releases|\"releases\"|'releases')[ \t]*:(?P<rest>[^\n]*)$", re.MULTILINE)

_TOP_LEVEL_LINE = re.compile(r"^[^ \t\r\n#]", re.MULTILINE)

_KEY = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]+|$)")

_SCALAR = re.compile(
    r"(?:\"(?P<dq>[^\"\\\n]*)\"|'(?P<sq>[^'\n]*)'|(?P<plain>[^#\s][^#\n]*?))?(?P<tail>[ \t]*(?:#.*)?)$"
)


def drop_empty_flow(line: str, empty: str) -> str:
    """`key: {}  # c` → `key:  # c`: the value goes, the key, comment and line ending stay."""
    body, ending = split_ending(line)
    colon = body.index(":")
    value = body[colon + 1 :]
    if value.split("#", 1)[0].strip() != empty:
        return line
    kept = value.replace(f" {empty}" if f" {empty}" in value else empty, "", 1)
    return body[: colon + 1] + (kept if kept.strip() else "") + ending


def split_ending(line: str) -> tuple[str, str]:
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith("\n"):
        return line[:-1], "\n"
    return line, ""


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


@dataclass
class Releases:
    """Where `releases:` sits in the text, found with a line scan rather than a YAML parse (10 MB catalogs)."""

    text: str
    line_start: int
    line_end: int
    rest: str
    newline: str
    key_indent: int

    @classmethod
    def find(cls, text: str) -> Releases:
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
            doc.key_indent = indent_of(first)
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
            fixed = drop_empty_flow(line, "{}")
            text = text[: self.line_start] + fixed + text[self.line_end :]
            self.line_end = self.line_start + len(fixed)
            if not fixed.endswith("\n"):
                text += self.newline
                self.line_end += len(self.newline)
        end = self.section_end(text)
        return text[:end], text[end:]

    def image_block(self, image: str) -> ImageBlock | None:
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
        return ImageBlock(image, block_start, block_end, text[block_start:block_end].splitlines(keepends=True))


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
class Item:
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
        body, ending = split_ending(line)
        match = _KEY.match(body, self.inner)
        if match is None:
            raise CatalogError(f"cannot edit the {key} line: {body.strip()}")
        scalar = _SCALAR.match(body, match.end())
        tail = scalar.group("tail") if scalar else ""
        return index, body[: match.end()] + value + tail + ending


@dataclass
class ImageBlock:
    image: str
    start: int
    end: int
    lines: list[str]

    @property
    def dash_indent(self) -> int:
        for line in self.lines[1:]:
            stripped = line.lstrip(" ")
            if stripped.startswith("-"):
                return indent_of(line)
            if stripped.strip() and not stripped.startswith("#"):
                break
        return indent_of(self.lines[0]) + 2

    def items(self) -> list[Item]:
        items: list[Item] = []
        dash = self.dash_indent
        for index, line in enumerate(self.lines[1:], start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            indent = indent_of(line)
            body = line[indent:].rstrip("\r\n")
            if indent == dash and body.startswith("-") and (len(body) == 1 or body[1] in " \t"):
                rest = body[1:].lstrip(" ")
                inner = -1 if not rest or rest.startswith("#") else indent + (len(body) - len(rest))
                items.append(Item(self.lines, index, index, inner, {}))
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
    def _field(item: Item, index: int) -> None:
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


@dataclass
class Layout:
    """Where `releases:`, its end and the blocks of the recorded images sit in one text: each is a scan of the
    whole file (10 MB for a large catalog), so record works them out once per version of the text."""

    text: str
    doc: Releases
    end: int
    blocks: dict[str, ImageBlock | None]

    @classmethod
    def of(cls, text: str, images: Collection[str]) -> Layout:
        doc = Releases.find(text)
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
