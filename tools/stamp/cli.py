"""The `stamp` command line: argument parsing, output and exit codes; errors become messages only here."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from stamp import __version__
from stamp.catalog import Catalog, load_catalog
from stamp.errors import CatalogError, CatalogProblems, StampError, UsageError, VerifyError
from stamp.proc import ProcessError

if TYPE_CHECKING:
    from stamp.catalog import Image
    from stamp.clouds import Target
    from stamp.layers import Outcome
    from stamp.plan import Plan, SourceLookup

Handler = Callable[[argparse.Namespace], int]


def say(message: str) -> None:
    """Human output goes to stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr)


def emit(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


class Report(Protocol):
    def lines(self) -> list[str]: ...

    def as_dict(self) -> dict[str, Any]: ...


def show(report: Report, output: str) -> None:
    """A command's report: JSON on stdout for machines, or lines on stderr for people."""
    if output == "json":
        emit(report.as_dict())
    else:
        for line in report.lines():
            say(line)


def _catalog(args: argparse.Namespace) -> Catalog:
    return load_catalog(Path(args.catalog))


def cmd_validate(args: argparse.Namespace) -> int:
    from stamp.validate import validate_catalog

    catalog = _catalog(args)
    say(f"catalog: {len(catalog.images)} images, schema and references OK")
    problems = validate_catalog(catalog, work_dir=Path(args.out))
    for problem in problems:
        say(problem)
    if problems:
        say(f"{len(problems)} problem(s)")
        return 1
    say("packer fmt and packer validate: OK for " + ", ".join(catalog.topo_order()))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from stamp.packer import detect_version
    from stamp.render import render_image, write_render

    catalog = _catalog(args)
    names = catalog.select(args.images or None)
    version = detect_version()
    for name in names:
        out = Path(args.out) / name
        write_render(render_image(catalog, name, packer_version=version), out)
        say(f"rendered {name} → {out}/")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    name = catalog.select([args.image])[0]
    releases = catalog.releases.get(name, ())
    if args.version is not None:
        release = next((r for r in releases if r.version == args.version), None)
        if release is None:
            raise CatalogError(f"image '{name}' has no release {args.version}", hint="see `releases:` in the catalog")
        if release.status == "revoked":
            raise CatalogError(f"{name} release {args.version} is revoked: {release.reason or 'no reason given'}")
    else:
        release = catalog.current_release(name)
        if release is None:
            raise CatalogError(f"image '{name}' has no current release", hint=f"run `stamp release {name}`")
    amis = release.amis
    if args.region:
        if args.region not in amis:
            raise CatalogError(
                f"{name} release {release.version} has no AMI in {args.region}",
                hint="regions: " + ", ".join(sorted(amis)),
            )
        amis = {args.region: amis[args.region]}
    if args.format == "json":
        emit({"image": name, "version": release.version, "status": release.status, "amis": amis})
    elif args.region:
        print(amis[args.region])
    else:
        for region, ami_id in amis.items():
            print(f"{region}\t{ami_id}")
    return 0


def _target(args: argparse.Namespace, catalog: Catalog) -> Target:
    from stamp.clouds import target_for

    return target_for(args.cloud, catalog)


def _report(outcomes: Sequence[Outcome], failure_code: int) -> int:
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


def cmd_build(args: argparse.Namespace) -> int:
    from stamp.build import build_image
    from stamp.layers import run_in_layers

    catalog = _catalog(args)
    names = catalog.select(args.images or None)
    if args.build_id and len(names) != 1:
        raise UsageError("--build-id names one build: give exactly one image with it")
    target = _target(args, catalog)
    build_root = Path(args.out)
    outcomes = run_in_layers(
        catalog,
        names,
        lambda n: build_image(catalog, n, target, build_root=build_root, build_id=args.build_id),
        parallel=args.parallel,
    )
    return _report(outcomes, 3)


def cmd_gc(args: argparse.Namespace) -> int:
    from stamp import runfiles
    from stamp.build import utc_now
    from stamp.gc import collect_garbage, parse_age

    catalog = _catalog(args)
    older_than = parse_age(args.older_than) if args.older_than is not None else None
    # A SIGKILLed run's private keys carry no cloud tag: their run directory names its owner, now gone.
    for path in runfiles.stale_run_dirs() if args.dry_run else runfiles.remove_stale_run_dirs():
        say(f"run dir of a process that is gone {'would be removed' if args.dry_run else 'removed'}: {path}")
    target = _target(args, catalog)
    report = collect_garbage(
        catalog,
        target.cloud,
        local_cloud=target.local,
        older_than=older_than,
        now=utc_now(),
        dry_run=args.dry_run,
        keep_verified=parse_age(args.keep_verified, option="--keep-verified"),
    )
    for line in report.lines():
        say(line)
    report.raise_for_failures()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from stamp.results import read_result
    from stamp.verify import verify_result

    catalog = _catalog(args)
    name = catalog.select([args.image])[0]
    build_root = Path(args.out)
    result = read_result(build_root, name)
    if args.ami and args.ami not in result.amis.values():
        raise UsageError(f"--ami {args.ami} is not an AMI of the last build of '{name}'", hint="omit --ami")
    verdict = verify_result(catalog, result, _target(args, catalog), build_root=build_root)
    if verdict.failed_tests:
        for test in verdict.failed_tests:
            say(f"  FAILED {test}")
        raise VerifyError(
            f"image '{name}' failed verification ({len(verdict.failed_tests)} failed); it stays unrecorded and"
            " unshared",
            hint=f"JUnit report: {verdict.verify_report}",
        )
    say(f"{name}: verification passed ({verdict.verify_report})")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from stamp import local
    from stamp.clouds import seeds_for

    root = Path(args.catalog).resolve().parent
    if args.action == "down":
        local.down(root)
        say("local cloud: stopped")
        return 0
    if args.action == "up":
        cloud = local.up(root, seeds_for(_catalog(args)))
    else:
        found = local.status(root)
        if found is None:
            say("local cloud: not running (start it with `stamp local up`)")
            return 0 if args.action == "status" else 5
        cloud = found
    env = local.aws_env(cloud)
    if args.action == "env":
        for key, value in env.items():
            print(f"export {key}={value}")
        return 0
    say(f"local cloud: EC2/SSM API at {cloud.endpoint_url} (moto, pid {cloud.moto_pid})")
    say(f"  engine: {cloud.engine}; base image: {cloud.base_image}; state: {cloud.root}")
    say(f"  instances: {len(local.list_instances(cloud))} running; ssh config: {cloud.ssh_config}")
    say('  use it from a shell with: eval "$(stamp local env)"')
    return 0


def _source_lookup(target: Target) -> SourceLookup:
    """The newest vendor image per image and region, asked of the cloud once each."""
    cache: dict[tuple[str, str], str | None] = {}

    def lookup(image: Image, region: str) -> str | None:
        assert image.source is not None
        key = (image.name, region)
        if key not in cache:
            found = target.cloud.find_newest_image(
                region, name=image.source.filter.name, owners=image.source.filter.owners
            )
            cache[key] = found.ami_id if found else None
        return cache[key]

    return lookup


def _plan(args: argparse.Namespace, catalog: Catalog) -> Plan:
    from stamp.build import utc_now
    from stamp.changes import plan_between

    lookup = None if args.no_source_check else _source_lookup(_target(args, catalog))
    return plan_between(
        catalog.root,
        args.base,
        args.head,
        catalog_path=catalog.path,
        source_lookup=lookup,
        now=utc_now(),
    )


def cmd_plan(args: argparse.Namespace) -> int:
    from stamp import plan as plans

    catalog = _catalog(args)
    found = _plan(args, catalog)
    formatters = {
        "table": plans.format_table,
        "json": plans.format_json,
        "matrix": plans.format_matrix,
        "markdown": plans.format_markdown,
    }
    text = formatters[args.format](found)
    # The table is for people (stderr); the other formats feed workflows and PR comments (stdout).
    (sys.stderr if args.format == "table" else sys.stdout).write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from stamp.release import release_images

    catalog = _catalog(args)
    if args.changed:
        if args.images:
            raise UsageError("give image names or --changed, not both")
        names = _plan(args, catalog).order()
        if not names:
            say("nothing to release: no image has a reason to be rebuilt")
            return 0
        say("releasing, in order: " + ", ".join(names))
    elif args.images:
        names = catalog.select(args.images or None)
    else:
        raise UsageError("name the images to release, or use --changed --base REF")
    outcomes = release_images(
        catalog.path, names, _target(args, catalog), build_root=Path(args.out), parallel=args.parallel
    )
    return _report(outcomes, 3)


def cmd_record(args: argparse.Namespace) -> int:
    from stamp.release import ensure_may_record, record_confirmed
    from stamp.results import read_result

    catalog = _catalog(args)
    names = catalog.select(args.images or [n for n in catalog.images if (Path(args.out) / n).is_dir()])
    results = [read_result(Path(args.out), name) for name in names]
    ensure_may_record(catalog, args.cloud)  # before anything starts: a refusal leaves no local cloud running
    recorded = record_confirmed(catalog.path, results, _target(args, catalog))
    for release, result in zip(recorded, results, strict=True):
        say(f"recorded {result.image} version {release.version}: " + " ".join(release.amis.values()))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from stamp import revocations
    from stamp.build import utc_now
    from stamp.share import publish

    catalog = _catalog(args)
    catalog.select(args.images or None)  # unknown names are refused before the cloud is asked anything
    cloud = _target(args, catalog).cloud
    due = revocations.due(catalog, utc_now())
    if due and args.dry_run:
        for image, version, reason in due:
            say(f"would revoke {image} v{version} (scheduled): {reason}")
    elif due:
        for revoked in revocations.apply_due(catalog.path, cloud, utc_now()):
            for line in revoked.plan.lines():
                say(line)
        say("scheduled revocations applied; commit catalog.yaml to record them")
        catalog = _catalog(args)
    # Publishing every image (no names) also unshares the images removed from the catalog.
    report = publish(catalog, cloud, args.images or None, dry_run=args.dry_run)
    show(report, args.format)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from stamp.build import utc_now
    from stamp.lifecycle import prune

    catalog = _catalog(args)
    names = catalog.select(args.images or None)
    report = prune(catalog.path, _target(args, catalog).cloud, names, now=utc_now(), dry_run=args.dry_run)
    show(report, args.format)
    # Refusals and failures are reported after everything else was done (docs/lifecycle.md).
    report.raise_for_outcome()
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from stamp import lifecycle

    catalog = _catalog(args)
    name = catalog.select([args.image])[0]
    cloud = _target(args, catalog).cloud
    usable = lifecycle.amis_exist(cloud)
    interactive = lifecycle.is_interactive(sys.stdin)

    def planned(with_descendants: bool) -> lifecycle.RevokePlan:
        return lifecycle.plan_revoke(
            catalog, name, args.version, args.reason, with_descendants=with_descendants, usable=usable
        )

    at = _parse_at(args.at) if args.at is not None else None
    plan = planned(args.with_descendants)
    if plan.left_out and interactive and not args.yes:
        for descendant in plan.left_out:
            say(f"{descendant}")
        if lifecycle.ask("Revoke these too?", sys.stdin, sys.stderr):
            plan = planned(True)
    for line in plan.lines():
        say(line)
    if not args.yes:
        if not interactive:
            raise UsageError(
                "stamp revoke stops sharing releases and may move the current release: it asks for confirmation, "
                "and stdin is not a terminal",
                hint="pass --yes to confirm (and --with-descendants to revoke what was built from it)",
            )
        if not lifecycle.ask("Revoke?", sys.stdin, sys.stderr):
            say("nothing revoked")
            return 1
    if at is not None:
        from stamp import revocations
        from stamp.build import utc_now

        revocations.schedule(catalog.path, plan, at, now=utc_now())
        say(f"scheduled: the first `stamp publish` at or after {lifecycle.iso(at)} revokes these; commit catalog.yaml")
        return 0
    report = lifecycle.revoke(catalog.path, cloud, plan, usable=usable)
    show(report, args.format)
    return 0


def _parse_at(text: str) -> datetime:
    from stamp.lifecycle import parse_time

    at = parse_time(text)
    if at is None or "T" not in text:
        raise UsageError(f"--at {text!r} is not a time", hint="write UTC time as 2026-12-01T09:00:00Z")
    return at


def cmd_restore(args: argparse.Namespace) -> int:
    from stamp.revocations import restore

    catalog = _catalog(args)
    name = catalog.select([args.image])[0]
    report = restore(catalog.path, _target(args, catalog).cloud, name, args.version, args.reason)
    show(report, args.format)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from stamp.lifecycle import rollback

    catalog = _catalog(args)
    name = catalog.select([args.image])[0]
    report = rollback(catalog.path, _target(args, catalog).cloud, name)
    show(report, args.format)
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from stamp.launch import launch_instances

    catalog = _catalog(args)
    name = catalog.select([args.image])[0]
    if args.count < 1:
        raise UsageError("--count must be at least 1")
    launched = launch_instances(
        catalog,
        name,
        _target(args, catalog),
        count=args.count,
        region=args.region,
        user_data_file=Path(args.user_data) if args.user_data else None,
    )
    if args.format == "json":
        emit([vars(item) for item in launched])
    else:
        for item in launched:
            say(f"  {item.index:>3}  {item.instance_id}  {item.hostname}  {item.ami_id}  {item.ssh}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stamp.demo import run_demo

    return run_demo(Path(args.catalog).resolve().parent, keep=args.keep)


def cmd_schema(args: argparse.Namespace) -> int:
    from stamp.schema import schema_text

    print(schema_text(), end="")
    return 0


def _plan_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--base", required=required, metavar="REF", help="compare with this revision (e.g. origin/main)")
    p.add_argument("--head", metavar="REF", help="the revision to plan (default: the working tree)")
    p.add_argument(
        "--no-source-check",
        action="store_true",
        help="skip asking the cloud for newer vendor images (no credentials, e.g. a fork's pull request)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--catalog", default="catalog.yaml", help="path to catalog.yaml (default: ./catalog.yaml)")
    common.add_argument(
        "--cloud",
        choices=["aws", "local"],
        default=os.environ.get("STAMP_CLOUD", "aws"),
        help="aws (standard credential chain) or local (the embedded local cloud); env STAMP_CLOUD",
    )
    parser = argparse.ArgumentParser(prog="stamp", description="A GitOps catalog of golden machine images.")
    parser.add_argument("--version", action="version", version=f"stamp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("validate", cmd_validate, "check schema, references, render, packer fmt and packer validate")
    p.add_argument("--out", default="build/.validate", help="scratch folder for rendered templates")

    p = add("render", cmd_render, "write build/<image>/ : Packer HCL plus its generated variables file")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--out", default="build")

    p = add("lookup", cmd_lookup, "print the current AMI ID(s) of an image")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--region")
    p.add_argument("--version", type=int)
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = add("build", cmd_build, "run Packer for images (parents first); writes build/<image>/result.json")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--parallel", type=int, default=1, metavar="N", help="images built at once within a layer")
    p.add_argument("--out", default="build")
    p.add_argument(
        "--build-id",
        metavar="ID",
        help="rerun an interrupted build under its ID: AMIs it registered in every region are adopted, not rebuilt",
    )

    p = add("gc", cmd_gc, "remove what failed builds left (found by their stamp:build-id tag), in every region")
    p.add_argument("--older-than", metavar="AGE", help="only what is older than AGE (30m, 2h, 1d); default: all")
    p.add_argument(
        "--keep-verified",
        metavar="AGE",
        default="14d",
        help="keep AMIs tagged stamp:verified=passed younger than AGE, released or not (default: 14d)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, change nothing")

    p = add("verify", cmd_verify, "launch fresh instances of the built image and run its testinfra tests")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--ami", help="an AMI of the last build (default: the build region's)")
    p.add_argument("--out", default="build")

    p = add("plan", cmd_plan, "which images to build and why, against a base revision")
    _plan_options(p)
    p.add_argument("--format", choices=["table", "json", "matrix", "markdown"], default="table")

    p = add("release", cmd_release, "build → verify → record → publish, parents first")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--changed", action="store_true", help="release what `stamp plan` lists")
    _plan_options(p, required=False)
    p.add_argument("--parallel", type=int, default=1, metavar="N")
    p.add_argument("--out", default="build")

    p = add("record", cmd_record, "move verified build results into releases: in catalog.yaml")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--out", default="build")

    p = add("publish", cmd_publish, "reconcile launch permissions and SSM parameters with the catalog")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = add("prune", cmd_prune, "retention: deprecate old releases, retire them after the grace period")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--dry-run", action="store_true", help="print every action, change nothing")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = add("revoke", cmd_revoke, "mark a release revoked: stop sharing it, move current off it")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("version", metavar="VERSION", type=int)
    p.add_argument("--reason", required=True, help="why it is revoked; kept in catalog.yaml")
    p.add_argument("--with-descendants", action="store_true", help="also revoke releases built from it, recursively")
    p.add_argument("--yes", action="store_true", help="do not ask (required when stdin is not a terminal)")
    p.add_argument(
        "--at",
        metavar="TIME",
        help="schedule it (UTC, 2026-12-01T09:00:00Z): the first `stamp publish` at or after TIME revokes it",
    )
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = add("restore", cmd_restore, "undo a revocation: untag the AMIs, make the release launchable again")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("version", metavar="VERSION", type=int)
    p.add_argument("--reason", required=True, help="why the release is safe again; kept in catalog.yaml")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = add("rollback", cmd_rollback, "make the previous good release current again and republish")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = add("launch", cmd_launch, "stamp out N instances of an image's current release")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--region")
    p.add_argument("--user-data", metavar="FILE", help="Jinja template: index, count, hostname, image, version…")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = add("demo", cmd_demo, "the whole pipeline on the local cloud, in a scratch copy of the repository")
    p.add_argument("--keep", action="store_true", help="keep the scratch workspace for inspection")

    p = add("local", cmd_local, "the embedded local cloud: up, down, status, env")
    p.add_argument("action", choices=["up", "down", "status", "env"])

    add("schema", cmd_schema, "print the catalog's JSON Schema")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    handler: Handler = args.handler
    try:
        with _sigterm_raises():
            return handler(args)
    except Terminated:
        say(f"stamp {args.command}: stopped by SIGTERM (cleanup done); `stamp gc` removes anything a build left")
        return 143
    except StampError as exc:
        # Catalog problems already start with file:line:col, one per line.
        say(str(exc) if isinstance(exc, CatalogProblems) else f"stamp {args.command}: {exc}")
        return exc.exit_code
    except ProcessError as exc:
        say(f"stamp {args.command}: {exc}")
        return 3
    except KeyboardInterrupt:
        say(f"stamp {args.command}: interrupted")
        return 130


class Terminated(BaseException):
    """SIGTERM arrived (a CI cancel, `kill`): raised in the main thread so that every `finally` runs."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn the first SIGTERM into `Terminated`, after telling running builds (and their Packer) to stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        from stamp.stopping import stop_builds

        stop_builds(signum)
        if not fired:  # a second SIGTERM must not interrupt the cleanup the first one started
            fired = True
            raise Terminated

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if fired:
            from stamp.stopping import clear_stop

            clear_stop()


if __name__ == "__main__":
    sys.exit(main())
