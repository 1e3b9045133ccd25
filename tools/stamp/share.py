"""Publishing: reconciles launch permissions, snapshot permissions and SSM parameters to exactly the catalog's."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stamp.catalog import Catalog, Image
from stamp.cloud import Cloud, ImageDetails, Parameter, ShareDiff, ShareSet
from stamp.errors import CatalogError, CloudError, PolicyError
from stamp.models import Release

# EC2 refuses more than 1,000 launch-permission entities per AMI and region (an org or OU counts as one):
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html
MAX_SHARE_ENTITIES = 1000
# Set on an AMI while its snapshots are shared with copy_accounts. Checking snapshot permissions costs one call
# per snapshot, so stamp looks only at AMIs that want copy access or carry this tag (it comes free with the
# DescribeImages call publish makes anyway); removing the last copy account still revokes the old grants.
COPY_SHARED_TAG = "stamp:copy-shared"
LAUNCHABLE = frozenset({"current", "previous", "deprecated"})


def parameter_name(image: str) -> str:
    return f"/stamp/{image}/current"


def desired_share(image: Image, *, allow_public: bool) -> ShareSet:
    """The launch permissions the catalog asks for; public only with both the image's and the catalog's consent."""
    share = image.share
    if share.public and not allow_public:
        raise PolicyError(
            f"image '{image.name}' asks for public sharing (share.public: true), but defaults.allow_public is not true",
            hint="public images need both settings, so the change is visible in review; remove share.public or "
            "set defaults.allow_public: true in catalog.yaml",
        )
    # Copying a shared AMI needs launch permission as well as snapshot access, so copy_accounts get both:
    # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/CopyingAMIs.html#copy-ami-permissions
    desired = ShareSet(
        accounts=frozenset(share.accounts) | frozenset(share.copy_accounts),
        organizations=frozenset(share.organizations),
        organizational_units=frozenset(share.organizational_units),
        public=share.public,
    )
    if len(desired) > MAX_SHARE_ENTITIES:
        raise CatalogError(
            f"image '{image.name}' is shared with {len(desired)} targets; EC2 allows {MAX_SHARE_ENTITIES} per AMI",
            hint="share with an organization or OU instead of listing accounts one by one",
        )
    return desired


def desired_copy_share(image: Image) -> ShareSet:
    """Snapshot createVolumePermission: only the accounts that copy the image into their own account."""
    return ShareSet(accounts=frozenset(image.share.copy_accounts))


def plan_share(current: ShareSet, desired: ShareSet) -> ShareDiff:
    return ShareDiff(add=desired.minus(current), remove=current.minus(desired))


@dataclass(frozen=True)
class ParameterChange:
    name: str
    previous: str | None
    value: str

    def line(self) -> str:
        if self.previous is None:
            return f"+ parameter {self.name} {self.value}"
        return f"~ parameter {self.name} {self.previous} -> {self.value}"


@dataclass(frozen=True)
class PublishEntry:
    """What publish changed (or, in a dry run, would change) for one release's AMI in one region."""

    image: str
    version: int
    status: str
    region: str
    ami_id: str
    launch: ShareDiff = field(default_factory=ShareDiff)
    snapshots: tuple[tuple[str, ShareDiff], ...] = ()
    parameter: ParameterChange | None = None
    missing: bool = False

    @property
    def changed(self) -> bool:
        return not self.launch.empty or any(not d.empty for _, d in self.snapshots) or self.parameter is not None

    def lines(self) -> list[str]:
        out = [f"{self.image} v{self.version} {self.region} {self.ami_id} ({self.status})"]
        if self.missing:
            out.append("  ! the AMI no longer exists in this region; nothing to share")
        out += [f"  {line}" for line in self.launch.lines()]
        for snapshot_id, diff in self.snapshots:
            out += [f"  {line[0]} snapshot {snapshot_id} {line[2:]}" for line in diff.lines()]
        if self.parameter is not None:
            out.append(f"  {self.parameter.line()}")
        return out

    def as_dict(self) -> dict[str, Any]:
        def share(s: ShareSet) -> dict[str, Any]:
            return {
                "accounts": sorted(s.accounts),
                "organizations": sorted(s.organizations),
                "organizational_units": sorted(s.organizational_units),
                "public": s.public,
            }

        return {
            "image": self.image,
            "version": self.version,
            "status": self.status,
            "region": self.region,
            "ami_id": self.ami_id,
            "missing": self.missing,
            "launch": {"add": share(self.launch.add), "remove": share(self.launch.remove)},
            "snapshots": {
                snapshot_id: {"add": share(d.add), "remove": share(d.remove)} for snapshot_id, d in self.snapshots
            },
            "parameter": None
            if self.parameter is None
            else {"name": self.parameter.name, "previous": self.parameter.previous, "value": self.parameter.value},
        }


