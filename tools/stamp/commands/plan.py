"""`stamp plan`: which images to build and why, printed as a table, JSON, a job matrix or a pull-request comment
(the reasons themselves: tools/stamp/catalog/rebuilds.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from stamp import clock
from stamp.catalog.load import Catalog, Image, load_catalog
from stamp.catalog.rebuilds import LABELS, Plan, Reason, ReasonKind, SourceLookup, UpdateLookup, plan
from stamp.commands.common import catalog_of, target_of
from stamp.commands.pending import update_lookup
from stamp.drivers.git import CATALOG, catalog_at, diff_paths, merge_base, repo_relative, resolve_ref
from stamp.errors import CatalogError

if TYPE_CHECKING:
    from stamp.hosts.base import Target


# Renderers: `stamp plan --format table|json|matrix|markdown`.


def format_table(plan: Plan) -> str:
    lines: list[str] = []
    if not plan.images:
        lines.append("nothing to build")
    else:
        width = max(len("IMAGE"), *(len(p.name) for p in plan.images))
        lines.append(f"{'IMAGE':<{width}}  LAYER  REASONS")
        for item in plan.images:
            for index, reason in enumerate(item.reasons):
                head = f"{item.name:<{width}}  {item.layer:<5}" if index == 0 else " " * (width + 7)
                lines.append(f"{head}  {_one_line(reason.text())}")
    if plan.publish_only:
        lines.append("")
        lines.append("publish only (sharing changed, nothing to build):")
        for publish in plan.publish_only:
            for reason in publish.reasons:
                lines.append(f"  {publish.name}: {_one_line(reason.detail)}")
    if plan.update_notes:
        lines.append("")
        lines.append("package updates:")
        lines.extend(f"  {_one_line(note)}" for note in plan.update_notes)
    if not plan.sources_checked:
        lines.append("")
        lines.append(_NOT_CHECKED)
    if not plan.updates_checked:
        lines.append(_UPDATES_NOT_CHECKED)
    return "\n".join(lines) + "\n"


def format_json(plan: Plan) -> str:
    return json.dumps(plan.to_data(), indent=2, ensure_ascii=False) + "\n"


def format_matrix(plan: Plan) -> str:
    """One GitHub Actions `strategy.matrix` per layer: `{"layers": [{"include": [{"image", "layer"}…]}…]}`.

    A workflow cannot order the entries of one matrix, so merge.yml runs one matrix job per layer, each
    needing the one before it, and picks its matrix with `fromJSON(…).layers[N]`.
    """
    layers = [
        {"include": [{"image": name, "layer": index} for name in names]} for index, names in enumerate(plan.layers())
    ]
    return json.dumps({"layers": layers}, separators=(",", ":")) + "\n"


MARKDOWN_MARKER = "<!-- stamp-plan -->"
# GitHub refuses comments over 65,536 characters; long file lists are cut well before that.
_MAX_DETAILS = 10
_NOT_CHECKED = (
    "Vendor source images were not checked (no cloud credentials here); "
    "the build on main checks them, so base images may also rebuild for a newer source."
)
_UPDATES_NOT_CHECKED = "Pending package updates were not checked (--no-update-check)."


def format_markdown(plan: Plan) -> str:
    """A pull request comment. Details come from the pull request itself, so all of them are escaped."""
    out = [MARKDOWN_MARKER]
    count = len(plan.images)
    if count:
        out.append(f"### stamp plan: {count} image{'s' if count != 1 else ''} to build")
        out.append("")
        out.append("| layer | image | why |")
        out.append("| ---: | --- | --- |")
        for item in plan.images:
            out.append(f"| {item.layer} | `{item.name}` | {'<br>'.join(_grouped(item.reasons))} |")
    else:
        out.append("### stamp plan: nothing to build")
    if plan.publish_only:
        out.append("")
        out.append("**Publish only** (sharing changes, applied by `stamp publish` without a build):")
        out.append("")
        for publish in plan.publish_only:
            out.append(f"- `{publish.name}`: {'; '.join(_md(r.detail) for r in publish.reasons)}")
    out.extend(_update_lists(plan))
    if count:
        out.append("")
        out.append(f"Build order: {' → '.join(' + '.join(f'`{n}`' for n in names) for names in plan.layers())}")
    if plan.update_notes:
        out.append("")
        out.append("**Package updates** (not a reason to build on their own):")
        out.append("")
        out.extend(f"- {_md(note)}" for note in plan.update_notes[:_MAX_DETAILS])
        if len(plan.update_notes) > _MAX_DETAILS:
            out.append(f"- and {len(plan.update_notes) - _MAX_DETAILS} more")
    if not plan.sources_checked:
        out.append("")
        out.append(f"> {_md(_NOT_CHECKED)}")
    if not plan.updates_checked:
        out.append("")
        out.append(f"> {_md(_UPDATES_NOT_CHECKED)}")
    return "\n".join(out) + "\n"


# Rows listed per image in the markdown's package lists; the JSON has every one.
_MAX_UPDATE_ROWS = 100


def _count_pending(number: int) -> str:
    return f"{number} pending update{'s' if number != 1 else ''}"


def _update_lists(plan: Plan) -> list[str]:
    """Per image with `updates available`, every pending update in a collapsed table: the drift pull request's
    package list."""
    out: list[str] = []
    for item in plan.images:
        for reason in item.reasons:
            updates = reason.data.get("updates")
            if reason.kind != "updates_available" or not isinstance(updates, list):
                continue
            out += ["", f"<details><summary>{_md(item.name)}: {_count_pending(len(updates))}</summary>", ""]
            out += ["| package | installed | available | security |", "| --- | --- | --- | --- |"]
            for update in updates[:_MAX_UPDATE_ROWS]:
                name, installed, available = (_md(str(update[k])) for k in ("name", "installed", "available"))
                out.append(f"| {name} | {installed} | {available} | {'yes' if update['security'] else ''} |")
            if len(updates) > _MAX_UPDATE_ROWS:
                out.append(f"| and {len(updates) - _MAX_UPDATE_ROWS} more | | | |")
            out += ["", "</details>"]
    return out


def _grouped(reasons: Iterable[Reason]) -> list[str]:
    by_kind: dict[ReasonKind, list[str]] = {}
    for reason in reasons:
        by_kind.setdefault(reason.kind, []).append(reason.detail)
    cells = []
    for kind, details in by_kind.items():
        shown = [_md(d) for d in details[:_MAX_DETAILS]]
        if len(details) > _MAX_DETAILS:
            shown.append(f"and {len(details) - _MAX_DETAILS} more")
        cells.append(f"**{LABELS[kind]}**: {', '.join(shown)}")
    return cells


_MD_SPECIAL = set("\\`*_{}[]()<>#+-.!|~&")


def _md(text: str) -> str:
    # Backslash-escape every character Markdown or HTML could act on, so a crafted path or description in a
    # pull request shows as text and cannot break the table, add links or inject HTML.
    return "".join(f"\\{c}" if c in _MD_SPECIAL else c for c in _one_line(text))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _source_lookup(target: Target) -> SourceLookup:
    """The newest vendor image per image and region, asked of the cloud once each."""
    cache: dict[tuple[str, str], str | None] = {}

    def lookup(image: Image, region: str) -> str | None:
        assert image.source is not None
        key = (image.name, region)
        if key not in cache:
            found = target.cloud.find_newest_image(
                region, name=image.source.filter.name, owners=image.source.filter.owners
            )
            cache[key] = found.ami_id if found else None
        return cache[key]

    return lookup


def plan_for(args: argparse.Namespace, catalog: Catalog) -> Plan:
    lookup = None if args.no_source_check else _source_lookup(target_of(args, catalog))
    updates = None
    if not args.no_update_check:
        # S3 (for inventories build/ lacks) only with source checks on: both need the cloud's credentials.
        cloud = None if args.no_source_check else (lambda: target_of(args, catalog).cloud)
        updates = update_lookup(catalog, Path(args.out), cloud)
    return plan_between(
        catalog.root,
        args.base,
        args.head,
        catalog_path=catalog.path,
        source_lookup=lookup,
        now=clock.utc_now(),
        update_lookup=updates,
    )


def run(args: argparse.Namespace) -> int:

    catalog = catalog_of(args)
    found = plan_for(args, catalog)
    formatters = {
        "table": format_table,
        "json": format_json,
        "matrix": format_matrix,
        "markdown": format_markdown,
    }
    text = formatters[args.format](found)
    # The table is for people (stderr); the other formats feed workflows and PR comments (stdout).
    (sys.stderr if args.format == "table" else sys.stdout).write(text if text.endswith("\n") else text + "\n")
    return 0


def plan_between(
    repo: Path,
    base: str,
    head: str | None = None,
    *,
    catalog_path: Path = CATALOG,
    source_lookup: SourceLookup | None,
    now: datetime,
    update_lookup: UpdateLookup | None = None,
) -> Plan:
    """`stamp plan --base BASE [--head HEAD]`: the plan for `head` (or the working tree) against `base`.

    The old catalog is read at the merge base, the commit `head` forked from, so changes that landed on
    `base` since then are not mistaken for this branch's changes.
    """
    base_id = resolve_ref(repo, base)
    head_id = resolve_ref(repo, head) if head is not None else None
    fork = merge_base(repo, base_id, head_id or resolve_ref(repo, "HEAD"), base, head)
    paths = diff_paths(repo, fork, head_id)
    old = catalog_at(repo, fork, catalog_path)
    if head is None:
        new = load_catalog(repo / repo_relative(repo, catalog_path))
    else:
        found = catalog_at(repo, head, catalog_path, check_files=True)
        if found is None:
            raise CatalogError(
                f"{head}: has no {repo_relative(repo, catalog_path)}", hint="pass --head a later revision"
            )
        new = found
    return plan(old, new, paths, source_lookup=source_lookup, now=now, update_lookup=update_lookup)
