"""What verification needs from the machines it runs on: an instance reachable over SSH, and a launcher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Host:
    """An instance reachable over SSH."""

    instance_id: str
    ssh_host: str
    ssh_port: int
    ssh_user: str


class Launcher(Protocol):
    """Starts and stops instances for verification: containers locally, EC2 instances on AWS."""

    @property
    def ssh_config(self) -> Path: ...

    def launch(self, ami_id: str, *, name: str, ssh_user: str, labels: dict[str, str]) -> Host: ...

    def terminate(self, host: Host) -> None: ...

    def run(self, host: Host, command: str) -> str: ...