@dataclass(frozen=True)
class PublishReport:
    """Every release AMI looked at, and the modify calls made (none in a dry run), per operation."""

    dry_run: bool
    entries: tuple[PublishEntry, ...]
    calls: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def modify_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def changes(self) -> tuple[PublishEntry, ...]:
        return tuple(e for e in self.entries if e.changed or e.missing)

    def lines(self) -> list[str]:
        """The printable diff, then one summary line."""
        out = [line for entry in self.changes for line in entry.lines()]
        out += [f"note: {note}" for note in self.notes]
        changed = sum(1 for e in self.entries if e.changed)
        verb = "would change" if self.dry_run else "changed"
        calls = "no modify calls (dry run)" if self.dry_run else f"{self.modify_calls} modify call(s)"
        out.append(f"publish: {verb} {changed} of {len(self.entries)} AMI-region(s); {calls}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "modify_calls": self.modify_calls,
            "calls": dict(self.calls),
            "entries": [e.as_dict() for e in self.entries],
            "notes": list(self.notes),
        }


class PublishFailed(CloudError):
    """Some regions failed; the others were reconciled. Carries the report of what was done."""

    def __init__(self, failures: Sequence[str], report: PublishReport) -> None:
        super().__init__(
            "publish failed in part:\n  " + "\n  ".join(failures),
            hint="fix the cause and run `stamp publish` again: it only changes what still differs",
        )
        self.failures = list(failures)
        self.report = report


@dataclass(frozen=True)
class _Target:
    image: str
    release: Release
    region: str
    ami_id: str
    launch: ShareSet
    copy: ShareSet
    parameter: str | None


@dataclass
class _Outcome:
    entry: PublishEntry
    calls: Counter[str]


def publish(
    catalog: Catalog,
    cloud: Cloud,
    images: Sequence[str] | None,
    *,
    dry_run: bool,
    workers: int = 8,
) -> PublishReport:
    """Reconcile every release of `images` (all when None), in every region of the release.

    Current, previous and deprecated releases get the catalog's share; revoked ones get none. Per AMI and
    region that is one DescribeImageAttribute and, only when something differs, one ModifyImageAttribute;
    DescribeImages and GetParameters are batched per region. The SSM parameter `/stamp/<image>/current`
    follows the current release and is written only on change.
    """
    names = _select(catalog, images)
    # Policy first, for every image, so a refused share never leaves a half-published catalog behind.
    shares = {name: desired_share(catalog.images[name], allow_public=catalog.defaults.allow_public) for name in names}
    notes: list[str] = []
    targets: dict[str, list[_Target]] = {}
    for name in names:
        releases = catalog.releases.get(name, ())
        if not releases:
            notes.append(f"image '{name}' has no release yet; nothing to publish")
            continue
        for release in releases:
            launchable = release.status in LAUNCHABLE
            for region, ami_id in sorted(release.amis.items()):
                targets.setdefault(region, []).append(
                    _Target(
                        image=name,
                        release=release,
                        region=region,
                        ami_id=ami_id,
                        launch=shares[name] if launchable else ShareSet(),
                        copy=desired_copy_share(catalog.images[name]) if launchable else ShareSet(),
                        parameter=parameter_name(name) if release.status == "current" else None,
                    )
                )

    failures: list[str] = []
    outcomes: list[_Outcome] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="publish") as pool:
        # Phase 1, regions in parallel: which AMIs exist (with tags and snapshots) and the current parameters.
        lookups = {region: pool.submit(_look_up, cloud, region, items) for region, items in targets.items()}
        work: list[tuple[_Target, Future[_Outcome]]] = []
        for region, lookup in sorted(lookups.items()):
            try:
                found, parameters = lookup.result()
            except CloudError as exc:
                failures.append(f"{region}: {exc.message}")
                continue
            for target in targets[region]:
                details = found.get(target.ami_id)
                if details is None:
                    entry = _entry(target, missing=True)
                    outcomes.append(_Outcome(entry, Counter()))
                    if target.release.status == "current":
                        failures.append(
                            f"{target.image} v{target.release.version} in {region}: the current release's AMI "
                            f"{target.ami_id} does not exist"
                        )
                    continue
                current = parameters.get(target.parameter) if target.parameter else None
                work.append((target, pool.submit(_reconcile, cloud, target, details, current, dry_run)))
        # Phase 2: one task per AMI and region, all regions at once.
        for target, future in work:
            try:
                outcomes.append(future.result())
            except CloudError as exc:
                failures.append(f"{target.image} v{target.release.version} in {target.region}: {exc.message}")

    calls: Counter[str] = Counter()
    for outcome in outcomes:
        calls.update(outcome.calls)
    order = {name: index for index, name in enumerate(names)}
    entries = sorted((o.entry for o in outcomes), key=lambda e: (order[e.image], -e.version, e.region))
    report = PublishReport(dry_run=dry_run, entries=tuple(entries), calls=dict(calls), notes=tuple(notes))
    if failures:
        raise PublishFailed(failures, report)
    return report


