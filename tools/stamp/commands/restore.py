"""`stamp restore`: undo a revocation on purpose: untag the AMIs, make the release launchable again."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stamp.catalog import edit as catalog_edit
from stamp.catalog import releases, store
from stamp.catalog.load import Catalog
from stamp.cloud.protocol import Cloud
from stamp.cloud.publish_report import PublishReport
from stamp.commands import revoke
from stamp.commands.common import catalog_of, target_of
from stamp.errors import (
    CatalogError,
    MissingResource,
    UsageError,
)
from stamp.notify import notifier
from stamp.output import show
from stamp.tags import REVOKED_TAG


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
        release = releases.find_release(catalog, image, version)
        tagged = _tagged(cloud, catalog, image, version)
        if release.status != "revoked" and release.revoke_at is None and not tagged:
            raise CatalogError(
                f"{image} v{version} is not revoked (status {release.status}, no {REVOKED_TAG} tag on its AMIs)",
                hint="nothing to restore",
            )
        status = release.status
        if status == "revoked":
            current = catalog.current_release(image)
            status = "current" if current is None or releases.age(release) > releases.age(current) else "previous"
        chosen.append(status)
        text = catalog_edit.set_status(text, image, version, status, f"restored: {reason}")
        return catalog_edit.set_field(text, image, version, "revoke_at", None)

    catalog = store.edit_catalog(catalog_path, edit, command="stamp restore")
    untagged: list[str] = []
    for region, ami_id in sorted(releases.find_release(catalog, image, version).amis.items()):
        with contextlib.suppress(MissingResource):
            cloud.delete_tags(region, [ami_id], [REVOKED_TAG])
            untagged.append(f"{ami_id} in {region}")
    report = revoke.republish(catalog, cloud, [image], done=f"{image} v{version} is restored in the catalog")
    return RestoreReport(image, version, chosen[0], tuple(untagged), report)


def _tagged(cloud: Cloud, catalog: Catalog, image: str, version: int) -> list[str]:
    tagged: list[str] = []
    for region, ami_id in releases.find_release(catalog, image, version).amis.items():
        details = cloud.describe_images(region, [ami_id]).get(ami_id)
        if details is not None and REVOKED_TAG in details.tags:
            tagged.append(region)
    return tagged


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    cloud = target_of(args, catalog).cloud
    report = restore(catalog.path, cloud, name, args.version, args.reason)
    show(report, args.format)
    if notifier.configured(catalog):
        fresh = store.read_checked(catalog.path)[1]
        notifier.Notifier(fresh, cloud).announce([(name, args.version)], happened=["restored"])
    return 0
