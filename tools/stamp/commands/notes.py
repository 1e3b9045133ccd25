"""`stamp notes IMAGE [VERSION]`: what changed inside an image against its previous release, and the CVEs fixed.

Read from the inventories verification kept, `build/<image>/inventory/<build_id>.json`, found through each
release's build ID (docs/inventory.md). A release whose inventory is not there is read from the packages.json
`stamp record` stored beside its SBOM in S3 (`defaults.artifacts`), and kept in build/ for the next time.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from stamp.catalog import inventory as inv
from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import find_release
from stamp.cloud.protocol import Cloud
from stamp.commands.common import catalog_of, target_of
from stamp.errors import CatalogError, CloudError
from stamp.output import emit

# Reads the object at an s3:// URI; raises CloudError (MissingResource when it is not there), or CatalogError for
# a URI that is not s3://BUCKET/KEY. load_inventory turns either into its reason.
Fetch = Callable[[str], bytes]


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


def load_inventory(build_root: Path, image: str, release: Release, *, fetch: Fetch | None) -> inv.Inventory | str:
    """The inventory of `release`, or one line saying why there is none (the caller decides if that is an error).

    First the file verification kept, `<build_root>/<image>/inventory/<build_id>.json`; else, when the release
    names an SBOM and `fetch` is given, the packages.json `stamp record` stored beside it, which must be of the
    release's build. What is fetched is kept at the local path, so the next call reads it from there.
    """
    path = inv.history_path(build_root, image, release.build_id)
    if path.is_file():
        try:
            return inv.read_inventory(path)
        except CatalogError as exc:
            return exc.message
    missing = f"{path} does not exist"
    if release.sbom is None:
        return f"{missing}, and the release has no sbom: no copy of it was stored in S3"
    uri = packages_uri(release.sbom.uri)
    if fetch is None:
        return f"{missing}, and S3 was not asked for its copy {uri}"
    try:
        data = fetch(uri)
    except (CloudError, CatalogError) as exc:
        return f"{missing}, and {uri} cannot be read: {exc.message}"
    try:
        text = data.decode("utf-8")
        found = inv.Inventory.model_validate_json(text)
    except (UnicodeDecodeError, pydantic.ValidationError) as exc:
        why = exc.errors()[0]["msg"] if isinstance(exc, pydantic.ValidationError) else "not UTF-8"
        return f"{missing}, and {uri} is not a package inventory stamp can read: {why}"
    if found.build_id != release.build_id:
        return f"{missing}, and {uri} is the inventory of build {found.build_id}, not {release.build_id}"
    # A build folder that cannot be written: the inventory is still good, only the next call fetches it again.
    with contextlib.suppress(OSError):
        inv.write_json(path, text)
    return found


def packages_uri(sbom_uri: str) -> str:
    """The packages.json in the same S3 folder as the SBOM: s3://BUCKET/PREFIX/<image>/<version>/packages.json."""
    return sbom_uri.rpartition("/")[0] + "/" + inv.PACKAGES_FILE


def s3_fetch(cloud: Cloud, region: str) -> Fetch:
    """A `Fetch` reading s3://BUCKET/KEY with `cloud` in `region` (the image's first one, where record stored it;
    a bucket elsewhere is still found)."""

    def fetch(uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise CatalogError(f"{uri} is not an s3://BUCKET/KEY URI")
        return cloud.get_object(region, bucket, key)

    return fetch


def inventory_of(build_root: Path, image: str, release: Release, *, fetch: Fetch | None = None) -> inv.Inventory:
    found = load_inventory(build_root, image, release, fetch=fetch)
    if isinstance(found, str):
        path = inv.history_path(build_root, image, release.build_id)
        raise CatalogError(
            f"no inventory kept for {image} {release.version} (build {release.build_id}): {found}",
            hint=f"`stamp verify` keeps one per build in {path.parent}/, on the machine that verified it; with"
            " defaults.artifacts, `stamp record` stores a copy in S3 beside the release's SBOM",
        )
    return found


def notes_for(
    catalog: Catalog, image: str, version: int | None, build_root: Path, *, fetch: Fetch | None = None
) -> ReleaseNotes:
    if version is None:
        release = catalog.current_release(image)
        if release is None:
            raise CatalogError(f"image '{image}' has no current release", hint=f"name one: stamp notes {image} N")
    else:
        release = find_release(catalog, image, version)
    previous = previous_release(catalog, image, release)
    new = inventory_of(build_root, image, release, fetch=fetch)
    old = inventory_of(build_root, image, previous, fetch=fetch) if previous is not None else None
    return release_notes(image, release.version, previous.version if previous else None, old, new)


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    notes = notes_for(catalog, name, args.version, Path(args.out), fetch=_cloud_fetch(args, catalog, name))
    if args.format == "json":
        emit(notes.as_dict())
    else:
        print(notes.markdown(), end="")
    return 0


def _cloud_fetch(args: argparse.Namespace, catalog: Catalog, image: str) -> Fetch | None:
    """S3 through `--cloud`'s target, made only when an inventory is missing from build/ and its release names an
    SBOM; None when the catalog has no defaults.artifacts (then nothing was stored, and no cloud is needed)."""
    if catalog.defaults.artifacts is None:
        return None
    made: list[Fetch] = []

    def fetch(uri: str) -> bytes:
        if not made:
            made.append(s3_fetch(target_of(args, catalog).cloud, catalog.images[image].regions[0]))
        return made[0](uri)

    return fetch
