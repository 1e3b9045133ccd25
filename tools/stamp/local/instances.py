"""Local "instances": containers started from the image tied to an AMI, reachable over SSH on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stamp.drivers.ssh import banner_answers, login_problem
from stamp.errors import CloudError
from stamp.local.baseimage import SEED_DIR
from stamp.local.cloud import LocalCloud
from stamp.local.containers import CLOUD_LABEL, LABEL, container_image_for, container_labels, remove
from stamp.local.engine import Engine
from stamp.tags import BUILD_ID_TAG

SSH_TIMEOUT = 60.0


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
    cloud: LocalCloud, instance_id: str, ssh_user: str, user_data: str | None, authorized_keys: Sequence[str] = ()
) -> Path:
    """The per-instance data a cloud's metadata service would serve, mounted read-only into the container.

    Public keys only: the cloud's own key, which stamp's login checks use, and any `authorized_keys` given.
    """
    seed = _seed_dir(cloud, instance_id)
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "instance-id").write_text(instance_id + "\n", encoding="utf-8")
    (seed / "ssh-user").write_text(ssh_user + "\n", encoding="utf-8")
    keys = [cloud.ssh_public_key.read_text(encoding="utf-8"), *authorized_keys]
    (seed / "authorized_keys").write_text("".join(k.strip() + "\n" for k in keys if k.strip()), encoding="utf-8")
    if user_data is not None:
        (seed / "user-data").write_text(user_data, encoding="utf-8")
    return seed


def _systemd_args(engine: Engine) -> list[str]:
    if engine.name == "podman":
        # Podman sets up /run, /tmp, cgroups and the stop signal for systemd as PID 1.
        return ["--systemd=always"]
    # Docker has no systemd mode: systemd as PID 1 needs the cgroup tree writable and tmpfs on /run.
    return [
        "--privileged",
        "--cgroupns=host",
        "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs=/run",
        "--tmpfs=/run/lock",
        "--tmpfs=/tmp",
        "--env=container=docker",
    ]


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
) -> Container:
    """Start a container from the image tied to `ami_id`, with sshd published on 127.0.0.1.

    With `wait`, returns once the SSH banner answers and a real login as `ssh_user` works (a user-data
    script has finished by then: it runs before sshd starts). `authorized_keys` are public keys accepted
    besides the cloud's own, as EC2 installs the key pair named at launch (a build's throwaway key).
    """
    engine = cloud.engine_handle
    image = container_image_for(ami_id)
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
    seed = _write_seed(cloud, instance_id, ssh_user, user_data, authorized_keys)
    args = [
        "run",
        "--detach",
        f"--name={name}",
        f"--label={LABEL}=1",
        f"--label={CLOUD_LABEL}={cloud.cloud_id}",
        f"--label=stamp.local.ami={ami_id}",
        f"--label=stamp.local.instance-id={instance_id}",
        f"--label=stamp.local.ssh-user={ssh_user}",
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
    except BaseException:
        terminate(cloud, container_id)
        raise
    return instance


def _image_labels(engine: Engine, image: str) -> dict[str, str] | None:
    """The image's labels, or None when the engine has no such image."""
    done = engine.run(
        ["image", "inspect", "--format", "{{json .Config.Labels}}", image],
        what="image lookup",
        check=False,
        echo=False,
    )
    if done.returncode != 0:
        return None
    try:
        labels = json.loads(done.stdout.strip() or "null")
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
    done = engine.run(
        ["container", "inspect", "--format", "{{.State.Running}}", container_id],
        what="container state",
        check=False,
        echo=False,
    )
    return done.returncode == 0 and done.stdout.strip() == "true"


def wait_for_ssh(cloud: LocalCloud, instance: Container, *, timeout: float = SSH_TIMEOUT) -> None:
    """Wait until the SSH banner answers and `ssh … true` logs in (Packer retries a refused SSH only every 5 s)."""
    engine = cloud.engine_handle
    deadline = time.monotonic() + timeout
    last = "no SSH banner yet"
    checks = 0
    while time.monotonic() < deadline:
        checks += 1
        if checks % 10 == 0 and not _running(engine, instance.container_id):
            logs = engine.run(["logs", "--tail", "20", instance.container_id], what="logs", check=False)
            raise CloudError(
                f"local cloud: instance {instance.name} ({instance.ami_id}) stopped while booting:\n"
                + (logs.stdout + logs.stderr).strip(),
                hint="the image's init or sshd failed; check the provisioning that built this AMI",
            )
        if not banner_answers(instance.ssh_host, instance.ssh_port):
            time.sleep(0.2)
            continue
        problem = login_problem(cloud.ssh_config, instance.ssh_host, instance.ssh_port, instance.ssh_user)
        if problem is None:
            return
        last = problem
        time.sleep(0.3)
    raise CloudError(
        f"local cloud: instance {instance.name} ({instance.ami_id}) did not accept SSH logins as"
        f" {instance.ssh_user} on 127.0.0.1:{instance.ssh_port} within {timeout:.0f} s: {last}",
        hint=f"inspect it with `{engine.name} logs {instance.container_id[:12]}`; an image without sshd or"
        f" without the user {instance.ssh_user} cannot be an instance",
    )


def commit(cloud: LocalCloud, container_id: str, ami_ids: Sequence[str]) -> str:
    """Save the container's filesystem as an image tied to every AMI in `ami_ids`; return its reference."""
    engine = cloud.engine_handle
    ref = container_image_for(ami_ids[0]) if ami_ids else f"localhost/stamp/commit:{container_id[:12]}"
    started = time.monotonic()
    engine.run(["commit", container_id, ref], what=f"committing container {container_id[:12]} to {ref}")
    tie_image(cloud, ref, ami_ids[1:])
    print(f"local cloud: committed {container_id[:12]} as {ref} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return ref


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
