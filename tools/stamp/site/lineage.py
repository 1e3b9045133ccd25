"""The lineage (parent → children) as inline SVG: Graphviz's `dot -Tsvg` for the whole catalog when it is
installed, else a tree stamp draws itself. Either way every name and label is escaped on the way out: dot's
SVG is parsed and written again with only the shapes, text and geometry attributes kept (docs/site.md).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from stamp.drivers import proc
from stamp.errors import ProcessError
from stamp.site.markup import Markup, esc, fill

# Fill and text colours per tone (site/model.py's Badge.tone); dark text on light fills, legible on a wall screen.
COLOURS = {
    "ok": ("#dcfce7", "#14532d"),
    "warn": ("#fef3c7", "#78350f"),
    "bad": ("#fee2e2", "#7f1d1d"),
    "muted": ("#e5e7eb", "#1f2937"),
    "focus": ("#dbeafe", "#1e3a8a"),
}
DOT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Node:
    name: str
    parent: str | None
    depth: int
    label: str  # under the name: `v7`, `no release`
    tone: str


@dataclass(frozen=True)
class Drawing:
    svg: Markup
    how: str  # one line for the page: who drew it, and why not dot


def lineage(nodes: Sequence[Node], *, title: str, dot: str | None = "dot") -> Drawing:
    """The whole lineage: dot when `dot` runs, else stamp's own tree (and the reason)."""
    if dot is None:
        return Drawing(tree_svg(nodes, title=title), "drawn by stamp")
    source = dot_source(nodes)
    try:
        done = proc.run([dot, "-Tsvg"], input_text=source, timeout=DOT_TIMEOUT, echo=False)
    except ProcessError as exc:
        why = "Graphviz dot was not found" if exc.returncode == 127 else f"Graphviz dot failed (exit {exc.returncode})"
        return Drawing(tree_svg(nodes, title=title), f"drawn by stamp: {why}")
    try:
        return Drawing(sanitize(done.stdout, title=title), "drawn by Graphviz dot")
    except ET.ParseError:
        return Drawing(tree_svg(nodes, title=title), "drawn by stamp: Graphviz dot wrote no SVG stamp could read")


def _quoted(text: str) -> str:
    """A dot string: quotes and backslashes escaped, line breaks dropped (`\\n` below is dot's own)."""
    one_line = " ".join(text.split())
    return '"' + one_line.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_source(nodes: Sequence[Node]) -> str:
    lines = [
        "digraph lineage {",
        '  graph [rankdir=LR, bgcolor="transparent", nodesep=0.12, ranksep=0.5];',
        '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=11, height=0.3,'
        ' margin="0.1,0.04"];',
        '  edge [color="#4b5563", arrowsize=0.6];',
    ]
    names = {node.name for node in nodes}
    for node in nodes:
        fill_colour, text_colour = COLOURS.get(node.tone, COLOURS["muted"])
        label = _quoted(node.name)[:-1] + "\\n" + _quoted(node.label)[1:]
        lines.append(
            f"  {_quoted(node.name)} [label={label}, fillcolor={_quoted(fill_colour)}, "
            f"fontcolor={_quoted(text_colour)}, color={_quoted(text_colour)}];"
        )
    for node in nodes:
        if node.parent is not None and node.parent in names:
            lines.append(f"  {_quoted(node.parent)} -> {_quoted(node.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# What is kept of dot's SVG: shapes, text, groups and titles, with geometry and colour attributes only.
_ELEMENTS = frozenset({"svg", "g", "title", "polygon", "polyline", "path", "ellipse", "text"})
_ATTRIBUTES = frozenset(
    {
        "width", "height", "viewBox", "transform", "points", "d", "fill", "stroke", "stroke-width", "cx", "cy",
        "rx", "ry", "x", "y", "text-anchor", "font-family", "font-size", "font-weight", "font-style",
    }
)  # fmt: skip


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def sanitize(svg_text: str, *, title: str) -> Markup:
    """dot's SVG written again: only allowed elements and attributes, every value escaped; an accessible name."""
    root = ET.fromstring(svg_text)  # noqa: S314 - dot's own output; expat fetches no external entity or DTD
    if _local(root.tag) != "svg":
        raise ET.ParseError("not an SVG document")
    out: list[str] = []
    _write(root, out, top=True, title=title)
    return Markup("".join(out))


def _write(element: ET.Element, out: list[str], *, top: bool = False, title: str = "") -> None:
    tag = _local(element.tag)
    if tag not in _ELEMENTS:
        return
    attributes = [(key, value) for key, value in element.attrib.items() if _local(key) in _ATTRIBUTES]
    if top:
        attributes += [("role", "img"), ("aria-label", title), ("class", "lineage-graph")]
    out.append("<" + tag + "".join(f' {_local(key)}="{esc(value)}"' for key, value in attributes) + ">")
    if top:
        out.append(fill("<title>{title}</title>", title=title))
    if element.text and element.text.strip():
        out.append(esc(element.text))
    for child in element:
        _write(child, out)
        if child.tail and child.tail.strip() and tag == "text":
            out.append(esc(child.tail))
    out.append(f"</{tag}>")


# The tree stamp draws itself: one row per image, indented by depth, with elbow lines from each parent.
ROW = 30
INDENT = 28
CHAR = 7.3  # advance of a 12 px monospace character
PAD = 8


def tree_svg(nodes: Sequence[Node], *, title: str, focus: str | None = None) -> Markup:
    """Rows in the order given (each parent before its children), boxes `name  label`, lines parent → child."""
    rows = {node.name: index for index, node in enumerate(nodes)}
    widths = [len(node.name) + len(node.label) + 2 for node in nodes]
    width = max(
        (node.depth * INDENT + int(w * CHAR) + 2 * PAD for node, w in zip(nodes, widths, strict=True)), default=0
    )
    height = max(len(nodes) * ROW, ROW)
    parts = [
        fill(
            '<svg class="lineage-tree" role="img" aria-label="{title}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
            "<title>{title}</title>",
            title=title,
            w=width + 2,
            h=height,
        )
    ]
    for node in nodes:
        if node.parent is None or node.parent not in rows:
            continue
        top = rows[node.parent] * ROW + ROW - 6
        x_parent = (node.depth - 1) * INDENT + 10
        y = rows[node.name] * ROW + ROW // 2
        parts.append(
            fill(
                '<path d="M{x} {top} V{y} H{x2}" fill="none" stroke="#4b5563" stroke-width="1.2"/>',
                x=x_parent,
                top=top,
                y=y,
                x2=node.depth * INDENT,
            )
        )
    for index, (node, chars) in enumerate(zip(nodes, widths, strict=True)):
        tone = "focus" if node.name == focus else node.tone
        fill_colour, text_colour = COLOURS.get(tone, COLOURS["muted"])
        x = node.depth * INDENT
        y = index * ROW + 3
        parts.append(
            fill(
                '<g><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{fill}" stroke="{ink}"'
                ' stroke-width="{stroke}"/><text x="{tx}" y="{ty}" fill="{ink}" font-family="monospace"'
                ' font-size="12">{name}  {label}</text></g>',
                x=x,
                y=y,
                w=int(chars * CHAR) + 2 * PAD,
                h=ROW - 6,
                fill=fill_colour,
                ink=text_colour,
                stroke="2" if node.name == focus else "1",
                tx=x + PAD,
                ty=y + 16,
                name=node.name,
                label=node.label,
            )
        )
    parts.append(Markup("</svg>"))
    return Markup("".join(parts))