def _select(catalog: Catalog, images: Sequence[str] | None) -> list[str]:
    if images is None:
        return catalog.topo_order()
    unknown = [name for name in images if name not in catalog.images]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(catalog.images), n=1)
        raise CatalogError(
            f"no image named '{unknown[0]}' in {catalog.path}" + (f" (did you mean '{close[0]}'?)" if close else ""),
            hint="name images defined under `images:`, or leave the names out to publish all of them",
        )
    return catalog.topo_order(images)


def _look_up(
    cloud: Cloud, region: str, targets: Iterable[_Target]
) -> tuple[dict[str, ImageDetails], dict[str, Parameter]]:
    items = list(targets)
    found = cloud.describe_images(region, {t.ami_id for t in items})
    names = {t.parameter for t in items if t.parameter}
    return found, cloud.get_parameters(region, names) if names else {}


def _entry(target: _Target, **changes: Any) -> PublishEntry:
    return PublishEntry(
        image=target.image,
        version=target.release.version,
        status=target.release.status,
        region=target.region,
        ami_id=target.ami_id,
        **changes,
    )


def _reconcile(
    cloud: Cloud, target: _Target, details: ImageDetails, parameter: Parameter | None, dry_run: bool
) -> _Outcome:
    calls: Counter[str] = Counter()
    region, ami_id = target.region, target.ami_id
    launch = plan_share(cloud.get_launch_permissions(region, ami_id), target.launch)
    if not launch.empty and not dry_run:
        cloud.modify_launch_permissions(region, ami_id, launch)
        calls["ModifyImageAttribute"] += 1

    snapshots: list[tuple[str, ShareDiff]] = []
    marked = COPY_SHARED_TAG in details.tags
    if target.copy or marked:
        for snapshot_id in details.snapshot_ids:
            diff = plan_share(cloud.get_snapshot_permissions(region, snapshot_id), target.copy)
            if diff.empty:
                continue
            snapshots.append((snapshot_id, diff))
            if not dry_run:
                cloud.modify_snapshot_permissions(region, snapshot_id, diff)
                # Snapshots take one call per direction (the OperationType form).
                calls["ModifySnapshotAttribute"] += int(bool(diff.add)) + int(bool(diff.remove))
        if not dry_run and target.copy and not marked:
            cloud.create_tags(region, [ami_id], {COPY_SHARED_TAG: "true"})
            calls["CreateTags"] += 1
        elif not dry_run and not target.copy and marked:
            cloud.delete_tags(region, [ami_id], [COPY_SHARED_TAG])
            calls["DeleteTags"] += 1

    change: ParameterChange | None = None
    # The parameter moves only after the AMI is shared, so a consumer that reads it can launch what it names.
    if target.parameter is not None and (parameter is None or parameter.value != ami_id):
        change = ParameterChange(target.parameter, parameter.value if parameter else None, ami_id)
        if not dry_run:
            update = cloud.put_image_parameter(region, target.parameter, ami_id)
            if update.changed:
                calls["PutParameter"] += 1
    entry = _entry(target, launch=launch, snapshots=tuple(snapshots), parameter=change)
    return _Outcome(entry, calls)
