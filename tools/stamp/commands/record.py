"""`stamp record`: verified build results into `releases:`, after the cloud confirmed every AMI (docs/custody.md)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pydantic

from stamp import clock
from stamp.catalog import file_reading
from stamp.catalog import inventory as inv
from stamp.catalog.edit import with_release
from stamp.catalog.load import Catalog, load_catalog
from stamp.catalog.models import Release, SbomRef
from stamp.catalog.results import BuildResult
from stamp.catalog.store import catalog_lock, check_part, check_text, write_atomically
from stamp.catalog.text_layout import Layout
from stamp.cloud.protocol import Cloud
from stamp.commands.common import catalog_of, target_of
from stamp.errors import CatalogError, CloudError, PolicyError
from stamp.hosts.base import CloudKind, Target
from stamp.hosts.target import target_class
from stamp.notify import notifier
from stamp.notify.expected import Extra
from stamp.output import say
from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG

# A result stamped more than this far in the future comes from a skewed clock; recorded, it would stay
# "newest" and block every later build from becoming current.
_CLOCK_SKEW = timedelta(minutes=10)


def release_from_result(result: BuildResult, catalog: Catalog, *, now: datetime, cloud: str | None = None) -> Release:
    """The release a verified result becomes: the next version of its image, `current` (see with_release), in the
    image's first rollout channel since `now` when it has channels (docs/rollout.md)."""
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
    first = next(iter(image.channels), None)
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
            channels={first[0]: clock.iso(now)} if first is not None else None,
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


@dataclass(frozen=True)
class Stored:
    """What a release's entry says of the artifacts stored for it."""

    sbom: SbomRef
    packages: int


# Stores a new release's artifacts (result, version) before the catalog names them; None: nothing was stored.
Upload = Callable[[BuildResult, int], Stored | None]


def record(
    catalog_path: Path,
    results: Sequence[BuildResult],
    *,
    cloud: str | None = None,
    now: datetime | None = None,
    upload: Upload | None = None,
) -> list[Release]:
    """Record each result as a release; returns one Release per result, in order.

    A result whose build_id is already recorded returns the existing release and changes nothing, so running
    `stamp record` twice is harmless. `upload` runs for each new release once its version is known (under the
    lock, so no other record takes it) and before the file is written: when it raises, nothing is written.
    """
    when = now or clock.utc_now()
    images = {result.image for result in results}
    with catalog_lock(catalog_path):
        original = file_reading.read_text(catalog_path)
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
            stored = upload(result, release.version) if upload is not None else None
            if stored is not None:
                release = release.model_copy(update={"sbom": stored.sbom, "packages": stored.packages})
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


# Names a file `stamp record` writes the notes' summary line of each release it adds to, one a line (none for a
# release without both inventories; empty when it added none): merge.yml puts them into the record commit's message.
SUMMARY_FILE_ENV = "STAMP_RECORD_SUMMARY_FILE"


def run(args: argparse.Namespace) -> int:
    from stamp.catalog.results import read_result

    catalog = catalog_of(args)
    build_root = Path(args.out)
    names = catalog.select(args.images or [n for n in catalog.images if (build_root / n).is_dir()])
    results = [read_result(build_root, name) for name in names]
    ensure_may_record(catalog, args.cloud)  # before anything starts: a refusal leaves no local cloud running
    target = target_of(args, catalog)
    # --catalog-only: the catalog edit and its cloud checks alone, as build-layer.yml records the layers before it
    # in its own checkout: the record job stores the artifacts and announces the releases (iam/build.json has
    # neither S3 nor notifications).
    recorded = record_confirmed(catalog.path, results, target, build_root=None if args.catalog_only else build_root)
    known = {r.build_id for releases in catalog.releases.values() for r in releases}
    summaries: list[str] = []
    new: list[tuple[str, int]] = []
    extras: dict[tuple[str, int, str], Extra] = {}
    for release, result in zip(recorded, results, strict=True):
        say(f"recorded {result.image} version {release.version}: " + " ".join(release.amis.values()))
        if result.build_id in known or args.catalog_only:
            continue
        new.append((result.image, release.version))
        if release.channels:
            say(f"  in channel {', '.join(release.channels)} (`stamp promote {result.image} --to CHANNEL` moves it on)")
        summary = notes_summary(
            catalog, result.image, release, build_root, fetch=_artifact_fetch(catalog, result.image, target)
        )
        if summary is not None:
            say(f"notes: {summary}")
            summaries.append(summary)
            extras[(result.image, release.version, "recorded")] = Extra(notes=summary)
    summary_file = os.environ.get(SUMMARY_FILE_ENV, "")
    if summary_file:
        write_summaries(Path(summary_file), summaries)
    if new and notifier.configured(catalog):
        # release.recorded (and source.updated) right away; a failed delivery waits for `stamp publish`.
        notifier.Notifier(load_catalog(catalog.path), target.cloud).announce(new, extras=extras)
    return 0


