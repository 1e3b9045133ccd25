"""HTML that escapes by default: every value put into a template is escaped unless it is `Markup` already.

Links go only to relative pages of the site (`href` refuses anything else), so no catalog value can become a
link to another host or a `javascript:` URL (docs/site.md, Security).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable


class Markup(str):
    """Text that is HTML already: made only by this module's functions, from escaped values."""

    __slots__ = ()


def esc(value: object) -> Markup:
    """`value` as HTML text: `&`, `<`, `>`, `"` and `'` escaped (so it is safe in quoted attributes too)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def fill(template: str, **values: object) -> Markup:
    """`template` (a constant of this package) with its `{name}` fields replaced by escaped values."""
    return Markup(template.format_map({name: esc(value) for name, value in values.items()}))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    return Markup(esc(separator).join(esc(part) for part in parts))


# What a link may point at: a file of the site by a relative path (images/web.html, ../index.html#v3), never a
# scheme, a host, an absolute path or a query.
_RELATIVE = re.compile(r"^(\.\./)*[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*(#[a-z0-9_-]+)?$|^#[a-z0-9_-]+$")


def href(path: str) -> Markup:
    """A relative link target, escaped; anything else (a scheme, a host, `..` inside a name) is a bug here."""
    if not _RELATIVE.match(path) or ".." in path.replace("../", ""):
        raise ValueError(f"not a relative link to a page of the site: {path!r}")
    return esc(path)


def link(path: str, text: object, *, classes: str = "") -> Markup:
    if classes:
        return fill('<a href="{href}" class="{classes}">{text}</a>', href=href(path), classes=classes, text=text)
    return fill('<a href="{href}">{text}</a>', href=href(path), text=text)
