"""`stamp build`: render, run Packer against AWS or the local cloud, and leave `build/<image>/result.json`."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import time
from datetime import datetime
from pathlib import Path

from stamp import clock, output
from stamp.catalog.load import Catalog, Image
from stamp.catalog.models import ReleaseSource
from stamp.catalog.results import BuildResult, result_path, write_result
from stamp.commands import gc
from stamp.commands.build_leftovers import adopt, with_kept_machine, with_leftovers
from stamp.commands.build_provenance import git_commit, source_packer_used, uncommitted_inputs
from stamp.commands.build_resources import clean_up, create_security_group, import_key_pair
from stamp.commands.common import catalog_of, report_outcomes, target_of
from stamp.drivers import packer
from stamp.drivers.buildlock import build_lock
from stamp.drivers.hcl import MANIFEST_FILE, render_image, write_render
from stamp.drivers.stopping import check_stop, is_stopping
from stamp.errors import BuildError, CatalogError, Stopped, UsageError
from stamp.hosts.base import BuildMachine, Target
from stamp.output import say

# Under build/<image>/: Packer's output (packer.log) and every command stamp ran for the build (build.log).
LOGS = "logs"


def new_build_id(image: str, now: datetime) -> str:
    """Unique per build; also the AMI name suffix, so two builds in one second never collide.

    A name from a one-second timestamp alone would collide (docs/facts.md, Packer 1.6.6).
    """
    return f"{image}-{now.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"


def check_build_id(catalog: Catalog, image: str, build_id: str) -> None:
    """A reused `--build-id` must be one stamp made for this image, and not one a release already records."""
    if not re.fullmatch(rf"{re.escape(image)}-\d{{14}}-[0-9a-f]+", build_id) or gc.build_id_time(build_id) is None:
        raise UsageError(
            f"--build-id {build_id!r} is not a build ID of image '{image}'",
            hint=f"build IDs look like {new_build_id(image, clock.utc_now())}; reuse the one the interrupted build"
            " printed",
        )
    for release in catalog.releases.get(image, ()):
        if release.build_id == build_id:
            raise UsageError(
                f"build {build_id} is release {release.version} of '{image}' already",
                hint="a recorded build is never built again: leave out --build-id to make a new one",
            )


def resolve_source(catalog: Catalog, image: Image, target: Target) -> tuple[str, ReleaseSource]:
    """The AMI the build starts from in its build region, and the provenance recorded with the release."""
    region = image.regions[0]
    if image.parent is not None:
        release = catalog.current_release(image.parent)
        if release is None or region not in release.amis:
            raise CatalogError(
                f"image '{image.name}': parent '{image.parent}' has no current release in {region}",
                hint=f"release the parent first: stamp release {image.parent}",
            )
        return release.amis[region], ReleaseSource(image=image.parent, version=release.version)
    assert image.source is not None
    found = target.cloud.find_newest_image(region, name=image.source.filter.name, owners=image.source.filter.owners)
    if found is None:
        raise CatalogError(
            f"image '{image.name}': no vendor image named like '{image.source.filter.name}' owned by "
            f"{', '.join(image.source.filter.owners)} in {region}",
            hint=f"check images.{image.name}.source.filter, and that the account can see the image",
        )
    return found.ami_id, ReleaseSource(amis={region: found.ami_id})


def build_image(
    catalog: Catalog,
    name: str,
    target: Target,
    *,
    build_root: Path,
    build_id: str | None = None,
    on_error: str = "cleanup",
) -> BuildResult:
    """Build one image, holding its build lock: a second build of it in this workspace is refused (exit 6).

    The commands it runs are logged in build/<image>/logs/build.log, Packer's output in packer.log next to it.
    """
    with build_lock(build_root, name), output.logging_to(build_root / name / LOGS / "build.log"):
        try:
            result = _build_image(catalog, name, target, build_root=build_root, build_id=build_id, on_error=on_error)
        except Exception as exc:
            if not isinstance(exc, Stopped):  # a failed build is not resumed; a stopped one is (Stopped's hint)
                output.resume_with(name, "build", None)
            raise
        output.resume_with(name, "build", None)
        return result


def _build_image(
    catalog: Catalog,
    name: str,
    target: Target,
    *,
    build_root: Path,
    build_id: str | None = None,
    on_error: str = "cleanup",
) -> BuildResult:
    """Build one image; the build container (local cloud) and the build's key pair are removed whatever happens.

    With `build_id` (a rerun of an interrupted build), AMIs that build registered in every region the image
    needs are adopted instead of built again; whatever else it left is removed first.
    """
    image = catalog.images[name]
    started = clock.utc_now()
    # result.json says "this build succeeded": one from an earlier build must not outlive a failing one.
    result_path(build_root, name).unlink(missing_ok=True)
    if build_id is None:
        build_id = new_build_id(name, started)
    else:
        check_build_id(catalog, name, build_id)
        adopted = adopt(catalog, image, target, build_id, build_root=build_root)
        if adopted is not None:
            return adopted
    output.log_line(f"# stamp build {name}: build {build_id}, started {clock.iso(started)}")
    # Ctrl-C or SIGTERM from here on: a rerun under this ID adopts the AMIs the build got to register.
    output.resume_with(name, "build", f"stamp build {name} --build-id {build_id}")
    check_stop(name, build_id)
    # Read before Packer starts: the commit the result names must be what Packer uploads.
    uncommitted = uncommitted_inputs(catalog, name)
    if uncommitted:
        say(f"[{name}] building from uncommitted changes, so the result is marked dirty: " + "; ".join(uncommitted[:5]))
    source_ami, source = resolve_source(catalog, image, target)
    out = build_root / name
    packer_version = packer.detect_version()
    write_render(render_image(catalog, name, packer_version=packer_version), out)
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    packer.init(out, env=target.packer_env)
    variables = {"repo_root": str(catalog.root), "build_id": build_id}
    timings: dict[str, float] = {}
    say(f"[{name}] build {build_id} from {source_ami} in {image.regions[0]} ({target.kind})")
    machine: BuildMachine | None = None
    key_name: str | None = None
    private_key: Path | None = None
    group_id: str | None = None
    kept = False
    try:
        key_name, private_key = import_key_pair(target, image, build_id)
        public_key = private_key.with_suffix(".pub").read_text(encoding="utf-8")
        with output.step(name, "start the build machine") as step:
            machine = target.start_build(image, build_id, source_ami=source_ami, public_key=public_key)
            step.silent = machine.machine_id is None  # Packer starts it (EC2): nothing happened here
        if machine.machine_id is not None:
            timings["start_instance"] = machine.seconds
        variables |= machine.variables
        check_stop(name, build_id)
        group_id = create_security_group(target, image, build_id)
        variables |= {
            "ssh_keypair_name": key_name,
            "ssh_private_key_file": str(private_key),
            "security_group_id": group_id,
        }
        tick = time.monotonic()
        log = out / LOGS / "packer.log"
        log.unlink(missing_ok=True)
        try:
            if on_error == "keep":
                packer.build(out, env=target.packer_env, vars=variables, log=log, image=name, on_error="abort")
            else:  # the plain call, which stand-ins for packer.build in tests take
                packer.build(out, env=target.packer_env, vars=variables, log=log, image=name)
        except BuildError as exc:
            if on_error == "keep" and not is_stopping():
                kept = True
                raise with_kept_machine(exc, catalog, target, image, build_id, machine, private_key) from None
            if not (is_stopping() and _finished_all(out / MANIFEST_FILE, build_id, image)):
                raise with_leftovers(exc, target, image, build_id, (key_name, group_id)) from None
            # Stopped as Packer was exiting: the signal ended it after its manifest named an AMI in every
            # region, so they are finished. They are committed below, for a rerun to adopt.
        timings["packer"] = round(time.monotonic() - tick, 2)
        amis = packer.read_manifest(out / MANIFEST_FILE, build_id=build_id)
        if set(amis) != set(image.regions):
            problem = BuildError(
                f"[{name}] Packer made AMIs in {', '.join(sorted(amis)) or 'no region'}, the catalog asks for "
                f"{', '.join(image.regions)}"
            )
            raise with_leftovers(problem, target, image, build_id, (key_name, group_id))
        if image.parent is None:
            source = ReleaseSource(amis={image.regions[0]: source_packer_used(target, image, amis, source_ami)})
        if machine.machine_id is not None:
            timings["commit"] = target.finish_build(machine, amis)
        if is_stopping():
            # The AMIs exist and are tagged (and committed locally): a rerun with this build ID adopts them.
            stopped = Stopped(f"[{name}] build {build_id} stopped after Packer registered its AMIs")
            raise with_leftovers(stopped, target, image, build_id, (key_name, group_id))
    finally:
        clean_up(target, image, build_id, machine, key_name, private_key, group_id, kept=kept)
    result = BuildResult(
        image=name,
        build_id=build_id,
        cloud=target.kind,
        amis=amis,
        source=source,
        commit=git_commit(catalog.root),
        started_at=clock.iso(started),
        finished_at=clock.iso(clock.utc_now()),
        packer_version=".".join(map(str, packer_version)),
        timings=timings,
        dirty=bool(uncommitted),
        dirty_inputs=uncommitted,
    )
    write_result(build_root, result)
    say(f"[{name}] built: " + ", ".join(f"{r} {a}" for r, a in amis.items()))
    return result


def _finished_all(manifest: Path, build_id: str, image: Image) -> bool:
    """Whether Packer's manifest for this build names an AMI in every region the image needs."""
    try:
        return set(packer.read_manifest(manifest, build_id=build_id)) == set(image.regions)
    except BuildError:
        return False


