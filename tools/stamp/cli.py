"""The `stamp` command line: argument parsing, output and exit codes; errors become messages only here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stamp import __version__
from stamp.catalog import Catalog, load_catalog
from stamp.errors import CatalogError, CatalogProblems, StampError, UsageError, VerifyError
from stamp.proc import ProcessError

if TYPE_CHECKING:
    from stamp.build import Outcome
    from stamp.clouds import Target

Handler = Callable[[argparse.Namespace], int]


def say(message: str) -> None:
    """Human output goes to stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr)


def emit(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


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
    names = _images(catalog, args.images)
    version = detect_version()
    for name in names:
        out = Path(args.out) / name
        write_render(render_image(catalog, name, packer_version=version), out)
        say(f"rendered {name} → {out}/")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    name = _images(catalog, [args.image])[0]
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
    from stamp.build import build_image, run_in_layers

    catalog = _catalog(args)
    names = _images(catalog, args.images)
    target = _target(args, catalog)
    build_root = Path(args.out)
    outcomes = run_in_layers(
        catalog, names, lambda n: build_image(catalog, n, target, build_root=build_root), parallel=args.parallel
    )
    return _report(outcomes, 3)


def cmd_verify(args: argparse.Namespace) -> int:
    from stamp.build import verify_result
    from stamp.results import read_result

    catalog = _catalog(args)
    name = _images(catalog, [args.image])[0]
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


def cmd_schema(args: argparse.Namespace) -> int:
    from stamp.schema import schema_text

    print(schema_text(), end="")
    return 0


def _images(catalog: Catalog, names: Sequence[str] | None) -> list[str]:
    """The named images in dependency order, or all of them; unknown names are an input error."""
    if not names:
        return catalog.topo_order()
    unknown = [n for n in names if n not in catalog.images]
    if unknown:
        raise CatalogError(
            f"{catalog.path}: no image named {', '.join(repr(n) for n in unknown)}",
            hint="images: " + ", ".join(sorted(catalog.images)),
        )
    return catalog.topo_order(names)


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

    p = add("verify", cmd_verify, "launch fresh instances of the built image and run its testinfra tests")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--ami", help="an AMI of the last build (default: the build region's)")
    p.add_argument("--out", default="build")

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
        return handler(args)
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


if __name__ == "__main__":
    sys.exit(main())
