"""Pending security updates as the last saved plan tells them: `stamp plan --format json > build/plan.json`.

The site fetches no package index. It reads what a plan found (docs/inventory.md, Updates available) and says
"not checked" wherever the plan does not say: no saved plan, a plan run with --no-update-check, an image whose
rebuild.on_updates is `never`, a release without an inventory, an index that could not be verified.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from stamp.catalog.load import Catalog
from stamp.site.model import Pending, PendingState

# `updates not checked for 3 images without an inventory: base v2, web v4 and 1 more`, as `stamp plan` says it.
_UNREAD = re.compile(r"^updates not checked for \d+ images? without an inventory: (?P<items>.*)$")
_MORE = re.compile(r" and \d+ more$")


def from_plan(catalog: Catalog, text: str | None, where: str) -> tuple[dict[str, Pending], str]:
    """Per image with a current release, what the plan at `where` (its `text`, None: no such file) says; and one
    line saying where this came from, for the pages."""
    if text is None:
        return {}, f"not checked: no plan saved at {where}"
    try:
        data = json.loads(text)
    except ValueError:
        return {}, f"not checked: {where} is not the JSON of a plan"
    if not _looks_like_plan(data):
        return {}, f"not checked: {where} is not the JSON of a plan"
    if data["updates_checked"] is not True:
        return {}, f"not checked: the plan saved at {where} skipped the update check (--no-update-check)"
    notes = [note for note in data["update_notes"] if isinstance(note, str)]
    found = {name: _one(name, catalog, data, notes) for name in catalog.images if catalog.current_release(name)}
    return found, f"from the plan saved at {where}"


def _looks_like_plan(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("update_notes"), list)
        and "updates_checked" in data
    )


def _one(name: str, catalog: Catalog, data: Mapping[str, Any], notes: list[str]) -> Pending:
    policy = catalog.images[name].rebuild.on_updates
    if policy == "never":
        return Pending("not_checked", detail="not checked (rebuild.on_updates: never)")
    for item in data["images"]:
        if not isinstance(item, dict) or item.get("name") != name:
            continue
        for reason in item.get("reasons", []):
            if isinstance(reason, dict) and reason.get("kind") == "updates_available":
                security, other = _count(reason.get("security")), _count(reason.get("other"))
                state: PendingState = "pending" if security else "none"
                return Pending(state, security, other, f"{security} security, {other} other pending")
    for note in notes:
        if note.startswith((f"{name}: cannot verify", f"{name} v")):
            return Pending("not_checked", detail="not checked: the plan could not read its indexes or inventory")
        if note.startswith(f"{name}: ") and "pending (rebuild.on_updates:" in note:
            # Updates below the image's policy; with `security` or `all`, none of them is a security update.
            return Pending("none", 0, None, "no security updates; other updates pending")
    unread = [m["items"] for note in notes if (m := _UNREAD.match(note))]
    for items in unread:
        listed = [item.rsplit(" v", 1)[0] for item in _MORE.sub("", items).split(", ")]
        if name in listed or _MORE.search(items):
            return Pending("not_checked", detail="not checked: no inventory of the current release")
    return Pending("none", 0, None, "none found")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