def _artifact_fetch(catalog: Catalog, image: str, target: Target) -> Callable[[str], bytes] | None:
    """S3 where record stores the artifacts, for the previous release's packages.json; None without them."""
    from stamp.commands import notes

    if catalog.defaults.artifacts is None:
        return None
    return notes.s3_fetch(target.cloud, catalog.images[image].regions[0])


def write_summaries(path: Path, summaries: Sequence[str]) -> None:
    """The summary lines, one a line; written over, so that a file left by an earlier run never adds to them."""
    try:
        path.write_text("".join(f"{line}\n" for line in summaries), encoding="utf-8")
    except OSError as exc:
        raise CatalogError(
            f"cannot write the notes' summary lines to {path} ({SUMMARY_FILE_ENV}): {exc.strerror or exc}",
            hint="the releases are recorded; point the variable at a writable file",
        ) from None


def notes_summary(
    before: Catalog,
    image: str,
    release: Release,
    build_root: Path,
    *,
    fetch: Callable[[str], bytes] | None = None,
) -> str | None:
    """`stamp notes`' one line for a release just recorded, against the one before it (from `before`, the catalog
    as it was: no second read of a large file); None when either inventory is neither in `build_root` nor, with
    `fetch`, in S3 beside the release's SBOM. When S3 was asked, why there is no line is said."""
    from stamp.commands import notes

    previous = notes.previous_release(before, image, release)
    if previous is None:
        return None
    kept: list[inv.Inventory] = []
    for which in (release, previous):
        found = notes.load_inventory(build_root, image, which, fetch=fetch)
        if isinstance(found, str):
            if fetch is not None:
                lacking = f"{image} {which.version}"
                say(f"notes: no summary for {image} {release.version}: no inventory of {lacking}: {found}")
            return None
        kept.append(found)
    new, old = kept
    return notes.release_notes(image, release.version, previous.version, old, new).summary()


# What verification keeps in <out>/<image>/ that record stores beside the catalog, with its media type.
ARTIFACT_FILES = {inv.PACKAGES_FILE: "application/json", inv.SBOM_FILE: "application/vnd.cyclonedx+json"}


@dataclass(frozen=True)
class Kept:
    """A build's artifacts as verification left them: the files' bytes, and how many packages the inventory has."""

    files: dict[str, bytes]
    packages: int


def kept_artifacts(folder: Path, build_id: str) -> Kept | str:
    """The files of build `build_id` in `folder` (build/<image>), or why there are none to store."""
    missing = [name for name in ARTIFACT_FILES if not (folder / name).is_file()]
    if missing:
        return f"no {' or '.join(missing)} in {folder}/ (verified before stamp kept inventories?)"
    files = {name: (folder / name).read_bytes() for name in ARTIFACT_FILES}
    try:
        inventory = inv.read_inventory(folder / inv.PACKAGES_FILE)
    except CatalogError as exc:
        return exc.message
    if inventory.build_id != build_id:
        return f"{folder / inv.PACKAGES_FILE} is of build {inventory.build_id}, not {build_id}"
    try:
        sbom_build = json.loads(files[inv.SBOM_FILE])["metadata"]["component"]["version"]
    except (ValueError, KeyError, TypeError):
        return f"{folder / inv.SBOM_FILE} is not a CycloneDX SBOM stamp wrote"
    if sbom_build != build_id:
        return f"{folder / inv.SBOM_FILE} is of build {sbom_build}, not {build_id}"
    return Kept(files, len(inventory.packages))


