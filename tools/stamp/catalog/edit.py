"""Surgical text edits of `releases:` in catalog.yaml: every byte outside the lines they must change stays."""

from __future__ import annotations

from collections.abc import Collection

from stamp.catalog import yamlsafe
from stamp.catalog.models import Release
from stamp.catalog.release_yaml import render_release, yaml_quote, yaml_scalar
from stamp.catalog.text_layout import ImageBlock, Item, Releases, drop_empty_flow, indent_of, split_ending
from stamp.errors import CatalogError, YamlProblem

_STATUSES = ("current", "previous", "deprecated", "revoked")


def with_release(text: str, image: str, release: Release) -> str:
    """`text` with `release` first (newest version first) under `releases.<image>`; every other byte unchanged.

    A new current release turns the old `status: current` into `previous`, unless the new one was built before
    the current one (an older build that finished late): then it goes in as `previous` and nothing else changes.
    """
    doc = Releases.find(text)
    nl = doc.newline
    block = doc.image_block(image)
    if block is None:
        head, tail = doc.ensure_block_form()
        indent = doc.key_indent
        entry = f"{' ' * indent}{yaml_scalar(image)}:{nl}" + render_release(release, indent + 2, nl)
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
    rendered = render_release(new, block.dash_indent, nl)
    lines = block.lines[:]
    for index, line in edits:
        lines[index] = line
    at_line = position.first if position is not None else (items[-1].last_content + 1 if items else None)
    if at_line is None:
        # `image: []` or a list with no items yet: the items go right after the key line.
        lines[0] = drop_empty_flow(lines[0], "[]")
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
    line = f"{' ' * target.inner}{key}: {yaml_quote(value)}{Releases.find(text).newline}" if value is not None else None
    if key in target.fields:
        index = target.fields[key]
        # A value stamp did not write may continue on deeper lines: those go too.
        end = index + 1
        while end <= target.last_content and indent_of(lines[end]) > target.inner:
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
    nl = Releases.find(text).newline
    entries: dict[str, str] = {}
    if key in target.fields:
        index = target.fields[key]
        # A value stamp did not write (block style, or on several lines) is read, then written back as one line.
        end = index + 1
        while end <= target.last_content and indent_of(lines[end]) > target.inner:
            end += 1
        entries = _read_mapping(lines[index:end], target.inner, key, image, version)
        at, count = index, end - index
    else:
        at, count = target.last_content + 1, 0
        if not lines[at - 1].endswith("\n"):  # the file's last line, without a line break
            lines[at - 1] += nl
    entries[name] = value
    body = ", ".join(f"{yaml_scalar(k)}: {yaml_quote(v)}" for k, v in entries.items())
    lines[at : at + count] = [f"{' ' * target.inner}{key}: {{{body}}}{nl}"]
    return text[: block.start] + "".join(lines) + text[block.end :]


def _read_mapping(lines: list[str], inner: int, key: str, image: str, version: int) -> dict[str, str]:
    snippet = "".join(line[inner:] if indent_of(line) >= inner else line.lstrip(" ") for line in lines)
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


def _release_item(text: str, image: str, version: int) -> tuple[ImageBlock, Item]:
    block = Releases.find(text).image_block(image)
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
    block = Releases.find(text).image_block(image)
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
        body, ending = split_ending(lines[0])
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
