"""Revocations that outlive the catalog: `stamp restore`, and revocations scheduled with `stamp revoke --at`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stamp import lifecycle
from stamp import record as record_module
from stamp.catalog import Catalog
from stamp.cloud import REVOKED_TAG, Cloud, MissingResource
from stamp.errors import CatalogError, UsageError
from stamp.share import PublishReport


@dataclass(frozen=True)
class RestoreReport:
    image: str
    version: int
    status: str
    untagged: tuple[str, ...]
    publish: PublishReport

    def lines(self) -> list[str]:
        out = [f"restored {self.image} v{self.version}: status {self.status}"]
        out += [f"  removed {REVOKED_TAG} from {where}" for where in self.untagged]
        return out + self.publish.lines()

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "version": self.version,
            "status": self.status,
            "untagged": list(self.untagged),
            "publish": self.publish.as_dict(),
        }


def restore(catalog_path: Path, cloud: Cloud, image: str, version: int, reason: str) -> RestoreReport:
    """Undoes a revocation: the `stamp:revoked` tags go in every region, and the release becomes `current` if it
    is newer than the current release (or none is current), `previous` otherwise; a scheduled revocation is
    cancelled. The reason is kept in the release's `reason`."""
    reason = reason.strip()
    if not reason:
        raise UsageError("--reason must say why the release is safe again", hint='e.g. --reason "false positive"')
    chosen: list[str] = []

    def edit(text: str, catalog: Catalog) -> str:
        release = lifecycle.find_release(catalog, image, version)
        tagged = _tagged(cloud, catalog, image, version)
        if release.status != "revoked" and release.revoke_at is None and not tagged:
            raise CatalogError(
                f"{image} v{version} is not revoked (status {release.status}, no {REVOKED_TAG} tag on its AMIs)",
                hint="nothing to restore",
            )
        status = release.status
        if status == "revoked":
            current = catalog.current_release(image)
            status = "current" if current is None or lifecycle.age(release) > lifecycle.age(current) else "previous"
        chosen.append(status)
        text = record_module.set_status(text, image, version, status, f"restored: {reason}")
        return record_module.set_field(text, image, version, "revoke_at", None)

    catalog = record_module.edit_catalog(catalog_path, edit, command="stamp restore")
    untagged: list[str] = []
    for region, ami_id in sorted(lifecycle.find_release(catalog, image, version).amis.items()):
        with contextlib.suppress(MissingResource):
            cloud.delete_tags(region, [ami_id], [REVOKED_TAG])
            untagged.append(f"{ami_id} in {region}")
    report = lifecycle.republish(catalog, cloud, [image], done=f"{image} v{version} is restored in the catalog")
    return RestoreReport(image, version, chosen[0], tuple(untagged), report)


def _tagged(cloud: Cloud, catalog: Catalog, image: str, version: int) -> list[str]:
    tagged: list[str] = []
    for region, ami_id in lifecycle.find_release(catalog, image, version).amis.items():
        details = cloud.describe_images(region, [ami_id]).get(ami_id)
        if details is not None and REVOKED_TAG in details.tags:
            tagged.append(region)
    return tagged


def schedule(catalog_path: Path, plan: lifecycle.RevokePlan, at: datetime, *, now: datetime) -> Catalog:
    """Writes `revoke_at` and the reason into each release of the plan; nothing changes in the cloud yet."""
    if at <= now:
        raise UsageError(
            f"--at {lifecycle.iso(at)} is not in the future (now {lifecycle.iso(now)})",
            hint="leave out --at to revoke now",
        )

    def edit(text: str, catalog: Catalog) -> str:
        for revocation in plan.revocations:
            release = lifecycle.find_release(catalog, revocation.image, revocation.version)
            if release.status == "revoked":
                raise CatalogError(f"{revocation.image} v{revocation.version} is revoked already")
            text = record_module.set_field(text, revocation.image, revocation.version, "reason", revocation.reason)
            text = record_module.set_field(text, revocation.image, revocation.version, "revoke_at", lifecycle.iso(at))
        return text

    return record_module.edit_catalog(catalog_path, edit, command="stamp revoke --at")


def due(catalog: Catalog, now: datetime) -> list[tuple[str, int, str]]:
    """(image, version, reason) of every scheduled revocation whose time has come, parents first."""
    found: list[tuple[str, int, str]] = []
    for name in catalog.topo_order(n for n in catalog.releases if n in catalog.images):
        for release in catalog.releases[name]:
            when = lifecycle.parse_time(release.revoke_at) if release.revoke_at else None
            if when is not None and when <= now and release.status != "revoked":
                found.append((name, release.version, release.reason or f"scheduled for {release.revoke_at}"))
    return found


def apply_due(catalog_path: Path, cloud: Cloud, now: datetime) -> list[lifecycle.RevokeReport]:
    """Revokes, one release at a time, what `due` lists; what `publish` runs first."""
    reports: list[lifecycle.RevokeReport] = []
    usable = lifecycle.amis_exist(cloud)
    while True:
        catalog = record_module.read_checked(catalog_path)[1]
        pending = due(catalog, now)
        if not pending:
            return reports
        image, version, reason = pending[0]
        plan = lifecycle.plan_revoke(catalog, image, version, reason, with_descendants=False, usable=usable)
        reports.append(lifecycle.revoke(catalog_path, cloud, plan, usable=usable))
