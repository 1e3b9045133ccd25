"""`stamp release`: build → verify → record → publish per image, parents first; a failure stops its dependants."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from stamp.build import build_image
from stamp.catalog import Catalog, load_catalog
from stamp.clouds import Target
from stamp.custody import confirm_custody
from stamp.errors import PolicyError, VerifyError
from stamp.layers import Outcome, run_in_layers
from stamp.models import Release
from stamp.record import record, release_from_result
from stamp.results import BuildResult
from stamp.share import publish
from stamp.verify import verify_result

# Marks a scratch copy of a repository whose catalog may take local-cloud releases (SPEC §5).
WORKSPACE_MARKER = Path(".stamp") / "local-workspace"


def ensure_may_record(catalog: Catalog, target: Target | str) -> None:
    """Local-cloud AMIs exist only on this machine: they never go into a repository's real catalog.

    `target` may be just the cloud's kind: refusing needs no running cloud.
    """
    kind = target if isinstance(target, str) else target.kind
    if kind == "local" and not (catalog.root / WORKSPACE_MARKER).exists():
        raise PolicyError(
            f"{catalog.path}: local-cloud releases are never recorded in the repository's own catalog",
            hint="run the pipeline in a scratch copy (`stamp demo --keep` leaves one), or mark a copy you made"
            f" with `mkdir -p .stamp && touch {WORKSPACE_MARKER}`",
        )


def record_confirmed(catalog_path: Path, results: Sequence[BuildResult], target: Target) -> list[Release]:
    """`record`, after the cloud confirmed every result not recorded yet (stamp.custody); a refusal writes nothing.

    What the results and the catalog alone can refuse is refused first, without asking the cloud anything.
    """
    catalog = load_catalog(catalog_path)
    recorded = {r.build_id for releases in catalog.releases.values() for r in releases}
    new = [r for r in results if r.build_id not in recorded]
    for result in new:
        release_from_result(result, catalog, now=datetime.now(UTC), cloud=target.kind)
    confirm_custody(target.cloud, new, cloud_kind=target.kind)
    return record(catalog_path, results, cloud=target.kind)


def release_one(catalog_path: Path, name: str, target: Target, *, build_root: Path) -> BuildResult:
    # Re-read each time: a child builds from the release its parent recorded moments ago.
    catalog = load_catalog(catalog_path)
    result = build_image(catalog, name, target, build_root=build_root)
    verdict = verify_result(catalog, result, target, build_root=build_root)
    if verdict.verified != "passed":
        raise VerifyError(
            f"image '{name}' failed verification: {', '.join(verdict.failed_tests)}; not recorded, not shared",
            hint=f"JUnit report: {verdict.verify_report}",
        )
    (release,) = record_confirmed(catalog_path, [verdict], target)
    report = publish(load_catalog(catalog_path), target.cloud, [name], dry_run=False)
    for line in report.lines():
        print(f"[{name}] publish: {line}", file=sys.stderr)
    print(f"[{name}] released version {release.version}", file=sys.stderr)
    return verdict


def release_images(
    catalog_path: Path, names: Sequence[str], target: Target, *, build_root: Path, parallel: int = 1
) -> list[Outcome]:
    catalog = load_catalog(catalog_path)
    ensure_may_record(catalog, target)
    return run_in_layers(
        catalog,
        names,
        lambda name: release_one(catalog_path, name, target, build_root=build_root),
        parallel=parallel,
    )
