"""A strict YAML reader: plain data only, no anchors, aliases, tags or duplicate keys, and positions on demand.

PyYAML's C parser does the tokenising; this module builds the Python values from its event stream so it can
refuse what a catalog must never contain and so that `NO`, `on` or `0123` never turn into booleans or octal
numbers by surprise: PyYAML's own loader silently keeps the last of two duplicate keys and lets aliases expand
to gigabytes (docs/facts.md, Security traps).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from yaml import events as ev
from yaml._yaml import CParser

from stamp.errors import YamlProblem

# Plain scalars are resolved by YAML 1.2's core schema rules, narrowed: `yes`/`no`/`on`/`off` stay strings.
_SPECIAL: dict[str, Any] = {
    "": None,
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
}
_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_NUMBER_START = frozenset("0123456789+-.")

PathKey = str | int
Path = tuple[PathKey, ...]

# A catalog of 1,000 images with 10 releases in 20 regions is 11 MB; this leaves room above it. Parsing costs
# about 0.35 s and 60 MB of memory per MiB of the worst-case text (a flow list of one-letter items), so the
# limit also bounds a hostile file to a few seconds and about 1 GB.
MAX_BYTES = 16 * 1024 * 1024
# The deepest catalog path is releases.<image>[i].source.amis.<region>: five containers. libyaml stops at
# 1000 levels with a vague message; this stops far earlier and says why.
MAX_DEPTH = 32
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; a catalog needs at most 6"


def resolve_plain(value: str) -> Any:
    """The Python value of an unquoted scalar."""
    if value in _SPECIAL:
        return _SPECIAL[value]
    if value[0] in _NUMBER_START:
        if _INT.match(value):
            return int(value, 10)
        if _FLOAT.match(value):
            return float(value)
    return value


def _mark(event: Any) -> tuple[int, int]:
    mark = event.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)


def show(value: str, limit: int = 60) -> str:
    """`value` safe to echo in a message: control, bidi and other invisible characters escaped, and shortened.

    Catalog text is untrusted (a pull request's); echoed raw, a newline in a key could start a forged line in a
    CI log, and a right-to-left override could make the message read differently from what it says.
    """
    escaped = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in value)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _events(text: str) -> Iterator[Any]:
    # Events are typed loosely: PyYAML's stubs give the base class no attributes.
    try:
        parser = CParser(text)
    except UnicodeEncodeError as exc:  # a lone surrogate: only a str built in Python can hold one
        line, col = _position(text, exc.start)
        raise YamlProblem("not valid text: a lone UTF-16 surrogate character", line, col) from None
    try:
        while True:
            event = parser.get_event()
            if event is None:
                return
            yield event
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        if "nesting depth" in str(exc.problem):  # libyaml's own limit, met before ours in flow collections
            raise YamlProblem(TOO_DEEP, line, col) from None
        raise YamlProblem(f"not valid YAML: {exc.problem}", line, col) from None
    except yaml.reader.ReaderError as exc:
        # libyaml counts the offset in UTF-8 bytes.
        before = text.encode("utf-8", "surrogatepass")[: exc.position].decode("utf-8", "replace")
        line, col = _position(before, len(before))
        code = f" U+{exc.character:04X}" if isinstance(exc.character, int) else ""
        raise YamlProblem(
            f"not valid YAML: character{code} is not allowed here ({exc.reason}); write it as an escape in a "
            'double-quoted string, e.g. "\\t"',
            line,
            col,
        ) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {exc}", 0, 0) from None
    finally:
        parser.dispose()


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _refuse_node_extras(event: Any, path: Path) -> None:
    if event.anchor is not None:
        raise YamlProblem(
            f"anchor '&{show(event.anchor)}' is not allowed: write the value out in full", *_mark(event), path
        )
    tag = getattr(event, "tag", None)
    if tag is not None and tag != "!":
        raise YamlProblem(f"YAML tag '{show(tag)}' is not allowed: use plain values", *_mark(event), path)


def load(text: str) -> Any:
    """Parse one YAML document into dicts, lists, str, int, float, bool and None, refusing everything else."""
    if len(text) > MAX_BYTES:
        raise YamlProblem(f"file is {len(text)} characters; the limit is {MAX_BYTES}", 1, 1)
    # Each frame is [container, pending key or None, path]; keys of a mapping arrive as scalars.
    stack: list[list[Any]] = []
    root: Any = None
    documents = 0

    def place(value: Any, event: Any) -> bool:
        """Put a finished value into its parent; returns True when it was a mapping key."""
        nonlocal root
        if not stack:
            root = value
            return False
        frame = stack[-1]
        container = frame[0]
        if type(container) is list:
            container.append(value)
            return False
        if frame[1] is _NO_KEY:
            if type(value) is not str:
                raise YamlProblem("mapping keys must be plain strings", *_mark(event), frame[2])
            if value in container:
                raise YamlProblem(f"duplicate key '{show(value)}'", *_mark(event), (*frame[2], value))
            frame[1] = value
            return True
        container[frame[1]] = value
        frame[1] = _NO_KEY
        return False

    for event in _events(text):
        cls = type(event)
        if cls is ev.ScalarEvent:
            if event.anchor is not None or (event.tag is not None and event.tag != "!"):
                _refuse_node_extras(event, _path_of(stack))
            value = event.value
            # The C parser reports a plain scalar with an empty style.
            place(resolve_plain(value) if not event.style else value, event)
        elif cls is ev.MappingStartEvent or cls is ev.SequenceStartEvent:
            path = _path_of(stack)
            _refuse_node_extras(event, path)
            if stack and type(stack[-1][0]) is dict and stack[-1][1] is _NO_KEY:
                raise YamlProblem("mapping keys must be plain strings", *_mark(event), path)
            if len(stack) >= MAX_DEPTH:
                raise YamlProblem(TOO_DEEP, *_mark(event), path)
            stack.append([{} if cls is ev.MappingStartEvent else [], _NO_KEY, path])
        elif cls is ev.MappingEndEvent or cls is ev.SequenceEndEvent:
            place(stack.pop()[0], event)
        elif cls is ev.AliasEvent:
            raise YamlProblem(
                f"alias '*{show(event.anchor)}' is not allowed: write the value out in full",
                *_mark(event),
                _path_of(stack),
            )
        elif cls is ev.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise YamlProblem("only one YAML document is allowed", *_mark(event))
    return root


class _NoKey:
    __slots__ = ()


_NO_KEY = _NoKey()


def _path_of(stack: list[list[Any]]) -> Path:
    if not stack:
        return ()
    frame = stack[-1]
    container = frame[0]
    if type(container) is list:
        return (*frame[2], len(container))
    return (*frame[2], frame[1]) if frame[1] is not _NO_KEY else frame[2]


def locate(text: str, target: Path) -> tuple[int, int]:
    """The 1-based line and column of the node at `target`, or of its nearest ancestor that exists.

    Only called on the error path, so the fast `load` never pays for tracking positions.
    """
    return locate_all(text, [target])[target]


def locate_all(text: str, targets: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """`locate` for many paths in one pass over the text (a file with many problems is read once, not per problem)."""
    prefixes: dict[Path, list[Path]] = {}
    best: dict[Path, tuple[int, int]] = {}
    for target in dict.fromkeys(targets):
        best[target] = (1, 1)
        for size in range(len(target) + 1):
            prefixes.setdefault(target[:size], []).append(target)
    missing = len(best)

    def reached(path: Path, event: Any) -> bool:
        """Note `event` as the best position so far for every target under `path`; True once all are exact."""
        nonlocal missing
        for target in prefixes.get(path, ()):
            best[target] = _mark(event)
            if target == path:
                missing -= 1
        return missing == 0

    # Each frame: [is_mapping, path, next index or pending key, expecting_key, is_a_key]
    stack: list[list[Any]] = []
    for event in _events(text):
        cls = type(event)
        if cls in (ev.MappingEndEvent, ev.SequenceEndEvent):
            if not stack[-1][4]:
                stack.pop()
                _advance(stack)
            else:
                stack.pop()
            continue
        if cls not in (ev.ScalarEvent, ev.MappingStartEvent, ev.SequenceStartEvent, ev.AliasEvent):
            continue
        if stack and stack[-1][0] and stack[-1][3]:
            # A mapping key: remember where `key:` sits, which is where a person looks.
            frame = stack[-1]
            key = event.value if cls is ev.ScalarEvent else None
            frame[2], frame[3] = key, False
            path = (*frame[1], key)
            if reached(path, event):
                return best
            if cls is ev.MappingStartEvent or cls is ev.SequenceStartEvent:  # a complex key (load refuses them)
                stack.append(
                    [cls is ev.MappingStartEvent, path, None if cls is ev.MappingStartEvent else 0, True, True]
                )
            continue
        path = _child_path(stack)
        if (not stack or not stack[-1][0]) and reached(path, event):
            return best
        if cls is ev.MappingStartEvent:
            stack.append([True, path, None, True, False])
        elif cls is ev.SequenceStartEvent:
            stack.append([False, path, 0, False, False])
        else:
            _advance(stack)
    return best


def _child_path(stack: list[list[Any]]) -> Path:
    if not stack:
        return ()
    frame = stack[-1]
    return (*frame[1], frame[2])


def _advance(stack: list[list[Any]]) -> None:
    if not stack:
        return
    frame = stack[-1]
    if frame[0]:
        frame[3] = True
    else:
        frame[2] += 1