@dataclass
class ArtifactUpload:
    """The `Upload` of `stamp record`: a new release's packages.json and sbom.cdx.json to
    s3://BUCKET/PREFIX/<image>/<version>/ when the catalog has `defaults.artifacts` (docs/inventory.md).

    S3 is asked in the image's first region; botocore follows S3's redirect to a bucket elsewhere.
    """

    catalog: Catalog
    target: Target
    build_root: Path
    _ready: set[tuple[str, str]] = field(default_factory=set, init=False)
    # Said once the catalog is written: an edit that then fails (a full disk) stored nothing worth a line.
    messages: list[str] = field(default_factory=list, init=False)

    def __call__(self, result: BuildResult, version: int) -> Stored | None:
        folder = self.build_root / result.image
        artifacts = self.catalog.defaults.artifacts
        kept = kept_artifacts(folder, result.build_id)
        if isinstance(kept, str):
            self.messages.append(
                f"artifacts: {result.image} version {version} is recorded without sbom and packages: {kept}"
            )
            return None
        if artifacts is None:
            self.messages.append(f"artifacts: kept in {folder}/ (no defaults.artifacts)")
            return None
        region = self.catalog.images[result.image].regions[0]
        bucket, base = artifacts.bucket, artifacts.folder(result.image, version)
        cloud = self.target.cloud
        try:
            if (bucket, region) not in self._ready:
                self.target.ensure_bucket(bucket, region)
                self._ready.add((bucket, region))
            digests = {}
            for name, body in kept.files.items():
                key = base + name
                digests[name] = cloud.put_object(region, bucket, key, body, content_type=ARTIFACT_FILES[name])
                found = cloud.head_object(region, bucket, key)
                if found is None or found.size != len(body) or found.sha256 not in (None, digests[name]):
                    raise CloudError(f"s3://{bucket}/{key} does not read back as the {len(body)} bytes uploaded")
        except CloudError as exc:
            raise CloudError(
                f"cannot store the artifacts of {result.image} version {version} in s3://{bucket}/{base}, so the"
                f" catalog was not changed: {exc.message}",
                hint=exc.hint or f"check defaults.artifacts and that these credentials may write to {bucket}",
            ) from None
        self.messages.append(
            f"artifacts: stored s3://{bucket}/{base} ({', '.join(kept.files)}; {kept.packages} packages)"
        )
        return Stored(SbomRef(uri=f"s3://{bucket}/{base}{inv.SBOM_FILE}", sha256=digests[inv.SBOM_FILE]), kept.packages)


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


def record_confirmed(
    catalog_path: Path, results: Sequence[BuildResult], target: Target, *, build_root: Path | None = None
) -> list[Release]:
    """`record`, after the cloud confirmed every result not recorded yet (confirm_custody); a refusal writes nothing.

    What the results and the catalog alone can refuse is refused first, without asking the cloud anything. With
    `build_root` (where verification kept the inventories), each new release's artifacts are stored first
    (ArtifactUpload); a failed upload writes nothing.
    """
    catalog = load_catalog(catalog_path)
    recorded = {r.build_id for releases in catalog.releases.values() for r in releases}
    new = [r for r in results if r.build_id not in recorded]
    for result in new:
        release_from_result(result, catalog, now=clock.utc_now(), cloud=target.kind)
    confirm_custody(target.cloud, new, accept_dirty=target.records_dirty_builds)
    upload = ArtifactUpload(catalog, target, build_root) if build_root is not None else None
    releases = record(catalog_path, results, cloud=target.kind, upload=upload)
    for line in upload.messages if upload is not None else ():
        say(line)
    return releases
