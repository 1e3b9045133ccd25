"""The local cloud: builds and instances are containers with sshd on 127.0.0.1, tied to the AMIs moto registers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from stamp import local
from stamp.cloud.protocol import Cloud, Instance
from stamp.drivers import runfiles
from stamp.drivers.ssh import ssh_config_text
from stamp.errors import BuildError, StampError
from stamp.hosts.base import BuildMachine, CleanupStep, CloudKind, Host, Launcher, Target, run_over_ssh
from stamp.local.baseimage import image_exists
from stamp.local.stale import parent_warnings
from stamp.tags import BUILD_ID_TAG

if TYPE_CHECKING:
    from stamp.catalog.load import Catalog, Image


@dataclass(frozen=True)
class LocalTarget(Target):
    """The embedded local cloud: moto for the EC2 API (`cloud`), a container engine for the machines."""

    local: local.LocalCloud = field(kw_only=True)
    env: Mapping[str, str] = field(default_factory=dict, kw_only=True)
    # The local cloud signing with its own keys, where commands sign with others (STAMP_LOCAL_CREDENTIALS=env, an
    # IAM user of the local cloud); None: `cloud` is it already.
    admin: Cloud | None = field(default=None, kw_only=True)
    kind: ClassVar[CloudKind] = "local"
    records_only_in_workspaces: ClassVar[bool] = True
    records_dirty_builds: ClassVar[bool] = True

    @property
    def packer_env(self) -> dict[str, str]:
        return dict(self.env)

    def start_build(self, image: Image, build_id: str, *, source_ami: str, public_key: str) -> BuildMachine:
        """A container from the source AMI's image, which Packer reaches over SSH as if it were the instance.

        Its apt goes through the local cloud's apt cache for the build (not into the image: `local.commit`).
        """
        started = time.monotonic()
        if image.parent is not None and self.cloud.describe_image(image.regions[0], source_ami) is None:
            raise BuildError(
                f"[{image.name}] {image.parent}'s AMI {source_ami} does not exist in this local cloud (a restarted"
                " local cloud loses its AMIs)",
                hint=f"run `stamp release {image.parent}` again, then build {image.name}",
            )
        container = local.launch(
            self.local,
            source_ami,
            name=f"stamp-build-{build_id}",
            ssh_user=image.ssh_username,
            labels={BUILD_ID_TAG: build_id},
            # As EC2 installs the key pair: Packer logs in with the build's throwaway key.
            authorized_keys=[public_key],
            apt_config=self.local.build_apt_config(),
        )
        variables = {
            "ec2_endpoint": self.local.endpoint_url,
            "ssh_host": container.ssh_host,
            "ssh_port": str(container.ssh_port),
            "poll_delay_seconds": "1",
            "poll_max_attempts": "120",
        }
        return BuildMachine(variables, round(time.monotonic() - started, 2), container.container_id)

    def finish_build(self, machine: BuildMachine, amis: Mapping[str, str]) -> float:
        """Commit the provisioned container as the image behind every AMI the build registered."""
        started = time.monotonic()
        if machine.machine_id is not None:
            local.commit(self.local, machine.machine_id, list(amis.values()))
        return round(time.monotonic() - started, 2)

    def build_cleanup(self, build_id: str, machine: BuildMachine | None) -> list[CleanupStep]:
        cloud = self.local
        steps: list[CleanupStep] = []
        if machine is not None and machine.machine_id is not None:
            container_id = machine.machine_id
            steps.append((f"container {container_id[:12]}", lambda: local.terminate(cloud, container_id)))
        # A container started as the build was interrupted may not have reached `machine` yet.
        steps.append((f"containers of build {build_id}", lambda: self._remove_build_containers(build_id)))
        return steps

    def _remove_build_containers(self, build_id: str) -> None:
        for container_id in local.list_instances(self.local, {BUILD_ID_TAG: build_id}):
            local.terminate(self.local, container_id)

    def adopt(self, build_id: str, amis: Mapping[str, str]) -> bool:
        """Put a container image behind every adopted AMI: the one committed already, or the build's container."""
        ami_ids = list(amis.values())
        engine = self.local.engine_handle
        committed = [ami for ami in ami_ids if image_exists(engine, local.container_image_for(ami))]
        if committed:
            missing = [ami for ami in ami_ids if ami not in committed]
            local.tie_image(self.local, local.container_image_for(committed[0]), missing)
            return True
        containers = local.list_instances(self.local, {BUILD_ID_TAG: build_id})
        if containers:
            # Packer registers an AMI only after provisioning finished, so the build's container holds the image.
            local.commit(self.local, containers[0], ami_ids)
            return True
        return False

    def launcher(self, image: Image, *, env: Mapping[str, str] | None = None) -> Launcher:
        return LocalLauncher(self.local)

    def leftover_machines(self, build_id: str | None) -> list[tuple[str, str]]:
        """Containers labelled with a build ID (a blank label is an instance of a built AMI, not a build's)."""
        found = local.build_labels(self.local)
        return [(cid[:12], label) for cid, label in found.items() if label and build_id in (None, label)]

    def remove_machine(self, machine_id: str) -> None:
        local.terminate(self.local, machine_id)

    def forget_image(self, ami_id: str) -> None:
        # The container image behind a deregistered local AMI can never be launched again; a tag still in use by
        # a container stays (rmi refuses it), which is harmless.
        ref = local.container_image_for(ami_id)
        self.local.engine_handle.run(["rmi", ref], what=f"untagging {ref}", check=False, echo=False)

    def ensure_bucket(self, bucket: str, region: str) -> None:
        """The artifacts bucket in moto: a local cloud starts without it, and a restarted one has forgotten it.

        Made as the local cloud's administrator: on AWS the bucket is the account's already, and no role of the
        pipeline may create one (iam/*.json).
        """
        (self.admin or self.cloud).create_bucket(region, bucket)

    def lost_parent_warnings(self, catalog: Catalog, images: Sequence[str]) -> list[str]:
        return parent_warnings(self.cloud, catalog, images)

    def attach(self, instance: Instance, *, image: Image, hostname: str, user_data: str) -> str:
        """A container for the instance moto registered, running its user-data: a script from the first-boot shim,
        a #cloud-config through cloud-init (docs/local-cloud.md, User-data). Other kinds are refused."""
        try:
            local.user_data_kind(user_data)
        except StampError:
            # Refused before a container starts; the instance moto registered for it goes too.
            for region in image.regions:
                with contextlib.suppress(StampError):
                    self.cloud.terminate_instances(region, [instance.instance_id])
            raise
        container = local.launch(
            self.local,
            instance.ami_id,
            name=f"{hostname}-{instance.instance_id}",
            ssh_user=image.ssh_username,
            labels={"stamp:instance-id": instance.instance_id, "stamp:image": image.name},
            user_data=user_data,
        )
        return f"ssh -F {self.local.ssh_config} -p {container.ssh_port} {container.ssh_user}@127.0.0.1"

    def kept_login(self, image: Image, build_id: str, machine: BuildMachine | None, ssh_config: Path) -> list[str]:
        """The build container, as Packer reached it: SSH on 127.0.0.1 with the build's key."""
        if machine is None or machine.machine_id is None or not machine.variables.get("ssh_port"):
            return []
        port = machine.variables["ssh_port"]
        return [
            f"ssh -F {ssh_config} -p {port} {image.ssh_username}@127.0.0.1",
            f"(container {machine.machine_id[:12]}: `{self.local.engine_handle.name} exec -it"
            f" {machine.machine_id[:12]} bash` works too)",
        ]


