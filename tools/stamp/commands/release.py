"""`stamp release`: build → verify → record → publish per image, parents first; a failure stops its dependants."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from stamp import output
from stamp.catalog.load import load_catalog
from stamp.catalog.results import BuildResult
from stamp.cloud.consumers import publish_parameters
from stamp.cloud.sharing import publish
from stamp.commands.build import build_image, suggest_options
from stamp.commands.common import catalog_of, report_outcomes, target_of
from stamp.commands.plan import plan_for
from stamp.commands.record import ensure_may_record, record_confirmed
from stamp.commands.verify import verify_result
from stamp.drivers.layers import Outcome, run_in_layers
from stamp.errors import (
    CloudError,
    Stopped,
    UsageError,
    VerifyError,
)
from stamp.hosts.base import Target
from stamp.notify import notifier
from stamp.notify.expected import Extra
from stamp.output import say


def release_one(
    catalog_path: Path, name: str, target: Target, *, build_root: Path, reasons: tuple[str, ...] = ()
) -> BuildResult:
    """Build, verify, record and publish one image; if stamp is interrupted, what is left is suggested phase by
    phase (`stamp build NAME --build-id ID && stamp verify NAME && …`, see output.interruptible)."""
    output.resume_with(name, "start", f"stamp release {name}")
    for phase in ("verify", "record", "publish"):
        output.resume_with(name, phase, f"stamp {phase} {name}")
    try:
        verdict = _release_phases(catalog_path, name, target, build_root=build_root, reasons=reasons)
    except Exception as exc:
        if not isinstance(exc, Stopped):  # a failure is fixed, then released again: nothing to resume
            output.forget_resume(name)
        raise
    output.forget_resume(name)
    return verdict


def _release_phases(
    catalog_path: Path, name: str, target: Target, *, build_root: Path, reasons: tuple[str, ...] = ()
) -> BuildResult:
    # Re-read each time: a child builds from the release its parent recorded moments ago.
    catalog = load_catalog(catalog_path)
    result = build_image(catalog, name, target, build_root=build_root)
    output.resume_with(name, "start", None)
    verdict = verify_result(catalog, result, target, build_root=build_root)
    if verdict.verified != "passed":
        raise VerifyError(
            f"image '{name}' failed verification: {', '.join(verdict.failed_tests)}; not recorded, not shared",
            hint=f"JUnit report: {verdict.verify_report}",
        )
    output.resume_with(name, "verify", None)
    (release,) = record_confirmed(catalog_path, [verdict], target, build_root=build_root)
    output.resume_with(name, "record", None)
    catalog = load_catalog(catalog_path)
    report = publish(catalog, target.cloud, [name], dry_run=False)
    for line in report.lines():
        output.say(f"[{name}] publish: {line.removeprefix('publish: ')}")
    consumers = publish_parameters(catalog, target.cloud, [name], dry_run=False)
    for line in consumers.lines():
        output.say(f"[{name}] publish: {line}")
    if notifier.configured(catalog):
        # release.recorded (with the plan's reasons) and release.published; docs/events.md.
        extras = {(name, release.version, "recorded"): Extra(reasons=reasons)}
        notifier.Notifier(catalog, target.cloud).announce([(name, release.version)], published=True, extras=extras)
    if consumers.unreachable:
        raise CloudError(
            f"[{name}] released version {release.version}, but its parameters are not written in"
            f" {len(consumers.unreachable)} consumer account(s) or region(s) (listed above)",
            hint="create the consumer role there (docs/rollout.md, Consumer accounts), then run `stamp publish`",
        )
    output.say(f"[{name}] released version {release.version}")
    return verdict


def release_images(
    catalog_path: Path,
    names: Sequence[str],
    target: Target,
    *,
    build_root: Path,
    parallel: int = 1,
    reasons: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Outcome]:
    catalog = load_catalog(catalog_path)
    ensure_may_record(catalog, target.kind)
    finished: list[str] = []

    def work(name: str) -> BuildResult:
        verdict = release_one(catalog_path, name, target, build_root=build_root, reasons=(reasons or {}).get(name, ()))
        finished.append(name)
        return verdict

    def rest() -> str:
        left = [n for n in names if n not in finished and not output.resuming(n)]
        return f"stamp release {' '.join(left)}" if left else ""

    options = suggest_options(catalog=catalog_path, cloud=target.kind, out=build_root)
    with output.interruptible(rest, options=options):
        return run_in_layers(catalog, names, work, parallel=parallel)


def run(args: argparse.Namespace) -> int:
    # The command line first: a mistake in it is exit 2 whatever the catalog holds. The plan's options mean
    # something only with --changed; given with image names they are refused, not ignored.
    if args.changed and args.images:
        raise UsageError("give image names or --changed, not both")
    if args.changed and args.base is None:
        raise UsageError(
            "--changed needs --base REF: the revision to compare with (e.g. origin/main)",
            hint="stamp release --changed --base origin/main",
        )
    if not args.changed:
        given = [flag for flag, value in (("--base", args.base), ("--head", args.head)) if value is not None]
        given += ["--no-source-check"] if args.no_source_check else []
        if given:
            verb, pronoun = ("is", "it") if len(given) == 1 else ("are", "they")
            instead = f"with image names {pronoun} would be ignored" if args.images else "did you mean --changed?"
            raise UsageError(
                f"{' and '.join(given)} {verb} for --changed only; {instead}",
                hint="stamp release IMAGE…, or stamp release --changed --base REF",
            )
        if not args.images:
            raise UsageError("name the images to release, or use --changed --base REF")
    catalog = catalog_of(args)
    reasons: dict[str, tuple[str, ...]] = {}
    if args.changed:
        plan = plan_for(args, catalog)
        names = plan.order()
        reasons = {p.name: tuple(r.text() for r in p.reasons) for p in plan.images}
        if not names:
            say("nothing to release: no image has a reason to be rebuilt")
            return 0
        say("releasing, in order: " + ", ".join(names))
    else:
        names = catalog.select(args.images)
    outcomes = release_images(
        catalog.path,
        names,
        target_of(args, catalog),
        build_root=Path(args.out),
        parallel=args.parallel,
        reasons=reasons,
    )
    return report_outcomes(outcomes, 3)
