"""`stamp rollback`: make the previous good release current again and republish."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stamp.catalog import edit as catalog_edit
from stamp.catalog import store
from stamp.catalog.load import Catalog
from stamp.catalog.models import Release
from stamp.catalog.releases import newest_first
from stamp.cloud.protocol import Cloud
from stamp.cloud.publish_report import PublishReport
from stamp.commands.common import catalog_of, target_of
from stamp.commands.revoke import Usable, always_usable, amis_exist, next_current, republish
from stamp.errors import CatalogError
from stamp.output import show


@dataclass(frozen=True)
class RollbackReport:
    image: str
    previous_current: int | None
    current: int
    publish: PublishReport

    def lines(self) -> list[str]:
        was = f"v{self.previous_current} is previous" if self.previous_current is not None else "none was current"
        return [f"rollback {self.image}: v{self.current} is current; {was}", *self.publish.lines()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "previous_current": self.previous_current,
            "current": self.current,
            "publish": self.publish.as_dict(),
        }


def plan_rollback(catalog: Catalog, image: str, *, usable: Usable = always_usable) -> tuple[Release | None, Release]:
    """(the current release, the one to make current): the newest `previous` release built before it."""
    catalog.select([image])
    current = catalog.current_release(image)
    target = next_current(catalog, image, usable=usable)
    if target is None:
        skipped = [
            f"v{r.version} {r.status}" for r in newest_first(catalog.releases.get(image, ())) if r.status != "current"
        ]
        raise CatalogError(
            f"image '{image}' has no previous good release to roll back to"
            + (f" from v{current.version}" if current else ""),
            hint=(
                "a rollback target is a `previous` release built before the current one whose AMIs all exist"
                + (f" (other releases: {', '.join(skipped)})" if skipped else "")
                + f"; release a fixed build instead (`stamp release {image}`)"
            ),
        )
    return current, target


def rollback(catalog_path: Path, cloud: Cloud, image: str) -> RollbackReport:
    """Makes the previous good release current (the current one becomes `previous`) and republishes."""
    usable = amis_exist(cloud)
    chosen: list[tuple[Release | None, Release]] = []

    def edit(text: str, catalog: Catalog) -> str:
        current, target = plan_rollback(catalog, image, usable=usable)
        chosen.append((current, target))
        return catalog_edit.set_status(text, image, target.version, "current")

    catalog = store.edit_catalog(catalog_path, edit, command="stamp rollback")
    current, target = chosen[0]
    report = republish(catalog, cloud, [image], done=f"{image} v{target.version} is current in the catalog")
    return RollbackReport(image, current.version if current else None, target.version, report)


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    report = rollback(catalog.path, target_of(args, catalog).cloud, name)
    show(report, args.format)
    return 0
