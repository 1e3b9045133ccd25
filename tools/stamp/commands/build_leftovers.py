"""What a failed or interrupted build left in the cloud: found by its build ID (and its AMIs' unique names),
reported in the build's error, and adopted or cleared when the build runs again under its ID."""

from __future__ import annotations

import shutil
import time
from collections.abc import Collection
from pathlib import Path

from stamp import clock
from stamp.catalog.load import Catalog, Image
from stamp.catalog.models import ReleaseSource
from stamp.catalog.results import BuildResult, write_result
from stamp.cloud.protocol import ImageDetails, TaggedResource
from stamp.commands import gc
from stamp.commands.build_provenance import git_commit
from stamp.drivers import packer
from stamp.drivers.ssh import ssh_config_text
from stamp.drivers.stopping import is_stopping
from stamp.errors import BuildError, CloudError, StampError, Stopped
from stamp.hosts.base import BuildMachine, Target
from stamp.output import say
from stamp.tags import BUILD_ID_TAG, SOURCE_AMI_TAG, run_tags


def ami_name(image: str, build_id: str) -> str:
    """The AMI name the template gives (`ami_name = "${var.image_name}-${var.build_id}"`): unique to a build."""
    return f"{image}-{build_id}"


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


def with_leftovers(
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


def with_kept_machine(
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
    failed = with_leftovers(error, target, image, build_id)
    if not login:
        return BuildError(f"{failed.message}\n{why}", hint=failed.hint)
    lines = [failed.message, "the build machine is kept running (--on-error keep); open a shell on it with:"]
    lines += [f"  {line}" for line in login]
    assert config is not None
    lines.append(f"  (the build's private key is kept in {config.parent}; `stamp gc` removes it with the machine)")
    return BuildError("\n".join(lines), hint=failed.hint)


def adopt(catalog: Catalog, image: Image, target: Target, build_id: str, *, build_root: Path) -> BuildResult | None:
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
