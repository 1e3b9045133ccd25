"""`stamp usage [IMAGE]`: who still launches each release, in this account and in every consumer account the
image is shared with: instances, launch templates (default and latest version) and Auto Scaling groups, per
region (docs/rollout.md, Consumer accounts)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stamp.catalog.load import Catalog
from stamp.cloud.consumers import Unreachable, reach, shared_with
from stamp.cloud.protocol import Cloud, ImageUser
from stamp.commands.common import catalog_of, target_of
from stamp.errors import CloudError
from stamp.output import emit, say

# A release that should not be running any more: its users are counted apart.
STALE = frozenset({"revoked", "deprecated"})


@dataclass(frozen=True)
class Use:
    image: str
    version: int
    status: str
    account: str
    user: ImageUser

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "version": self.version,
            "status": self.status,
            "account": self.account,
            "region": self.user.region,
            "kind": self.user.kind,
            "resource_id": self.user.resource_id,
            "ami_id": self.user.ami_id,
            "detail": self.user.detail,
        }


@dataclass
class UsageReport:
    uses: list[Use] = field(default_factory=list)
    # "ACCOUNT" or "ACCOUNT REGION" -> why it could not be read: the answer is incomplete there.
    unread: dict[str, str] = field(default_factory=dict)

    @property
    def stale(self) -> list[Use]:
        return [u for u in self.uses if u.status in STALE]

    def as_dict(self) -> dict[str, Any]:
        return {
            "uses": [u.as_dict() for u in self.uses],
            "stale": len(self.stale),
            "unread": [{"where": where, "why": why} for where, why in self.unread.items()],
        }


def places(catalog: Catalog, names: Sequence[str], own: str) -> dict[str, list[str]]:
    """Account -> images to look for there: every image in the publishing account, the images shared with it in
    a consumer account (only with defaults.consumers: without a role there is no way in, and no error)."""
    found = {own: list(names)}
    if catalog.defaults.consumers is None:
        return found
    for account, images in shared_with(catalog, names).items():
        if account != own:
            found[account] = images
    return found


def collect(
    catalog: Catalog,
    names: Sequence[str],
    clouds: Mapping[str, Cloud | Unreachable],
    looked_for: Mapping[str, Sequence[str]],
    *,
    workers: int = 32,
) -> UsageReport:
    """One `image_users` per account and region, for every AMI of the images looked for there, side by side."""
    report = UsageReport()
    owner: dict[str, tuple[str, int, str]] = {}
    jobs: list[tuple[str, Cloud, str, list[str]]] = []
    for name in names:
        for release in catalog.releases.get(name, ()):
            for ami_id in release.amis.values():
                owner[ami_id] = (name, release.version, release.status)
    for account, images in looked_for.items():
        cloud = clouds[account]
        if isinstance(cloud, str):
            report.unread[account] = cloud
            continue
        by_region: dict[str, set[str]] = {}
        for name in images:
            for release in catalog.releases.get(name, ()):
                for region, ami_id in release.amis.items():
                    by_region.setdefault(region, set()).add(ami_id)
        jobs += [(account, cloud, region, sorted(amis)) for region, amis in sorted(by_region.items())]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs) or 1)), thread_name_prefix="usage") as pool:
        answers = {(a, r): pool.submit(c.image_users, r, amis) for a, c, r, amis in jobs}
    for (account, region), answer in answers.items():
        try:
            users = answer.result()
        except CloudError as exc:
            report.unread[f"{account} {region}"] = exc.message.splitlines()[0]
            continue
        for user in users:
            image, version, status = owner[user.ami_id]
            report.uses.append(Use(image, version, status, account, user))
    report.uses.sort(key=lambda u: (u.image, -u.version, u.account, u.user.region, u.user.kind, u.user.resource_id))
    return report


def usage(catalog: Catalog, cloud: Cloud, names: Sequence[str]) -> UsageReport:
    own = cloud.account_id()
    looked_for = places(catalog, names, own)
    clouds = reach(cloud, catalog, list(looked_for), own=own)
    return collect(catalog, names, clouds, looked_for)


def table(report: UsageReport) -> str:
    rows = [("IMAGE", "VERSION", "STATUS", "ACCOUNT", "REGION", "USED BY")]
    for use in report.uses:
        user = use.user
        what = f"{user.kind} {user.resource_id}" + (f" ({user.detail})" if user.detail else "")
        rows.append((use.image, str(use.version), use.status, use.account, user.region, what))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5] for row in rows]
    releases = {(u.image, u.version) for u in report.uses}
    lines.append(
        f"{len(report.uses)} user(s) of {len(releases)} release(s); {len(report.stale)} on a revoked or deprecated"
        " release"
    )
    lines += [f"not read: {where}: {why}" for where, why in report.unread.items()]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    names = catalog.select([args.image] if args.image else None)
    report = usage(catalog, target_of(args, catalog).cloud, names)
    if args.format == "json":
        emit(report.as_dict())
    else:
        say(table(report).rstrip("\n"))
        if catalog.defaults.consumers is None:
            say("consumer accounts not looked at: the catalog has no defaults.consumers (docs/rollout.md)")
    if report.unread:
        raise CloudError(
            f"usage is incomplete: {len(report.unread)} account(s) or region(s) could not be read",
            hint="give the consumer role (docs/rollout.md, Consumer accounts) to every account images are shared with",
        )
    return 0
