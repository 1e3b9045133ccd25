"""Where a build's result comes from: the commit it names, the uncommitted inputs that make it dirty, and the
vendor AMI Packer really started from."""

from __future__ import annotations

from pathlib import Path

from stamp.catalog.load import Catalog, Image
from stamp.catalog.rebuilds import definition_reasons, images_for_paths
from stamp.drivers import proc
from stamp.drivers.git import catalog_at, changed_paths
from stamp.errors import StampError
from stamp.hosts.base import Target

UNKNOWN_COMMIT = "0000000"


def git_commit(repo: Path) -> str:
    done = proc.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=False, echo=False)
    return done.stdout.strip() if done.returncode == 0 else UNKNOWN_COMMIT


def source_packer_used(target: Target, image: Image, amis: dict[str, str], looked_up: str) -> str:
    """The vendor AMI Packer resolved (its `stamp:source-ami` tag); the filter may have moved since our look-up."""
    region = image.regions[0]
    details = target.cloud.describe_image(region, amis[region])
    used = details.tags.get("stamp:source-ami", "") if details else ""
    return used if used.startswith("ami-") else looked_up


def uncommitted_inputs(catalog: Catalog, image: str) -> list[str]:
    """What `image`'s build uses that differs from HEAD: changed or untracked files it reads, the templates, and
    its resolved definition in the catalog. Changes under `releases:` do not count: records make them."""
    try:
        paths = changed_paths(catalog.root, "HEAD", None)
        committed = catalog_at(catalog.root, "HEAD", catalog.path)
    except StampError as exc:
        # No repository, or one without a commit: nothing ties the build to reviewed code.
        return [f"no commit to compare with ({exc.message})"]
    found = images_for_paths(catalog, paths).get(image, [])
    if committed is None:
        return [*found, f"{catalog.path.name} is not committed"]
    found += [f"{catalog.path.name}: {r.detail}" for r in definition_reasons(committed, catalog, catalog.images[image])]
    return found
