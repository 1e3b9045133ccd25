"""The consumer accounts' side: the accounts an image is shared with, reached through the role
`defaults.consumers.role` names, and the SSM parameters `stamp publish` keeps there
(docs/rollout.md, Consumer accounts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from stamp.catalog.load import Catalog
from stamp.catalog.releases import channel_heads
from stamp.cloud.protocol import Cloud, ImageUser
from stamp.cloud.publish_policy import channel_parameter_name, parameter_name
from stamp.errors import CloudError

# A consumer account stamp could not reach, and why (the role's assumption failed): never skipped in silence.
Unreachable = str


def shared_with(catalog: Catalog, names: Sequence[str]) -> dict[str, list[str]]:
    """Account -> the images of `names` shared with it by account ID (share.accounts), in catalog order.

    Organisations and OUs cannot be listed without Organizations' own API, and copy_accounts launch their own
    copies: neither is a consumer account here.
    """
    found: dict[str, list[str]] = {}
    for name in names:
        for account in catalog.images[name].share.accounts:
            found.setdefault(account, []).append(name)
    return dict(sorted(found.items()))


def role_arn(catalog: Catalog, account: str) -> str | None:
    consumers = catalog.defaults.consumers
    return consumers.role.replace("{account}", account) if consumers is not None else None


def reach(
    cloud: Cloud, catalog: Catalog, accounts: Sequence[str], *, own: str, workers: int = 8
) -> dict[str, Cloud | Unreachable]:
    """A cloud acting in each account through its consumer role (assumed side by side), or why it cannot;
    `cloud` itself for `own`, its own account."""

    def assume(account: str) -> Cloud | Unreachable:
        if account == own:
            return cloud
        arn = role_arn(catalog, account)
        if arn is None:
            return "no defaults.consumers.role in the catalog"
        try:
            return cloud.assume_role(arn, session_name="stamp")
        except CloudError as exc:
            return f"cannot assume {arn}: {exc.message.splitlines()[0]}"

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(accounts) or 1)), thread_name_prefix="assume") as pool:
        answers = {account: pool.submit(assume, account) for account in accounts}
    return {account: answer.result() for account, answer in answers.items()}


def desired_parameters(catalog: Catalog, image: str) -> dict[str, dict[str, str | None]]:
    """Region -> parameter name -> the AMI it must name there (None: it must not exist), as in the publishing
    account: `/stamp/<image>/current` and one `/stamp/<image>/channel/<name>` per channel."""
    wanted: dict[str, dict[str, str | None]] = {region: {} for region in catalog.images[image].regions}
    current = catalog.current_release(image)
    heads = {channel_parameter_name(image, channel): head for channel, head in channel_heads(catalog, image).items()}
    for region, params in wanted.items():
        params[parameter_name(image)] = current.amis.get(region) if current is not None else None
        for name, head in heads.items():
            params[name] = head.amis.get(region) if head is not None else None
    return wanted


@dataclass
class ConsumerReport:
    """What publish did (or would do) in the consumer accounts."""

    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Account (and region, once reached) -> why its parameters are not as they should be.
    unreachable: dict[str, Unreachable] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"consumer {line}" for line in self.written + self.deleted]
        out += [f"consumer account {where}: {why}" for where, why in self.unreachable.items()]
        return out


def sync_parameters(
    catalog: Catalog,
    names: Sequence[str],
    clouds: Mapping[str, Cloud | Unreachable],
    *,
    dry_run: bool,
    workers: int = 16,
) -> ConsumerReport:
    """Make each consumer account's parameters name what the publishing account's name, for the images shared
    with it: read in one GetParameters per account and region, written only where they differ."""
    report = ConsumerReport()
    shared = shared_with(catalog, names)
    jobs: list[tuple[str, Cloud, str, dict[str, str | None]]] = []
    for account, images in shared.items():
        cloud = clouds.get(account)
        if cloud is None:
            continue
        if isinstance(cloud, str):
            report.unreachable[account] = cloud
            continue
        for region in sorted({r for name in images for r in catalog.images[name].regions}):
            wanted = {k: v for name in images for k, v in desired_parameters(catalog, name).get(region, {}).items()}
            jobs.append((account, cloud, region, wanted))

    def sync(account: str, cloud: Cloud, region: str, wanted: dict[str, str | None]) -> tuple[list[str], list[str]]:
        have = {name: p.value for name, p in cloud.get_parameters(region, list(wanted)).items()}
        written, deleted = [], []
        for name, ami_id in sorted(wanted.items()):
            where = f"{account} {region} {name}"
            if ami_id is None:
                if name in have:
                    deleted.append(f"- parameter {where}")
                    if not dry_run:
                        cloud.delete_parameter(region, name)
            elif have.get(name) != ami_id:
                written.append(f"+ parameter {where} {ami_id}")
                if not dry_run:
                    cloud.put_image_parameter(region, name, ami_id)
        return written, deleted

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs) or 1)), thread_name_prefix="consumer") as pool:
        done = {(account, region): pool.submit(sync, account, cloud, region, wanted)
                for account, cloud, region, wanted in jobs}  # fmt: skip
    for (account, region), future in done.items():
        try:
            written, deleted = future.result()
        except CloudError as exc:
            # One account refusing does not stop the others; publish reports it and exits 5.
            report.unreachable[f"{account} {region}"] = exc.message.splitlines()[0]
            continue
        report.written += written
        report.deleted += deleted
    return report


def publish_parameters(catalog: Catalog, cloud: Cloud, names: Sequence[str], *, dry_run: bool) -> ConsumerReport:
    """`stamp publish`'s part in the consumer accounts; nothing without defaults.consumers."""
    if catalog.defaults.consumers is None:
        return ConsumerReport()
    own = cloud.account_id()
    accounts = [a for a in shared_with(catalog, names) if a != own]
    return sync_parameters(catalog, names, reach(cloud, catalog, accounts, own=own), dry_run=dry_run)


def users_elsewhere(
    catalog: Catalog, cloud: Cloud, amis: Mapping[str, Mapping[str, set[str]]]
) -> tuple[dict[tuple[str, str], list[ImageUser]], dict[tuple[str, str], list[str]]]:
    """Who uses `amis` (image -> region -> AMI IDs) in the consumer accounts their images are shared with, keyed
    by (region, AMI ID); and, for the AMIs of an account that cannot be read, why (prune must not guess)."""
    users: dict[tuple[str, str], list[ImageUser]] = {}
    unknown: dict[tuple[str, str], list[str]] = {}
    if catalog.defaults.consumers is None or not amis:
        return users, unknown
    own = cloud.account_id()
    accounts = {a: images for a, images in shared_with(catalog, list(amis)).items() if a != own}
    clouds = reach(cloud, catalog, list(accounts), own=own)
    for account, images in accounts.items():
        wanted: dict[str, set[str]] = {}
        for image in images:
            for region, ids in amis[image].items():
                wanted.setdefault(region, set()).update(ids)
        there = clouds[account]
        for region, ids in sorted(wanted.items()):
            try:
                if isinstance(there, str):
                    raise CloudError(there)
                found = there.image_users(region, sorted(ids))
            except CloudError as exc:
                why = f"account {account} cannot be read in {region}: {exc.message.splitlines()[0]}"
                for ami_id in ids:
                    unknown.setdefault((region, ami_id), []).append(why)
                continue
            for user in found:
                users.setdefault((region, user.ami_id), []).append(replace(user, account=account))
    return users, unknown
