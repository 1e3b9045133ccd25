"""`stamp build`: render, run Packer against AWS or the local cloud, and leave `build/<image>/result.json`."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import shutil
import time
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

from stamp import clock, output
from stamp.catalog.load import Catalog, Image
from stamp.catalog.models import ReleaseSource
from stamp.catalog.rebuilds import definition_reasons, images_for_paths
from stamp.catalog.results import BuildResult, result_path, write_result
from stamp.cloud.protocol import ImageDetails, TaggedResource
from stamp.commands import gc
from stamp.commands.common import catalog_of, report_outcomes, target_of
from stamp.drivers import packer, proc, runfiles
from stamp.drivers.buildlock import build_lock
from stamp.drivers.git import catalog_at, changed_paths
from stamp.drivers.hcl import MANIFEST_FILE, render_image, write_render
from stamp.drivers.ssh import ssh_config_text
from stamp.drivers.stopping import check_stop, is_stopping
from stamp.errors import BuildError, CatalogError, CloudError, ProcessError, StampError, Stopped, UsageError
from stamp.hosts.base import BuildMachine, Target
from stamp.output import say
from stamp.tags import BUILD_ID_TAG, SOURCE_AMI_TAG, run_tags

UNKNOWN_COMMIT = "0000000"
# Under build/<image>/: Packer's output (packer.log) and every command stamp ran for the build (build.log).
LOGS = "logs"


def new_build_id(image: str, now: datetime) -> str:
    """Unique per build; also the AMI name suffix, so two builds in one second never collide.

    A name from a one-second timestamp alone would collide (docs/facts.md, Packer 1.6.6).
    """
    return f"{image}-{now.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"


def ami_name(image: str, build_id: str) -> str:
    """The AMI name the template gives (`ami_name = "${var.image_name}-${var.build_id}"`): unique to a build."""
    return f"{image}-{build_id}"


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


def git_commit(repo: Path) -> str:
    done = proc.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=False, echo=False)
    return done.stdout.strip() if done.returncode == 0 else UNKNOWN_COMMIT


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
        adopted = _adopt(catalog, image, target, build_id, build_root=build_root)
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
        key_name, private_key = _import_key_pair(target, image, build_id)
        public_key = private_key.with_suffix(".pub").read_text(encoding="utf-8")
        with output.step(name, "start the build machine") as step:
            machine = target.start_build(image, build_id, source_ami=source_ami, public_key=public_key)
            step.silent = machine.machine_id is None  # Packer starts it (EC2): nothing happened here
        if machine.machine_id is not None:
            timings["start_instance"] = machine.seconds
        variables |= machine.variables
        check_stop(name, build_id)
        group_id = _create_security_group(target, image, build_id)
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
                raise _kept(exc, catalog, target, image, build_id, machine, private_key) from None
            raise _with_leftovers(exc, target, image, build_id, (key_name, group_id)) from None
        timings["packer"] = round(time.monotonic() - tick, 2)
        amis = packer.read_manifest(out / MANIFEST_FILE, build_id=build_id)
        if set(amis) != set(image.regions):
            problem = BuildError(
                f"[{name}] Packer made AMIs in {', '.join(sorted(amis)) or 'no region'}, the catalog asks for "
                f"{', '.join(image.regions)}"
            )
            raise _with_leftovers(problem, target, image, build_id, (key_name, group_id))
        if image.parent is None:
            source = ReleaseSource(amis={image.regions[0]: _source_packer_used(target, image, amis, source_ami)})
        if machine.machine_id is not None:
            timings["commit"] = target.finish_build(machine, amis)
        if is_stopping():
            # The AMIs exist and are tagged (and committed locally): a rerun with this build ID adopts them.
            stopped = Stopped(f"[{name}] build {build_id} stopped after Packer registered its AMIs")
            raise _with_leftovers(stopped, target, image, build_id, (key_name, group_id))
    finally:
        _clean_up(target, image, build_id, machine, key_name, private_key, group_id, kept=kept)
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


def _import_key_pair(target: Target, image: Image, build_id: str) -> tuple[str, Path]:
    """A key pair for Packer's instance, tagged with the build ID as it is created.

    Packer 1.6.6 makes its own temporary key pair (`packer_<uuid>`) without any tag, so a killed build would
    leave a key pair nobody can tell apart from others; given `ssh_keypair_name` and `ssh_private_key_file`,
    it makes none. (Recent versions of the amazon plugin tag their temporary key pair with `run_tags`.)

    The private key is the build's own, on either cloud, in a private run directory (tools/stamp/drivers/runfiles.py):
    never under build/, which is collected as an artifact. `_clean_up` removes it; `stamp gc` removes one a
    killed build left.
    """
    region = image.regions[0]
    key_name = f"stamp-build-{build_id}"
    private_key = runfiles.make_run_dir() / "id_ed25519"
    try:
        try:
            proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key_name, "-f", str(private_key)])
        except ProcessError as exc:
            raise BuildError(
                f"[{image.name}] making the build's SSH key failed: {exc}",
                hint="install the OpenSSH client (`sudo apt-get install -y openssh-client`), then retry",
            ) from None
        public_key = private_key.with_suffix(".pub").read_text(encoding="utf-8")
        target.cloud.import_key_pair(region, key_name, public_key, tags=run_tags(image.name, build_id))
    except BaseException:
        runfiles.remove_run_dir(private_key.parent)
        raise
    return key_name, private_key


def _create_security_group(target: Target, image: Image, build_id: str) -> str:
    """The build instance's security group, tagged with the build ID as it is created.

    Packer 1.6.6 otherwise makes `packer_<uuid>` without any tag, and a SIGKILLed Packer leaves it behind
    where `stamp gc` may not touch it. Like Packer's own group, it admits SSH from anywhere unless
    STAMP_BUILD_SSH_CIDRS narrows it (Packer's `temporary_security_group_source_cidrs`).
    """
    cidrs = [c.strip() for c in os.environ.get("STAMP_BUILD_SSH_CIDRS", "0.0.0.0/0").split(",") if c.strip()]
    return target.cloud.create_security_group(
        image.regions[0],
        f"stamp-build-{build_id}",
        description=f"stamp build {build_id}: SSH for Packer",
        ssh_cidrs=cidrs,
        tags=run_tags(image.name, build_id),
    )


def _clean_up(
    target: Target,
    image: Image,
    build_id: str,
    machine: BuildMachine | None,
    key_name: str | None,
    private_key: Path | None,
    group_id: str | None,
    *,
    kept: bool = False,
) -> None:
    """Remove the build container, key pair and group; a failure here is reported, never hides the build's error.

    A kept build (`--on-error keep`) leaves its machine, key pair and group for `stamp gc`; its private key was
    copied out of the run directory first (`_kept`).
    """
    steps = [] if kept else target.build_cleanup(build_id, machine)
    if key_name is not None and not kept:
        steps.append((f"key pair {key_name}", lambda: target.cloud.delete_key_pair(image.regions[0], key_name)))
    if group_id is not None and not kept:
        # Packer has terminated its instance by now (it waits for that), so the group is free to go.
        steps.append(
            (f"security group {group_id}", lambda: target.cloud.delete_security_group(image.regions[0], group_id))
        )
    try:
        for what, step in steps:
            try:
                step()
            except StampError as exc:
                say(f"[{image.name}] could not remove {what}: {exc}; `stamp gc` removes it (it carries the build ID)")
    finally:
        if private_key is not None:
            # The build's throwaway key, with its run directory: nothing may log in with it once the build is over.
            runfiles.remove_run_dir(private_key.parent)


def _claim_named(target: Target, image: Image, build_id: str, region: str) -> None:
    """Tag the build's AMI in `region` (and its snapshots) when Packer has not yet.

    Packer 1.6.6 tags AMIs only after every copy finished (its tagging step runs after the region copy), so a
    copy that succeeded next to one that failed, or a build killed while copying, leaves an untagged AMI and
    snapshot. The AMI's name is unique to the build, which is how it is found; the tag is how `stamp gc` will.
    """
    found = target.cloud.find_newest_image(region, name=ami_name(image.name, build_id), owners=["self"])
    if found is None:
        return
    details = target.cloud.describe_image(region, found.ami_id)
    if details is None or details.tags.get(BUILD_ID_TAG) == build_id:
        return
    target.cloud.create_tags(region, [found.ami_id, *details.snapshot_ids], run_tags(image.name, build_id))


def build_leftovers(target: Target, image: Image, build_id: str) -> tuple[list[TaggedResource], dict[str, str]]:
    """What build `build_id` left in the image's regions (claiming untagged AMIs first); regions not read, and why."""
    found: list[TaggedResource] = []
    unread: dict[str, str] = {}
    for region in image.regions:
        try:
            _claim_named(target, image, build_id, region)
            found += target.cloud.list_tagged(region, BUILD_ID_TAG, build_id)
        except CloudError as exc:
            unread[region] = exc.message.splitlines()[0]
    return found, unread


def _with_leftovers(
    error: BuildError, target: Target, image: Image, build_id: str, removed: Collection[str | None] = ()
) -> BuildError:
    """`error`, saying what the build left in every region (all of it tagged, so `stamp gc` finds it)."""
    found, unread = build_leftovers(target, image, build_id)
    # The build's own key pair and security group are removed on the way out; they are not left behind.
    found = [r for r in found if r.resource_id not in removed]
    lines = [error.message, f"build {build_id} left, all tagged {BUILD_ID_TAG}={build_id}:"]
    for region in image.regions:
        here = [f"{r.kind} {r.resource_id}" for r in found if r.region == region]
        shown = f"could not be listed: {unread[region]}" if region in unread else ", ".join(here) or "nothing"
        lines.append(f"  {region}: {shown}")
    # Packer fails when stamp stops it: that failure is the stop, and what it finished can be adopted.
    stopped = isinstance(error, Stopped) or is_stopping()
    hint = "nothing was recorded or shared; "
    hint += (
        f"`stamp build {image.name} --build-id {build_id}` adopts what it finished, `stamp gc` removes it"
        if stopped
        else f"`stamp gc` removes what build {build_id} left"
    )
    if error.hint:
        hint = f"{error.hint}; {hint}"
    return (Stopped if stopped else BuildError)("\n".join(lines), hint=hint)


def _kept(
    error: BuildError,
    catalog: Catalog,
    target: Target,
    image: Image,
    build_id: str,
    machine: BuildMachine | None,
    private_key: Path | None,
) -> BuildError:
    """`error`, for a build whose machine stays running (`--on-error keep`): how to log in, and what removes it.

    The build's private key lives in a run directory that goes with this process, so it is copied to
    .stamp/kept/<build-id>/ (never under build/), with an ssh_config naming it; `stamp gc` removes both
    together with the machine (tools/stamp/commands/gc.py).
    """
    config: Path | None = None
    if private_key is not None and private_key.is_file():
        folder = gc.kept_key_dir(catalog.root, build_id).resolve()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        key = folder / private_key.name
        shutil.copyfile(private_key, key)
        key.chmod(0o600)
        config = folder / "ssh_config"
        config.write_text(ssh_config_text(key), encoding="utf-8")
    login: list[str] = []
    why = "no build machine was left running to keep (--on-error keep)"
    try:
        login = target.kept_login(image, build_id, machine, config) if config is not None else []
    except StampError as exc:  # the build's own failure is the news: this must not hide it
        why = f"the kept build machine could not be looked up: {exc.message.splitlines()[0]}"
    failed = _with_leftovers(error, target, image, build_id)
    if not login:
        return BuildError(f"{failed.message}\n{why}", hint=failed.hint)
    lines = [failed.message, "the build machine is kept running (--on-error keep); open a shell on it with:"]
    lines += [f"  {line}" for line in login]
    assert config is not None
    lines.append(f"  (the build's private key is kept in {config.parent}; `stamp gc` removes it with the machine)")
    return BuildError("\n".join(lines), hint=failed.hint)


def _adopt(catalog: Catalog, image: Image, target: Target, build_id: str, *, build_root: Path) -> BuildResult | None:
    """Adopt the AMIs an interrupted build registered, or clear what it left so it can run again under its ID.

    Adopted only when it registered an available AMI in every region the image needs, their source is still
    right, and (locally) a container image can stand behind them; otherwise its AMIs are deregistered too,
    as a new run reuses their names.
    """
    started = time.monotonic()
    images: dict[str, ImageDetails] = {}
    reason = ""
    found, unread = build_leftovers(target, image, build_id)
    if unread:
        raise CloudError(
            f"[{image.name}] cannot tell what build {build_id} left: "
            + "; ".join(f"{region}: {why}" for region, why in unread.items()),
            hint="run the build again when the regions answer",
        )
    for resource in found:
        if resource.kind != "image":
            continue
        if resource.region in images:
            reason = f"it left two AMIs in {resource.region}"
            continue
        try:
            images[resource.region] = target.cloud.wait_until_available(resource.region, resource.resource_id)
        except CloudError as exc:
            reason = exc.message
    amis = {region: images[region].ami_id for region in image.regions if region in images}
    source: ReleaseSource | None = None
    if images and not reason:
        if set(images) != set(image.regions):
            made, wanted = ", ".join(sorted(images)), ", ".join(image.regions)
            reason = f"it registered AMIs in {made} only, the catalog asks for {wanted}"
        else:
            source, reason = _adopted_source(catalog, image, images)
    if source is not None and not target.adopt(build_id, amis):
        source = None
        reason = (
            "no container image stands behind them locally (the build was stopped before committing its"
            " container), so they could not be launched"
        )
    if source is None:
        if images:
            say(
                f"[{image.name}] build {build_id} left AMIs that cannot be adopted ({reason}):"
                f" deregistering {', '.join(amis.values())} and building again"
            )
        _clear(catalog, target, build_id, keep_amis=())
        return None
    _clear(catalog, target, build_id, keep_amis=list(amis.values()))
    result = BuildResult(
        image=image.name,
        build_id=build_id,
        cloud=target.kind,
        amis=dict(sorted(amis.items())),
        source=source,
        # The commit checked out now: the interrupted run does not record its own anywhere stamp can read.
        commit=git_commit(catalog.root),
        started_at=clock.iso(gc.build_id_time(build_id) or clock.utc_now()),
        finished_at=clock.iso(clock.utc_now()),
        packer_version=".".join(map(str, packer.detect_version())),
        timings={"adopt": round(time.monotonic() - started, 2)},
    )
    write_result(build_root, result)
    say(f"[{image.name}] adopted build {build_id}: " + ", ".join(f"{r} {a}" for r, a in result.amis.items()))
    return result


def _adopted_source(
    catalog: Catalog, image: Image, images: dict[str, ImageDetails]
) -> tuple[ReleaseSource | None, str]:
    """What the AMIs were built from (their `stamp:source-ami` tag), if that is still what a build would use."""
    region = image.regions[0]
    used = images[region].tags.get(SOURCE_AMI_TAG, "")
    if not used.startswith("ami-"):
        return None, f"its AMI in {region} does not say what it was built from (no {SOURCE_AMI_TAG} tag)"
    if image.parent is None:
        return ReleaseSource(amis={region: used}), ""
    for release in catalog.releases.get(image.parent, ()):
        if release.amis.get(region) == used:
            if release.status != "current":
                return None, f"it was built from {image.parent} v{release.version}, which is no longer current"
            return ReleaseSource(image=image.parent, version=release.version), ""
    return None, f"it was built from {used}, which is no release of '{image.parent}'"


def _clear(catalog: Catalog, target: Target, build_id: str, *, keep_amis: Collection[str]) -> None:
    """Remove everything build `build_id` left but `keep_amis` (and their snapshots)."""
    report = gc.collect_garbage(
        catalog,
        target,
        older_than=None,
        now=clock.utc_now(),
        dry_run=False,
        build_id=build_id,
        keep_amis=keep_amis,
    )
    for line in report.lines()[:-1]:
        if not line.lstrip().startswith("kept"):
            say(line)
    if report.failed:
        item, error = report.failed[0]
        raise CloudError(
            f"build {build_id} cannot run again under its ID: {item.kind} {item.resource_id} in {item.region}"
            f" could not be removed: {error}",
            hint="a build role may not deregister images: run `stamp gc` with the janitor's role, then this build"
            " again (or leave out --build-id)",
        )
    # A machine kept by `--on-error keep` went with the rest: so does its key.
    shutil.rmtree(gc.kept_key_dir(catalog.root, build_id), ignore_errors=True)


def _source_packer_used(target: Target, image: Image, amis: dict[str, str], looked_up: str) -> str:
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
