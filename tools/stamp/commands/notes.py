"""`stamp notes IMAGE [VERSION]`: what changed inside an image against its previous release, and the CVEs fixed.

Read from the inventories verification kept, `build/<image>/inventory/<build_id>.json`, found through each
release's build ID (docs/inventory.md); nothing is asked of the cloud.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stamp.catalog import inventory as inv
from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import find_release
from stamp.commands.common import catalog_of
from stamp.errors import CatalogError
from stamp.output import emit


@dataclass(frozen=True)
class ReleaseNotes:
    image: str
    version: int
    previous: int | None
    diff: inv.PackageDiff
    kernel: tuple[str | None, str]
    fixed: list[inv.FixedCves]

    def cves(self) -> list[dict[str, str]]:
        """Each CVE once per source package, with the version whose changelog entry names it."""
        found: dict[tuple[str, str], str] = {}
        for item in self.fixed:
            # Oldest entry first, so the version kept is the first one that fixed it.
            for version, ids in reversed(item.cves.items()):
                for cve in ids:
                    found.setdefault((cve, item.source), version)
        order = sorted(found, key=lambda key: (_cve_order(key[0]), key[1]))
        return [{"id": cve, "source": source, "version": found[cve, source]} for cve, source in order]

    def as_dict(self) -> dict[str, Any]:
        coverage = {item.source: item.changelog for item in self.fixed}
        return {
            "image": self.image,
            "version": self.version,
            "previous": self.previous,
            "added": [{"name": p.name, "arch": p.arch, "version": p.version} for p in self.diff.added],
            "removed": [{"name": p.name, "arch": p.arch, "version": p.version} for p in self.diff.removed],
            "upgraded": [
                {"name": c.name, "arch": c.arch, "from": c.old, "to": c.new, "source": c.source}
                | {"changelog": coverage.get(c.source, "missing")}
                for c in self.diff.upgraded
            ],
            "downgraded": [
                {"name": c.name, "arch": c.arch, "from": c.old, "to": c.new, "source": c.source}
                for c in self.diff.downgraded
            ],
            "kernel": {"from": self.kernel[0], "to": self.kernel[1]},
            "cves_fixed": self.cves(),
        }

    def summary(self) -> str:
        """One line, for a commit message: `base 8: 12 packages upgraded, 3 CVEs fixed`."""
        counts = inv.summary(self.diff, self.fixed)
        parts = [f"{_count(counts[key], 'package')} {key}" for key in ("upgraded", "added", "removed", "downgraded")]
        kept = [part for part in parts if not part.startswith("0 ")] or ["no package changes"]
        kept.append(f"{_count(counts['cves_fixed'], 'CVE')} fixed")
        if self.previous is None:
            kept = [f"first release, {len(self.diff.added)} packages"]
        return f"{self.image} {self.version}: " + ", ".join(kept)

    def markdown(self) -> str:
        against = f"against {self.image} {self.previous}" if self.previous else "first release"
        lines = [f"## {self.image} {self.version} ({against})", "", self.summary(), ""]
        old_kernel, new_kernel = self.kernel
        if old_kernel is None or old_kernel == new_kernel:
            lines.append(f"Kernel: {new_kernel or 'unknown'}" + (" (unchanged)" if old_kernel else ""))
        else:
            lines.append(f"Kernel: {old_kernel} → {new_kernel}")
        by_source = {item.source: item for item in self.fixed}
        if self.diff.upgraded:
            lines += ["", f"### Upgraded ({len(self.diff.upgraded)})", "", "| package | from | to | CVEs fixed |"]
            lines.append("|---|---|---|---|")
            for change in self.diff.upgraded:
                item = by_source.get(change.source)
                named = sorted({cve for ids in item.cves.values() for cve in ids}, key=_cve_order) if item else []
                lines.append(f"| {change.name} | {change.old} | {change.new} | {', '.join(named)} |")
        if self.diff.downgraded:
            lines += ["", f"### Downgraded ({len(self.diff.downgraded)})", ""]
            lines += [f"- {c.name} {c.old} → {c.new}" for c in self.diff.downgraded]
        for title, packages in (("Added", self.diff.added), ("Removed", self.diff.removed)):
            if packages and self.previous is not None:
                lines += ["", f"### {title} ({len(packages)})", ""]
                lines += [f"- {p.name} {p.version} ({p.arch})" for p in packages]
        cves = self.cves()
        if cves:
            lines += ["", f"### CVEs fixed ({len({c['id'] for c in cves})})", ""]
            lines += [f"- {c['id']} ({c['source']} {c['version']})" for c in cves]
        unread = sorted(item.source for item in self.fixed if item.changelog != "read")
        if unread:
            lines += [
                "",
                "Changelogs not read back to the previous version (CVEs they fixed may be missing above): "
                + ", ".join(unread),
            ]
        return "\n".join(lines) + "\n"


def _cve_order(cve: str) -> tuple[int, ...]:
    """CVE-2024-9143 before CVE-2024-13176: by year, then number."""
    return tuple(int(part) for part in cve.split("-")[1:])


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def release_notes(
    image: str, version: int, previous: int | None, old: inv.Inventory | None, new: inv.Inventory
) -> ReleaseNotes:
    """Notes for `new` against `old` (None: a first release, where every package is added)."""
    if old is None:
        diff = inv.PackageDiff(added=list(new.packages), removed=[], upgraded=[], downgraded=[])
        return ReleaseNotes(image, version, None, diff, (None, new.kernel), [])
    return ReleaseNotes(
        image, version, previous, inv.diff_packages(old, new), (old.kernel, new.kernel), inv.cves_fixed(old, new)
    )


def previous_release(catalog: Catalog, image: str, release: Release) -> Release | None:
    """The release just before `release` by version, whatever its status (a revoked one was released too)."""
    older = [r for r in catalog.releases.get(image, ()) if r.version < release.version]
    return max(older, key=lambda r: r.version, default=None)


def inventory_of(build_root: Path, image: str, release: Release) -> inv.Inventory:
    path = inv.history_path(build_root, image, release.build_id)
    if not path.is_file():
        raise CatalogError(
            f"no inventory kept for {image} {release.version} (build {release.build_id}): {path} does not exist",
            hint=f"`stamp verify` keeps one per build in {path.parent}/, on the machine that verified it",
        )
    return inv.read_inventory(path)


def notes_for(catalog: Catalog, image: str, version: int | None, build_root: Path) -> ReleaseNotes:
    if version is None:
        release = catalog.current_release(image)
        if release is None:
            raise CatalogError(f"image '{image}' has no current release", hint=f"name one: stamp notes {image} N")
    else:
        release = find_release(catalog, image, version)
    previous = previous_release(catalog, image, release)
    new = inventory_of(build_root, image, release)
    old = inventory_of(build_root, image, previous) if previous is not None else None
    return release_notes(image, release.version, previous.version if previous else None, old, new)


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    notes = notes_for(catalog, name, args.version, Path(args.out))
    if args.format == "json":
        emit(notes.as_dict())
    else:
        print(notes.markdown(), end="")
    return 0
