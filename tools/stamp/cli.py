"""The `stamp` command line: argument parsing, dispatch to `stamp.commands.<verb>.run`, exit codes; errors become
messages only here."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from stamp import __version__, clock
from stamp.errors import CatalogProblems, ProcessError, StampError, Terminated, UsageError
from stamp.output import say, set_verbose


def _plan_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--base", required=required, metavar="REF", help="compare with this revision (e.g. origin/main)")
    p.add_argument("--head", metavar="REF", help="the revision to plan (default: the working tree)")
    p.add_argument(
        "--no-source-check",
        action="store_true",
        help="skip asking the cloud for newer vendor images (no credentials, e.g. a fork's pull request)",
    )
    p.add_argument(
        "--no-update-check",
        action="store_true",
        help="skip reading the apt indexes for pending package updates of the current releases",
    )


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text for people (default, on stderr) or json on stdout",
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
    verbose_help = "also show what tools print (Packer, apt, pytest, the container engine) and the commands run"
    # Before or after the command: `stamp -v build web` and `stamp build web -v` alike.
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    parser = argparse.ArgumentParser(prog="stamp", description="A GitOps catalog of golden machine images.")
    parser.add_argument("--version", action="version", version=f"stamp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of these; `stamp COMMAND --help` for its options"
    )

    def add(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help_text,
            description=help_text,
            epilog=f"example: {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add(
        "validate",
        "check schema, references, render, packer fmt and packer validate, and that each image's tests compile and"
        " pytest collects them",
        "stamp validate",
    )
    p.add_argument("--out", default="build/.validate", help="scratch folder for rendered templates")

    p = add(
        "render", "write build/<image>/ : Packer HCL plus its generated variables file", "stamp render web --out build"
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to render (default: every image)")
    p.add_argument("--out", default="build", help="folder to write <out>/<image>/ into (default: build)")

    p = add("lookup", "print the current AMI ID(s) of an image", "stamp lookup web --region eu-west-1")
    p.add_argument("image", metavar="IMAGE", help="the image to look up")
    p.add_argument("--region", help="print only the AMI ID in this region (default: every region, one per line)")
    p.add_argument("--version", type=int, help="this release instead of the current one (a revoked one is refused)")
    p.add_argument(
        "--channel",
        metavar="NAME",
        help="the release this rollout channel points at instead of the current one (docs/rollout.md)",
    )
    p.add_argument("--format", choices=["text", "json"], default="text", help="text (default) or json on stdout")

    p = add(
        "usage",
        "who launches each release: instances, launch templates, Auto Scaling groups, here and in consumer accounts",
        "stamp usage web --format json",
    )
    p.add_argument("image", metavar="IMAGE", nargs="?", help="this image only (default: every image)")
    _format_option(p)

    p = add(
        "build",
        "run Packer for images (parents first); writes build/<image>/result.json",
        "stamp build web --parallel 2",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="images to build; a parent is built before its children")
    p.add_argument(
        "--parallel", type=int, default=1, metavar="N", help="images built at once within a layer (default: 1)"
    )
    p.add_argument("--out", default="build", help="where build results go: <out>/<image>/result.json (default: build)")
    p.add_argument(
        "--build-id",
        metavar="ID",
        help="rerun an interrupted build under its ID: AMIs it registered in every region are adopted, not rebuilt",
    )
    p.add_argument(
        "--on-error",
        choices=["cleanup", "keep"],
        default="cleanup",
        help="when a build fails: cleanup (default) removes its machine; keep leaves it running to debug and prints"
        " how to open a shell on it (`stamp gc` removes it later)",
    )

    p = add(
        "gc",
        "remove what failed builds left (found by their stamp:build-id tag), in every region",
        "stamp gc --older-than 2h --dry-run",
    )
    p.add_argument("--older-than", metavar="AGE", help="only what is older than AGE (30m, 2h, 1d); default: all")
    p.add_argument(
        "--keep-verified",
        metavar="AGE",
        default="14d",
        help="keep AMIs tagged stamp:verified=passed younger than AGE, released or not (default: 14d)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, change nothing")

    p = add("verify", "launch fresh instances of the built image and run its testinfra tests", "stamp verify web")
    p.add_argument("image", metavar="IMAGE", help="the image whose last build (<out>/<image>/result.json) is verified")
    p.add_argument("--out", default="build", help="where build results go: <out>/<image>/result.json (default: build)")

    p = add(
        "notes",
        "release notes: packages added, removed, upgraded and downgraded against the previous release, the kernel"
        " change and the CVEs fixed, from the package inventories verification kept",
        "stamp notes base",
    )
    p.add_argument("image", metavar="IMAGE", help="the image whose release is described")
    p.add_argument("version", metavar="VERSION", type=int, nargs="?", help="the release (default: the current one)")
    p.add_argument(
        "--format", choices=["markdown", "json"], default="markdown", help="markdown (default) or json, on stdout"
    )
    p.add_argument(
        "--out",
        default="build",
        help="where verification kept the inventories: <out>/<image>/inventory/<build_id>.json (default: build)",
    )

    p = add(
        "site",
        "write the catalog as a static web site: index.html, a page per image, index.json and feed.atom",
        "stamp site --out site --build build",
    )
    p.add_argument("--out", default="site", help="the folder to write; replaced as a whole (default: site)")
    p.add_argument(
        "--build",
        default="build",
        help="where verification kept the inventories the release notes are made from (default: build)",
    )
    p.add_argument(
        "--plan",
        metavar="FILE",
        help="a saved `stamp plan --format json` to show pending security updates from (default: BUILD/plan.json)",
    )
    p.add_argument("--no-dot", action="store_true", help="draw the lineage without Graphviz's dot")

    p = add(
        "plan",
        "which images to build and why, against a base revision",
        "stamp plan --base origin/main --format markdown",
    )
    _plan_options(p)
    p.add_argument(
        "--out",
        default="build",
        help="where verification kept the inventories the update check reads (default: build)",
    )
    p.add_argument(
        "--format",
        choices=["table", "json", "matrix", "markdown"],
        default="table",
        help="table for people (default, on stderr); json, matrix (a CI job matrix) or markdown on stdout",
    )

    p = add(
        "release",
        "build → verify → record → publish, parents first",
        "stamp release --changed --base origin/main --parallel 2",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to release (or --changed, not both)")
    p.add_argument("--changed", action="store_true", help="release what `stamp plan` lists; needs --base")
    _plan_options(p, required=False)
    p.add_argument(
        "--parallel", type=int, default=1, metavar="N", help="images released at once within a layer (default: 1)"
    )
    p.add_argument("--out", default="build", help="where build results go: <out>/<image>/result.json (default: build)")

    p = add("record", "move verified build results into releases: in catalog.yaml", "stamp record web app")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to record (default: every image built in --out)")
    p.add_argument("--out", default="build", help="where build results go: <out>/<image>/result.json (default: build)")
    p.add_argument(
        "--catalog-only",
        action="store_true",
        help="only check the AMIs and edit catalog.yaml: no artifacts stored in S3, no notes, no release events"
        " (build-layer.yml's record of the layers before it)",
    )

    p = add("publish", "reconcile launch permissions and SSM parameters with the catalog", "stamp publish --dry-run")
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="images to publish (default: every image, and unshare images removed from the catalog)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    _format_option(p)

    p = add(
        "prune", "retention: deprecate old releases, retire them after the grace period", "stamp prune web --dry-run"
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to prune (default: every image)")
    p.add_argument("--dry-run", action="store_true", help="print every action, change nothing")
    _format_option(p)

    p = add(
        "revoke",
        "mark a release revoked: stop sharing it, move current off it",
        'stamp revoke web 7 --reason "CVE-2026-0001 in nginx" --with-descendants --yes',
    )
    p.add_argument("image", metavar="IMAGE", help="the image whose release is revoked")
    p.add_argument("version", metavar="VERSION", type=int, help="the release's version (see `releases:`)")
    p.add_argument("--reason", required=True, help="why it is revoked; kept in catalog.yaml")
    p.add_argument("--with-descendants", action="store_true", help="also revoke releases built from it, recursively")
    p.add_argument("--yes", action="store_true", help="do not ask (required when stdin is not a terminal)")
    p.add_argument(
        "--at",
        metavar="TIME",
        help="schedule it (UTC, 2026-12-01T09:00:00Z): the first `stamp publish` at or after TIME revokes it",
    )
    _format_option(p)

    p = add(
        "restore",
        "undo a revocation: untag the AMIs, make the release launchable again",
        'stamp restore web 7 --reason "the CVE does not affect this build"',
    )
    p.add_argument("image", metavar="IMAGE", help="the image whose revoked release is restored")
    p.add_argument("version", metavar="VERSION", type=int, help="the revoked release's version")
    p.add_argument("--reason", required=True, help="why the release is safe again; kept in catalog.yaml")
    _format_option(p)

    p = add(
        "promote",
        "move a release into a later rollout channel once it has soaked: a catalog edit for a pull request",
        "stamp promote web --to stable",
    )
    p.add_argument("image", metavar="IMAGE", nargs="?", help="the image to promote (with --due: only this image)")
    p.add_argument("--to", metavar="CHANNEL", help="the channel the release enters (see channels: in catalog.yaml)")
    p.add_argument(
        "--version",
        type=int,
        help="this release (default: the one the channel's `after` channel points at)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="promote before the soak time is over (needs --reason); status and ancestry are still checked",
    )
    p.add_argument("--reason", help="why --force is needed; kept under the release's forced: in catalog.yaml")
    p.add_argument("--due", action="store_true", help="list every promotion whose soak time has passed, parents first")
    p.add_argument("--apply", action="store_true", help="with --due: make those promotions in catalog.yaml")
    _format_option(p)

    p = add("rollback", "make the previous good release current again and republish", "stamp rollback web")
    p.add_argument("image", metavar="IMAGE", help="the image to roll back")
    _format_option(p)

    p = add(
        "launch",
        "stamp out N instances of an image's current release",
        "stamp launch web --count 3 --user-data user-data.j2",
    )
    p.add_argument("image", metavar="IMAGE", help="the image whose current release is launched")
    p.add_argument("--count", type=int, default=1, help="how many instances (default: 1)")
    p.add_argument("--region", help="where to launch (default: the image's first region)")
    p.add_argument("--user-data", metavar="FILE", help="Jinja template: index, count, hostname, image, version…")
    _format_option(p)

    p = add("demo", "the whole pipeline on the local cloud, in a scratch copy of the repository", "stamp demo --keep")
    p.add_argument("--keep", action="store_true", help="keep the scratch workspace for inspection")

    p = add(
        "workspace",
        "make a scratch workspace: a copy of this repository with its own git history, marked so that local-cloud"
        " releases may be recorded in it",
        "stamp workspace ../stamp-scratch",
    )
    p.add_argument("dir", metavar="DIR", help="the folder to make it in: a new one, or an empty one")

    p = add("local", "the embedded local cloud: up, down, status, env", "stamp local up")
    p.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help='up (start it), down (stop it), status, env (shell exports to use it: eval "$(stamp local env)")',
    )

    p = add(
        "iam",
        "print the IAM roles' policies from iam/*.json (docs/adopting.md, section 2), one at a time or as a"
        " CloudFormation template that makes the roles",
        "stamp iam cloudformation --account 111122223333 --repository example-org/images > roles.json",
    )
    p.add_argument(
        "action",
        choices=["policy", "cloudformation"],
        help="policy (one role's permission policy, or with --trust its trust policy) or cloudformation (a template)",
    )
    p.add_argument(
        "--role",
        action="append",
        choices=["plan", "build", "publish", "consumer"],
        help="the role; policy takes one, cloudformation any number (default: plan, build and publish; consumer is"
        " made in each consumer account)",
    )
    p.add_argument("--trust", action="store_true", help="with policy: the trust policy instead of the permissions")
    p.add_argument("--account", metavar="ID", help="the account the roles are made in, for ${Account}")
    p.add_argument("--repository", metavar="OWNER/NAME", help="the GitHub repository whose workflows assume the roles")

    add("schema", "print the catalog's JSON Schema", "stamp schema > catalog.schema.json")
    return parser


def _check_clock() -> None:
    """A STAMP_NOW that is not a time is a usage error before anything runs, not a crash halfway."""
    try:
        clock.utc_now()
    except ValueError as exc:
        raise UsageError(str(exc), hint="unset it, or give a UTC time") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    # Reset on the way out: tests call main() many times in one process.
    was_verbose = set_verbose(bool(getattr(args, "verbose", False)))
    try:
        with _sigterm_raises():
            _check_clock()
            # Imported on use: `stamp lookup` need not load boto3, Packer's driver or the local cloud.
            command = importlib.import_module(f"stamp.commands.{args.command}")
            code: int = command.run(args)
            return code
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
    except Exception:  # the last resort: a bug in stamp, never a bare traceback (pre-commit's error_handler does so)
        log = _write_crash_log(args.command)
        say(f"stamp {args.command}: unexpected error (a bug in stamp); the traceback is in {log}")
        return BUG_EXIT_CODE
    finally:
        set_verbose(was_verbose)


# EX_SOFTWARE from BSD's sysexits.h: an internal error. Listed with the other codes in the README.
BUG_EXIT_CODE = 70


def _write_crash_log(command: str) -> Path:
    """The current exception's traceback, in .stamp/logs/ under the working folder (else the temporary folder)."""
    text = f"stamp {__version__} {command} at {clock.iso(clock.utc_now())}\n{traceback.format_exc()}"
    for folder in (Path(".stamp") / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=folder, prefix="stamp-crash-", suffix=".log", delete=False, encoding="utf-8"
            ) as handle:
                handle.write(text)
            return Path(handle.name).resolve()
        except OSError:
            continue
    return Path("(no writable folder for the log)")


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn the first SIGTERM into `Terminated`, after telling running builds (and their Packer) to stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        from stamp.drivers.stopping import stop_builds

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
            from stamp.drivers.stopping import clear_stop

            clear_stop()


if __name__ == "__main__":
    sys.exit(main())
