"""What every command does first: read the catalog it names, and pick the cloud it runs on."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stamp.catalog.load import Catalog, load_catalog
from stamp.output import say

if TYPE_CHECKING:
    from stamp.drivers.layers import Outcome
    from stamp.hosts.base import Target


def catalog_of(args: argparse.Namespace) -> Catalog:
    return load_catalog(Path(args.catalog))


def target_of(args: argparse.Namespace, catalog: Catalog) -> Target:
    from stamp.hosts.target import target_for

    return target_for(args.cloud, catalog)


def report_outcomes(outcomes: Sequence[Outcome], failure_code: int) -> int:
    """One line per image; the exit code of the first failure, or 0."""
    code = 0
    for outcome in outcomes:
        if outcome.result is not None:
            say(f"  {outcome.image:<16} ok      " + " ".join(outcome.result.amis.values()))
        elif outcome.error is not None:
            say(f"  {outcome.image:<16} FAILED  {outcome.error.message.splitlines()[0]}")
            code = code or outcome.error.exit_code
        else:
            say(f"  {outcome.image:<16} skipped {outcome.skipped_because}")
            code = code or failure_code
    return code