def run(args: argparse.Namespace) -> int:
    from stamp.drivers.layers import run_in_layers

    catalog = catalog_of(args)
    names = catalog.select(args.images or None)
    if args.build_id and len(names) != 1:
        raise UsageError("--build-id names one build: give exactly one image with it")
    target = target_of(args, catalog)
    # A restarted local cloud has lost every AMI built in it: say so before a child build fails on its parent.
    for line in target.lost_parent_warnings(catalog, names):
        say(line)
    build_root = Path(args.out)
    finished: list[str] = []

    on_error = getattr(args, "on_error", "cleanup")

    def work(name: str) -> BuildResult:
        result = build_image(catalog, name, target, build_root=build_root, build_id=args.build_id, on_error=on_error)
        finished.append(name)
        return result

    def rest() -> str:
        # Those whose build got a build ID are resumed under it (output.resume_with); these never started.
        left = [n for n in names if n not in finished and not output.resuming(n)]
        return f"stamp build {' '.join(left)}" if left else ""

    with output.interruptible(rest, options=rerun_options(args)):
        outcomes = run_in_layers(catalog, names, work, parallel=args.parallel)
    return report_outcomes(outcomes, 3)


def rerun_options(args: argparse.Namespace) -> str:
    """The options a suggested command needs to work where this one did: the catalog, the cloud, --out."""
    return suggest_options(
        catalog=getattr(args, "catalog", "catalog.yaml"),
        cloud=getattr(args, "cloud", ""),
        out=getattr(args, "out", "build"),
    )


def suggest_options(*, catalog: str | Path, cloud: str, out: str | Path) -> str:
    options = []
    if Path(catalog).resolve() != Path("catalog.yaml").resolve():
        options.append(f"--catalog {shlex.quote(str(catalog))}")
    if cloud and cloud != os.environ.get("STAMP_CLOUD", "aws"):
        options.append(f"--cloud {cloud}")
    if Path(out).resolve() != Path("build").resolve():
        options.append(f"--out {shlex.quote(str(out))}")
    return " ".join(options)
