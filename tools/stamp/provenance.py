"""Whether a build's inputs are the commit it names: one built from uncommitted changes is dirty (docs/custody.md)."""

from __future__ import annotations

from stamp.catalog import Catalog
from stamp.changes import catalog_at, changed_paths
from stamp.errors import StampError
from stamp.plan import definition_reasons, images_for_paths


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
