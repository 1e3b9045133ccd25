"""Local "instances": containers started from the image tied to an AMI, reachable over SSH on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stamp.drivers import proc
from stamp.drivers.ssh import banner_answers, login_problem, ssh_args
from stamp.errors import CatalogError, CloudError
from stamp.local.baseimage import APT_BUILD_CONF, CLOUD_INIT_LOG, SEED_DIR, inspect_image
from stamp.local.containers import (
    CLOUD_LABEL,
    COMMIT_REPO,
    LABEL,
    LIFE_LABEL,
    STATE_LABEL,
    container_image_for,
    container_labels,
    remove,
    seed_image_for,
)
from stamp.local.engine import Engine
from stamp.local.state_file import LocalCloud
from stamp.output import say
from stamp.tags import BUILD_ID_TAG

# How long a container may take to answer SSH. It boots in about a second, but a #cloud-config runs cloud-init
# before sshd, and on a busy 2-core machine (two test workers building images) that once took over 60 s.
SSH_TIMEOUT = 180.0
# The host's name=systemd cgroup hierarchy, there only on cgroup v1 hosts: systemd in a Docker container needs it.
CGROUP_V1_SYSTEMD = "/sys/fs/cgroup/systemd"
# How long a launch waits for cloud-init to finish a #cloud-config (installing packages takes a while).
CLOUD_INIT_TIMEOUT = 600.0
# Marks a container given the build-only apt configuration, which `commit` removes before the image is made.
APT_CONF_LABEL = "stamp.local.apt-conf"
USER_DATA_KINDS = "a shell script (first line `#!…`) or cloud-init's `#cloud-config`"


def user_data_kind(user_data: str) -> str:
    """What runs the user-data on a local instance: "script" or "cloud-config" ("none" for an empty one); anything
    else is refused (never skipped). cloud-init on EC2 also takes MIME multi-part, `#include`, `#cloud-boothook` and
    gzip; the local cloud runs the two kinds stamp's users write (docs/local-cloud.md, User-data).
    """
    if not user_data.strip():
        return "none"
    first = user_data.split("\n", 1)[0].rstrip()
    if first.startswith("#!"):
        return "script"
    if first == "#cloud-config":
        return "cloud-config"
    shown = first[:40] or "(an empty first line)"
    raise CatalogError(
        f"user-data starting with {shown!r} cannot run on the local cloud: it runs {USER_DATA_KINDS}",
        hint="start the user-data with `#!/bin/sh` or `#cloud-config` (docs/local-cloud.md, User-data)",
    )


def image_for(cloud: LocalCloud, ami_id: str) -> str:
    """The container image a launch of `ami_id` starts from: the base image for a seeded vendor AMI."""
    return seed_image_for(cloud.cloud_id, ami_id) if ami_id in cloud.seeds else container_image_for(ami_id)


@dataclass(frozen=True)
class Container:
    """A running container of the local cloud (an instance, to the EC2 API) and how to reach it over SSH."""

    container_id: str
    name: str
    ami_id: str
    ssh_host: str
    ssh_port: int
    ssh_user: str


def tie_image(cloud: LocalCloud, image_ref: str, ami_ids: Sequence[str]) -> None:
    """Make `image_ref` the image behind each AMI, so launches of those AMIs start from it."""
    engine = cloud.engine_handle
    for ami_id in ami_ids:
        engine.run(["tag", image_ref, container_image_for(ami_id)], what=f"tying {image_ref} to AMI {ami_id}")


def _seed_dir(cloud: LocalCloud, instance_id: str) -> Path:
    return cloud.root / "instances" / instance_id


def _write_seed(
    cloud: LocalCloud,
    instance_id: str,
    ssh_user: str,
    user_data: str | None,
    authorized_keys: Sequence[str] = (),
    apt_config: str | None = None,
) -> Path:
    """The per-instance data a cloud's metadata service would serve, mounted read-only into the container.

    Public keys only: the cloud's own key, which stamp's login checks use, and any `authorized_keys` given.
    `apt_config` is for builds: the first-boot shim puts it in APT_BUILD_CONF, `commit` takes it out again.
    """
    seed = _seed_dir(cloud, instance_id)
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "instance-id").write_text(instance_id + "\n", encoding="utf-8")
    (seed / "ssh-user").write_text(ssh_user + "\n", encoding="utf-8")
    keys = [cloud.ssh_public_key.read_text(encoding="utf-8"), *authorized_keys]
    (seed / "authorized_keys").write_text("".join(k.strip() + "\n" for k in keys if k.strip()), encoding="utf-8")
    if user_data is not None:
        (seed / "user-data").write_text(user_data, encoding="utf-8")
    if apt_config is not None:
        (seed / "apt.conf").write_text(apt_config, encoding="utf-8")
    return seed


def _systemd_args(engine: Engine) -> list[str]:
    if engine.name == "podman":
        # Podman sets up /run, /tmp, cgroups and the stop signal for systemd as PID 1.
        return ["--systemd=always"]
    # Docker has no systemd mode: systemd as PID 1 needs tmpfs on /run and a cgroup hierarchy it may write.
    tmpfs = ["--tmpfs=/run", "--tmpfs=/run/lock", "--tmpfs=/tmp", "--env=container=docker"]
    if Path(CGROUP_V1_SYSTEMD).is_dir():
        # cgroup v1: share only the host's name=systemd hierarchy (systemd makes its cgroups under the container's
        # own, /docker/<id>). Not the host's /sys/fs/cgroup itself: systemd remounts that tmpfs read-only, and
        # through a bind mount the host's went read-only too (measured: docs/local-cloud.md, Docker). Not
        # --privileged either: some VMs refuse the capabilities it asks for ("unable to apply caps").
        return [f"--volume={CGROUP_V1_SYSTEMD}:{CGROUP_V1_SYSTEMD}:rw", *tmpfs]
    # cgroup v2 (not measured on the machines stamp is developed on): the whole unified hierarchy, writable.
    return ["--privileged", "--cgroupns=host", "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw", *tmpfs]


def _name_in_use(engine: Engine, name: str) -> bool:
    done = engine.run(
        ["container", "inspect", "--format", "{{.Id}}", name], what="container lookup", check=False, echo=False
    )
    return done.returncode == 0


def launch(
    cloud: LocalCloud,
    ami_id: str,
    *,
    name: str,
    ssh_user: str,
    labels: Mapping[str, str] | None = None,
    user_data: str | None = None,
    wait: bool = True,
    timeout: float = SSH_TIMEOUT,
    authorized_keys: Sequence[str] = (),
    apt_config: str | None = None,
) -> Container:
    """Start a container from the image tied to `ami_id`, with sshd published on 127.0.0.1.

    With `wait`, returns once the SSH banner answers and a real login as `ssh_user` works, and the user-data
    has finished: a script runs before sshd starts; a `#cloud-config` runs through cloud-init, which is waited
    for and whose failure is an error. `authorized_keys` are public keys accepted besides the cloud's own, as
    EC2 installs the key pair named at launch (a build's throwaway key). `apt_config` goes into the instance's
    apt configuration until `commit` (builds: the local cloud's apt cache).
    """
    kind = user_data_kind(user_data) if user_data is not None else None
    engine = cloud.engine_handle
    image = image_for(cloud, ami_id)
    inherited = _image_labels(engine, image)
    if inherited is None:
        raise CloudError(
            f"local cloud: AMI {ami_id} has no container image behind it ({image} is missing)",
            hint="launch an AMI that a local build registered or a seeded vendor AMI; AMIs of a local cloud"
            " that was restarted since are gone",
        )
    if _name_in_use(engine, name):
        name = f"{name}-{secrets.token_hex(3)}"
    instance_id = "i-" + secrets.token_hex(9)[:17]
    seed = _write_seed(cloud, instance_id, ssh_user, user_data, authorized_keys, apt_config)
    args = [
        "run",
        "--detach",
        f"--name={name}",
        f"--label={LABEL}=1",
        f"--label={CLOUD_LABEL}={cloud.cloud_id}",
        f"--label={STATE_LABEL}={cloud.root}",
        f"--label={LIFE_LABEL}={cloud.moto_pid}",
        f"--label=stamp.local.ami={ami_id}",
        f"--label=stamp.local.instance-id={instance_id}",
        f"--label=stamp.local.ssh-user={ssh_user}",
        *([f"--label={APT_CONF_LABEL}=1"] if apt_config is not None else []),
    ]
    for key, value in (labels or {}).items():
        args.append(f"--label={key}={value}")
    # A committed image carries its builder container's labels, and a container inherits its image's
    # labels. Blank those, as EC2 instances do not inherit an AMI's tags: an instance of a built AMI must
    # not look like the build (the janitor finds build leftovers by label).
    ours = {arg.split("=", 1)[1].split("=", 1)[0] for arg in args if arg.startswith("--label=")}
    for key in sorted(set(inherited) - ours):
        args.append(f"--label={key}=")
    args += [
        "--publish=127.0.0.1::22",
        f"--volume={seed}:{SEED_DIR}:ro",
        *_systemd_args(engine),
        image,
    ]
    try:
        container_id = engine.run(args, what=f"starting an instance of {ami_id}").stdout.strip().splitlines()[-1]
    except CloudError:
        shutil.rmtree(seed, ignore_errors=True)
        raise
    try:
        port = _ssh_port(engine, container_id)
        instance = Container(container_id, name, ami_id, "127.0.0.1", port, ssh_user)
        if wait:
            wait_for_ssh(cloud, instance, timeout=timeout)
            if kind == "cloud-config":
                wait_for_cloud_init(cloud, instance)
    except BaseException:
        terminate(cloud, container_id)
        raise
    return instance


def _image_labels(engine: Engine, image: str) -> dict[str, str] | None:
    """The image's labels, or None when the engine has no such image."""
    answer = inspect_image(engine, image, "{{json .Config.Labels}}")
    if answer is None:
        return None
    try:
        labels = json.loads(answer.strip() or "null")
    except ValueError:
        labels = None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _ssh_port(engine: Engine, container_id: str) -> int:
    out = engine.run(["port", container_id, "22/tcp"], what="finding the instance's SSH port", echo=False)
    for line in out.stdout.splitlines():
        host, _, port = line.strip().rpartition(":")
        if host in ("127.0.0.1", "0.0.0.0") and port.isdigit():  # noqa: S104
            return int(port)
    raise CloudError(
        f"local cloud: container {container_id[:12]} publishes no SSH port ({out.stdout.strip()!r})",
        hint="check the container engine's port publishing (`podman port`); then retry",
    )


def _running(engine: Engine, container_id: str) -> bool:
    """Whether the container runs; only the engine's own "no such container" means it is gone (a busy engine's
    failure is retried, not taken for a stopped instance)."""
    done = engine.read(
        ["container", "inspect", "--format", "{{.State.Running}}", container_id],
        what=f"reading the state of container {container_id[:12]}",
        answers=lambda failed: "no such container" in failed.stderr.lower(),
    )
    return done.returncode == 0 and done.stdout.strip() == "true"


def wait_for_ssh(cloud: LocalCloud, instance: Container, *, timeout: float = SSH_TIMEOUT) -> None:
    """Wait until the SSH banner answers and `ssh … true` logs in (Packer retries a refused SSH only every 5 s)."""
    engine = cloud.engine_handle
    deadline = time.monotonic() + timeout
    last = "no SSH banner yet"
    checks = 0
    # The banner is polled every 50 ms (a connect to 127.0.0.1 costs nothing; systemd boots in ~1 s), whether the
    # container still runs about every 2 s.
    while time.monotonic() < deadline:
        checks += 1
        if checks % 40 == 0 and not _running(engine, instance.container_id):
            logs = engine.run(["logs", "--tail", "20", instance.container_id], what="logs", check=False)
            raise CloudError(
                f"local cloud: instance {instance.name} ({instance.ami_id}) stopped while booting:\n"
                + (logs.stdout + logs.stderr).strip(),
                hint="the image's init or sshd failed; check the provisioning that built this AMI",
            )
        if not banner_answers(instance.ssh_host, instance.ssh_port):
            time.sleep(0.05)
            continue
        problem = login_problem(cloud.ssh_config, instance.ssh_host, instance.ssh_port, instance.ssh_user)
        if problem is None:
            return
        last = problem
        time.sleep(0.1)
    raise CloudError(
        f"local cloud: instance {instance.name} ({instance.ami_id}) did not accept SSH logins as"
        f" {instance.ssh_user} on 127.0.0.1:{instance.ssh_port} within {timeout:.0f} s: {last}"
        + _boot_state(engine, instance.container_id),
        hint=f"inspect it with `{engine.name} logs {instance.container_id[:12]}`; an image without sshd or"
        f" without the user {instance.ssh_user} cannot be an instance",
    )


_INSIDE_BANNER = (
    "import socket; s = socket.create_connection(('127.0.0.1', 22), 5); s.settimeout(5); print(s.recv(64).decode())"
)


def _boot_state(engine: Engine, container_id: str) -> str:
    """What the instance's systemd still waits for, whether sshd answers inside it, and the end of its console:
    why a boot did not get to SSH."""

    def answer(args: list[str]) -> str:
        try:
            done = engine.run(args, what="inspecting the instance", check=False, echo=False, timeout=30)
        except CloudError as exc:  # the diagnosis must not hide the error it explains
            return exc.message
        return (done.stdout + done.stderr).strip()

    jobs = answer(["exec", container_id, "systemctl", "list-jobs", "--no-pager"])
    inside = answer(["exec", container_id, "python3", "-c", _INSIDE_BANNER])
    logs = answer(["logs", "--tail", "15", container_id])
    return (
        f"\n--- systemctl list-jobs ---\n{jobs}"
        f"\n--- sshd's banner on port 22 inside the instance ---\n{inside}"
        f"\n--- last lines of its console ---\n{logs}"
    )


def wait_for_cloud_init(cloud: LocalCloud, instance: Container, *, timeout: float = CLOUD_INIT_TIMEOUT) -> None:
    """Wait for cloud-init to finish the instance's `#cloud-config`; an error (or no cloud-init) is a CloudError.

    `cloud-init status --wait` is what a user runs on EC2 to wait for the same thing.
    """

    def on_instance(command: str) -> proc.Completed:
        args = ssh_args(cloud.ssh_config, instance.ssh_host, instance.ssh_port, instance.ssh_user, command)
        return proc.run(args, check=False, echo=False, timeout=timeout)

    done = on_instance("cloud-init status --wait --long")
    status = next(
        (line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("status:")), ""
    )
    if status == "done":
        return
    where = f"instance {instance.name} ({instance.ami_id})"
    if done.returncode == 127 or "not found" in done.stderr:
        raise CloudError(
            f"local cloud: {where} got a #cloud-config, but its image has no cloud-init: it was built from a local"
            " base image older than cloud-init support",
            hint="build the image again (`stamp release IMAGE`) so it starts from the current base image",
        )
    tail = on_instance(f"sudo -n tail -n 15 {CLOUD_INIT_LOG}").stdout.strip()
    detail = "\n".join(line for line in done.stdout.splitlines() if line.strip()) or done.stderr.strip()
    raise CloudError(
        f"local cloud: cloud-init did not finish the #cloud-config of {where} (status {status or 'unknown'}):\n"
        f"{detail}\n--- last lines of {CLOUD_INIT_LOG} ---\n{tail}",
        hint=f"fix the #cloud-config; on the instance, {CLOUD_INIT_LOG} and /var/log/cloud-init.log say more",
    )


def commit(cloud: LocalCloud, container_id: str, ami_ids: Sequence[str]) -> str:
    """Save the container's filesystem as an image tied to every AMI in `ami_ids`; return its reference."""
    engine = cloud.engine_handle
    ref = container_image_for(ami_ids[0]) if ami_ids else f"{COMMIT_REPO}:{container_id[:12]}"
    started = time.monotonic()
    _remove_build_apt_config(engine, container_id)
    engine.run(["commit", container_id, ref], what=f"committing container {container_id[:12]} to {ref}")
    tie_image(cloud, ref, ami_ids[1:])
    say(f"local cloud: committed {container_id[:12]} as {ref} in {time.monotonic() - started:.1f} s")
    return ref


def _remove_build_apt_config(engine: Engine, container_id: str) -> None:
    """Take the build-only apt configuration (the apt cache) out of a container before it becomes an image."""
    labels = engine.run(
        ["container", "inspect", "--format", f'{{{{index .Config.Labels "{APT_CONF_LABEL}"}}}}', container_id],
        what="container lookup",
        check=False,
        echo=False,
    )
    if labels.stdout.strip() != "1":
        return
    engine.run(
        ["exec", container_id, "rm", "-f", APT_BUILD_CONF],
        what=f"removing the build's apt configuration from container {container_id[:12]} before committing it",
    )


def terminate(cloud: LocalCloud, container_id: str) -> None:
    """Force-remove the container; harmless when it is already gone."""
    engine = cloud.engine_handle
    done = engine.run(
        ["container", "inspect", "--format", '{{index .Config.Labels "stamp.local.instance-id"}}', container_id],
        what="container lookup",
        check=False,
        echo=False,
    )
    instance_id = done.stdout.strip() if done.returncode == 0 else ""
    remove(engine, [container_id])
    if instance_id.startswith("i-"):
        shutil.rmtree(_seed_dir(cloud, instance_id), ignore_errors=True)


def list_instances(cloud: LocalCloud, labels: Mapping[str, str] | None = None) -> list[str]:
    """IDs of this cloud's containers carrying every label in `labels`."""
    wanted = {LABEL: "1", **(labels or {})}
    return [
        container_id
        for container_id, have in container_labels(cloud.engine_handle, cloud.cloud_id).items()
        if all(have.get(key) == value for key, value in wanted.items())
    ]


def build_labels(cloud: LocalCloud) -> dict[str, str]:
    """Container ID -> its `stamp:build-id` label ("" when it has none), for every instance of this cloud."""
    return {
        container_id: labels.get(BUILD_ID_TAG, "")
        for container_id, labels in container_labels(cloud.engine_handle, cloud.cloud_id).items()
        if labels.get(LABEL) == "1"
    }
