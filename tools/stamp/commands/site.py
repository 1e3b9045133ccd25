"""`stamp site [--out site] [--build build]`: the catalog as a static web site (docs/site.md).

Release notes come from the inventories verification kept in build/ (as `stamp notes` reads them, but never
from S3: the site asks no cloud), pending security updates from the plan saved at build/plan.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stamp import clock
from stamp.catalog import inventory as inv
from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.commands.common import catalog_of
from stamp.commands.notes import ReleaseNotes, load_inventory, previous_release, release_notes
from stamp.output import say
from stamp.site import pending
from stamp.site.assemble import draw_lineage, site_files
from stamp.site.folder import write_site
from stamp.site.model import Cve, Notes, NotesLookup, Upgrade, build_model

PLAN_FILE = "plan.json"


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    build = Path(args.build)
    plan_path = Path(args.plan) if args.plan else build / PLAN_FILE
    found, source = pending.from_plan(catalog, _read(plan_path), _shown(plan_path))
    model = build_model(
        catalog, now=clock.utc_now(), notes=notes_lookup(catalog, build), pending=found, pending_source=source
    )
    drawing = draw_lineage(model, dot=None if args.no_dot else "dot")
    if drawing.how != "drawn by Graphviz dot" and not args.no_dot:
        say(f"site: the lineage is {drawing.how}")
    out = write_site(Path(args.out), site_files(model, drawing))
    say(f"site: {out / 'index.html'} ({len(model.images)} images, {model.release_count} releases)")
    return 0


def _shown(path: Path) -> str:
    """The path as the pages name it: relative to the working folder, else only its name (a published page says
    nothing of the machine that made it)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return path.name


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def notes_lookup(catalog: Catalog, build: Path) -> NotesLookup:
    """Each release's notes from the inventories kept under `build` (each file read once), or why there are none."""
    kept: dict[tuple[str, str], inv.Inventory | str] = {}
    folders: dict[str, bool] = {}

    def inventory(image: str, release: Release) -> inv.Inventory | str:
        key = (image, release.build_id)
        if key not in kept:
            found = load_inventory(build, image, release, fetch=None)
            kept[key] = found if not isinstance(found, str) else f"no inventory of v{release.version} kept in build/"
        return kept[key]

    def lookup(image: str, release: Release) -> Notes | str:
        if image not in folders:
            folders[image] = (build / image / inv.HISTORY_DIR).is_dir()
        if not folders[image]:
            return "no inventories kept in build/ for this image"
        previous = previous_release(catalog, image, release)
        new = inventory(image, release)
        if isinstance(new, str):
            return new
        old = inventory(image, previous) if previous is not None else None
        if isinstance(old, str):
            return old
        return view(release_notes(image, release.version, previous.version if previous else None, old, new))

    return lookup


def view(notes: ReleaseNotes) -> Notes:
    unread = {item.source for item in notes.fixed if item.changelog != "read"}
    return Notes(
        summary=notes.summary().partition(": ")[2],
        previous=notes.previous,
        kernel_from=notes.kernel[0],
        kernel_to=notes.kernel[1],
        upgraded=tuple(Upgrade(c.name, c.arch, c.old, c.new) for c in notes.diff.upgraded),
        downgraded=tuple(Upgrade(c.name, c.arch, c.old, c.new) for c in notes.diff.downgraded),
        added=tuple(f"{p.name} {p.version} ({p.arch})" for p in notes.diff.added),
        removed=tuple(f"{p.name} {p.version} ({p.arch})" for p in notes.diff.removed),
        cves=tuple(Cve(c["id"], c["source"], c["version"]) for c in notes.cves()),
        unread=tuple(sorted(unread)),
    )
