"""The cloud resources stamp makes for a build's Packer run (its key pair and security group, tagged with the build
ID), and their removal with the build container once the build is over."""

from __future__ import annotations

import os
from pathlib import Path

from stamp.catalog.load import Image
from stamp.drivers import proc, runfiles
from stamp.errors import BuildError, ProcessError, StampError
from stamp.hosts.base import BuildMachine, Target
from stamp.output import say
from stamp.tags import run_tags


def import_key_pair(target: Target, image: Image, build_id: str) -> tuple[str, Path]:
    """A key pair for Packer's instance, tagged with the build ID as it is created.

    Packer 1.6.6 makes its own temporary key pair (`packer_<uuid>`) without any tag, so a killed build would
    leave a key pair nobody can tell apart from others; given `ssh_keypair_name` and `ssh_private_key_file`,
    it makes none. (Recent versions of the amazon plugin tag their temporary key pair with `run_tags`.)

    The private key is the build's own, on either cloud, in a private run directory (tools/stamp/drivers/runfiles.py):
    never under build/, which is collected as an artifact. `clean_up` removes it; `stamp gc` removes one a
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


def create_security_group(target: Target, image: Image, build_id: str) -> str:
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


def clean_up(
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
    copied out of the run directory first (`build_leftovers.with_kept_machine`).
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
