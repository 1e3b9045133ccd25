"""`stamp record`: verified build results into `releases:`, after the cloud confirmed every AMI (docs/custody.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic

from stamp import clock
from stamp.catalog import load as catalog_module
from stamp.catalog.edit import Layout, with_release
from stamp.catalog.load import Catalog, load_catalog
from stamp.catalog.models import Release
from stamp.catalog.results import BuildResult
from stamp.catalog.store import catalog_lock, check_part, check_text, write_atomically
from stamp.cloud.protocol import Cloud
from stamp.commands.common import catalog_of, target_of
from stamp.errors import CatalogError, PolicyError
from stamp.hosts.base import CloudKind, Target
from stamp.hosts.target import target_class
from stamp.output import say
from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG

# A result stamped more than this far in the future comes from a skewed clock; recorded, it would stay
# "newest" and block every later build from becoming current.
_CLOCK_SKEW = timedelta(minutes=10)


def release_from_result(result: BuildResult, catalog: Catalog, *, now: datetime, cloud: str | None = None) -> Release:
    """The release a verified result becomes: the next version of its image, `current` (see with_release)."""
    where = f"build {result.build_id} of image '{result.image}'"
    if cloud is not None and result.cloud != cloud:
        raise CatalogError(
            f"{where} ran on the {result.cloud} cloud, not {cloud}: it cannot be recorded here",
            hint=f"record it with --cloud {result.cloud}, in the catalog it was built for",
        )
    if result.verified != "passed":
        raise CatalogError(
            f"{where} is not verified (verified: {result.verified}): stamp records only images whose tests passed",
            hint=f"run `stamp verify {result.image}` and fix the failing tests first"
            + (f" ({', '.join(result.failed_tests[:5])})" if result.failed_tests else ""),
        )
    image = catalog.images.get(result.image)
    if image is None:
        raise CatalogError(f"{where}: the catalog has no image '{result.image}'", hint="define it under images:")
    missing = [region for region in image.regions if region not in result.amis]
    if missing:
        raise CatalogError(
            f"{where} has no AMI in {', '.join(missing)}, which the catalog lists for '{result.image}'",
            hint=f"rebuild with `stamp build {result.image}`",
        )
    started = _parse_time(result.started_at, where)
    if started > now + _CLOCK_SKEW:
        raise CatalogError(
            f"{where} says it started at {result.started_at}, after now ({clock.iso(now)})",
            hint="check the build machine's clock, then rebuild",
        )
    versions = [r.version for r in catalog.releases.get(result.image, ())]
    try:
        return Release(
            version=max(versions, default=0) + 1,
            amis=dict(result.amis),
            # When the build started orders builds: the newer commit wins even if an older build finishes later.
            built_at=clock.iso(started),
            commit=result.commit,
            build_id=result.build_id,
            source=result.source,
            verified="passed",
            status="current",
            dirty=result.dirty,
        )
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise CatalogError(f"{where}: {field} is not valid for a release: {error['msg']}") from None


def _parse_time(value: str, where: str) -> datetime:
    parsed = clock.parse_time(value)
    if parsed is None:
        raise CatalogError(f"{where}: started_at {value!r} is not a UTC time like 2026-11-26T15:00:00Z")
    return parsed


def record(
    catalog_path: Path,
    results: Sequence[BuildResult],
    *,
    cloud: str | None = None,
    now: datetime | None = None,
) -> list[Release]:
    """Record each result as a release; returns one Release per result, in order.

    A result whose build_id is already recorded returns the existing release and changes nothing, so running
    `stamp record` twice is harmless.
    """
    when = now or datetime.now(UTC)
    images = {result.image for result in results}
    with catalog_lock(catalog_path):
        original = catalog_module.read_text(catalog_path)
        text = original
        try:
            layout = Layout.of(text, images)
        except CatalogError:
            check_text(text, catalog_path, what="the catalog")  # an invalid file is reported as that, at its line
            raise
        catalog = check_part(layout, catalog_path, what="the catalog")
        written: list[tuple[str, int]] = []
        for result in results:
            known = next((r for r in catalog.releases.get(result.image, ()) if r.build_id == result.build_id), None)
            if known is not None:
                written.append((result.image, known.version))
                continue
            release = release_from_result(result, catalog, now=when, cloud=cloud)
            edited = Layout.of(with_release(text, result.image, release), images)
            if not edited.confined(layout, result.image):
                # Read all of it: if the edit broke the file, that names the line; if not, it still strayed.
                check_text(edited.text, catalog_path, what="the edited catalog")
                raise CatalogError(
                    f"stamp record would change lines outside releases.{result.image}; {catalog_path} was left "
                    "unchanged",
                    hint="this is a bug in stamp record: please report it with the releases: section of the catalog",
                )
            text, layout = edited.text, edited
            written.append((result.image, release.version))
            # The next result may be for the same image: it needs this version, so read the edit back.
            catalog = check_part(layout, catalog_path, what="the edited catalog")
        if text != original:
            write_atomically(catalog_path, text)
    return [next(r for r in catalog.releases[image] if r.version == version) for image, version in written]


def custody_problems(cloud: Cloud, result: BuildResult, account_id: str) -> list[str]:
    """One line per AMI of `result` that is not what record may write: `<ami> in <region>: why`."""
    problems: list[str] = []
    for region, ami_id in sorted(result.amis.items()):
        details = cloud.describe_images(region, [ami_id]).get(ami_id)
        where = f"{ami_id} in {region}"
        if details is None:
            problems.append(f"{where}: does not exist (deregistered, or never registered by this build)")
            continue
        if details.state != "available":
            problems.append(f"{where}: is {details.state}, not available")
        if details.owner_id != account_id:
            problems.append(f"{where}: is owned by account {details.owner_id}, not by this account ({account_id})")
        build_id = details.tags.get(BUILD_ID_TAG)
        if build_id != result.build_id:
            problems.append(f"{where}: carries {BUILD_ID_TAG}={build_id or '(none)'}, not {result.build_id}")
        if details.tags.get(VERIFIED_TAG) != VERIFIED:
            problems.append(f"{where}: has no {VERIFIED_TAG}={VERIFIED} tag (stamp verify sets it when tests pass)")
    return problems


def confirm_custody(cloud: Cloud, results: Sequence[BuildResult], *, accept_dirty: bool) -> None:
    """Refuses (exit 6) results whose AMIs are missing, foreign, unverified, or not this build's, in any region,
    and dirty results unless `accept_dirty` (the local cloud); nothing is written when any result is refused."""
    refusals: list[str] = []
    account_id = cloud.account_id()
    for result in results:
        if result.dirty and not accept_dirty:
            refusals.append(
                f"{result.image} build {result.build_id}: built from uncommitted changes ("
                + "; ".join(result.dirty_inputs[:5] or ["inputs differ from the commit"])
                + ")"
            )
        problems = custody_problems(cloud, result, account_id)
        refusals += [f"{result.image} build {result.build_id}: {problem}" for problem in problems]
    if refusals:
        raise PolicyError(
            "refusing to record what stamp cannot vouch for; the catalog was not changed:\n  " + "\n  ".join(refusals),
            hint="build and verify again from a clean checkout (`stamp build IMAGE && stamp verify IMAGE`); record "
            "takes only AMIs this account owns, still available, tagged by the build and passed by stamp verify",
        )


def run(args: argparse.Namespace) -> int:
    from stamp.catalog.results import read_result

    catalog = catalog_of(args)
    names = catalog.select(args.images or [n for n in catalog.images if (Path(args.out) / n).is_dir()])
    results = [read_result(Path(args.out), name) for name in names]
    ensure_may_record(catalog, args.cloud)  # before anything starts: a refusal leaves no local cloud running
    recorded = record_confirmed(catalog.path, results, target_of(args, catalog))
    for release, result in zip(recorded, results, strict=True):
        say(f"recorded {result.image} version {release.version}: " + " ".join(release.amis.values()))
    return 0


# Marks a scratch copy of a repository whose catalog may take local-cloud releases (docs/contract.md, Local cloud).
WORKSPACE_MARKER = Path(".stamp") / "local-workspace"


def ensure_may_record(catalog: Catalog, kind: CloudKind) -> None:
    """Local-cloud AMIs exist only on this machine: they never go into a repository's real catalog.

    Decided from the kind alone (`hosts.target.target_class`): refusing needs no running cloud.
    """
    if target_class(kind).records_only_in_workspaces and not (catalog.root / WORKSPACE_MARKER).exists():
        raise PolicyError(
            f"{catalog.path}: local-cloud releases are never recorded in the repository's own catalog",
            hint="run the pipeline in a scratch copy (`stamp demo --keep` leaves one), or mark a copy you made"
            f" with `mkdir -p .stamp && touch {WORKSPACE_MARKER}`",
        )


def record_confirmed(catalog_path: Path, results: Sequence[BuildResult], target: Target) -> list[Release]:
    """`record`, after the cloud confirmed every result not recorded yet (confirm_custody); a refusal writes nothing.

    What the results and the catalog alone can refuse is refused first, without asking the cloud anything.
    """
    catalog = load_catalog(catalog_path)
    recorded = {r.build_id for releases in catalog.releases.values() for r in releases}
    new = [r for r in results if r.build_id not in recorded]
    for result in new:
        release_from_result(result, catalog, now=datetime.now(UTC), cloud=target.kind)
    confirm_custody(target.cloud, new, accept_dirty=target.records_dirty_builds)
    return record(catalog_path, results, cloud=target.kind)