@dataclass
class LocalLauncher:
    """Instances are containers from the image tied to the AMI, with sshd on 127.0.0.1.

    They accept the local cloud's own key (.stamp/local/ssh/, never collected as an artifact); the ssh_config
    that shares one ssh master per instance, and its socket, live in a private run directory
    (tools/stamp/drivers/runfiles.py) that goes with the last instance.
    """

    cloud: local.LocalCloud
    _run_dir: Path | None = field(default=None, init=False)
    _running: set[str] = field(default_factory=set, init=False)
    # Verification reaches its instances from several threads (the tests, the identity check, the inventory).
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def ssh_config(self) -> Path:
        with self._lock:
            if self._run_dir is None:
                run_dir = runfiles.make_run_dir()
                config = ssh_config_text(self.cloud.ssh_private_key, control_dir=run_dir)
                (run_dir / "ssh_config").write_text(config, encoding="utf-8")
                self._run_dir = run_dir
            return self._run_dir / "ssh_config"

    def launch(self, ami_id: str, *, name: str, ssh_user: str, labels: dict[str, str]) -> Host:
        instance = local.launch(self.cloud, ami_id, name=name, ssh_user=ssh_user, labels=labels)
        with self._lock:
            self._running.add(instance.container_id)
        return Host(instance.container_id, instance.ssh_host, instance.ssh_port, instance.ssh_user)

    def terminate(self, host: Host) -> None:
        try:
            local.terminate(self.cloud, host.instance_id)
        finally:
            with self._lock:
                self._running.discard(host.instance_id)
                if not self._running and self._run_dir is not None:
                    runfiles.remove_run_dir(self._run_dir)
                    self._run_dir = None

    def run(self, host: Host, command: str) -> str:
        return run_over_ssh(self.ssh_config, host, command)
