"""Launchers: how verification and `stamp launch` get instances, on the local cloud or on AWS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stamp import local, proc
from stamp.catalog import Image
from stamp.clouds import Target
from stamp.errors import CloudError
from stamp.verify import Host, Launcher


@dataclass
class LocalLauncher:
    """Instances are containers from the image tied to the AMI, with sshd on 127.0.0.1."""

    cloud: local.LocalCloud

    @property
    def ssh_config(self) -> Path:
        return self.cloud.ssh_config

    def launch(
        self, ami_id: str, *, name: str, ssh_user: str, labels: dict[str, str], user_data: str | None = None
    ) -> Host:
        instance = local.launch(self.cloud, ami_id, name=name, ssh_user=ssh_user, labels=labels, user_data=user_data)
        return Host(instance.container_id, instance.ssh_host, instance.ssh_port, instance.ssh_user)

    def terminate(self, host: Host) -> None:
        local.terminate(self.cloud, host.instance_id)

    def run(self, host: Host, command: str) -> str:
        args = [
            "ssh",
            "-F",
            str(self.ssh_config),
            "-p",
            str(host.ssh_port),
            f"{host.ssh_user}@{host.ssh_host}",
            command,
        ]
        return proc.run(args, echo=False, timeout=60).stdout


def launcher_for(target: Target, image: Image) -> Launcher:
    """The launcher for a command's cloud: containers locally; EC2 instances need `stamp verify` on AWS."""
    if target.local is not None:
        return LocalLauncher(target.local)
    raise CloudError(
        f"verifying image '{image.name}' on AWS needs a runner that can reach the instance over SSH",
        hint="run the verify job inside the VPC (see docs/adopting.md), or verify with --cloud local",
    )
