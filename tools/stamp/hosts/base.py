"""What builds and checks need from the machines they run on: one `Target` per kind (hosts/ec2.py, hosts/local.py).

In the spirit of pytest-testinfra's backends: the base class says what every kind of machine must do and does
nothing where a kind needs nothing; each backend overrides only what differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from stamp.cloud.protocol import Cloud, Instance
from stamp.drivers import proc
from stamp.drivers.ssh import ssh_args

if TYPE_CHECKING:
    from stamp.catalog.load import Catalog, Image

CloudKind = Literal["aws", "local"]
# A step of a build's clean-up: what it removes (for the message when it fails), and how.
CleanupStep = tuple[str, Callable[[], None]]


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


@dataclass(frozen=True)
class BuildMachine:
    """What a target started for one build before Packer runs: the Packer variables that reach it (merged over
    the build's own), the seconds it took, and its ID for the clean-up (None where Packer starts the instance)."""

    variables: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    machine_id: str | None = None


@dataclass(frozen=True)
class Target(ABC):
    """The cloud one command works on (`cloud`), and the machines its builds and verifications run on."""

    cloud: Cloud
    kind: ClassVar[CloudKind]
    # Local-cloud AMIs exist on one machine only: their releases go only into a scratch workspace's catalog.
    records_only_in_workspaces: ClassVar[bool] = False
    # Whether a build from uncommitted changes may be recorded (flagged `dirty: true`) rather than refused.
    records_dirty_builds: ClassVar[bool] = False

    @property
    def packer_env(self) -> dict[str, str]:
        """Environment for the Packer process, beyond the runner's own (the local cloud's endpoint and keys)."""
        return {}

    def start_build(self, image: Image, build_id: str, *, source_ami: str, public_key: str) -> BuildMachine:
        """Prepare the machine Packer provisions; on EC2 Packer launches the instance itself."""
        return BuildMachine()

    def finish_build(self, machine: BuildMachine, amis: Mapping[str, str]) -> float:
        """After Packer registered `amis`: tie them to what was built; returns the seconds it took."""
        return 0.0

    def build_cleanup(self, build_id: str, machine: BuildMachine | None) -> list[CleanupStep]:
        """What to remove when the build ends, besides the key pair and security group every build has."""
        return []

    def adopt(self, build_id: str, amis: Mapping[str, str]) -> bool:
        """Whether AMIs an interrupted build registered can be launched as they are (a rerun then adopts them)."""
        return True

    @abstractmethod
    def launcher(self, image: Image, *, env: Mapping[str, str] | None = None) -> Launcher:
        """Instances for verifying `image`."""

    def leftover_machines(self, build_id: str | None) -> list[tuple[str, str]]:
        """(machine ID, build ID) of machines builds left outside the cloud API; only the local cloud has any."""
        return []

    def remove_machine(self, machine_id: str) -> None:
        """Removes one machine `leftover_machines` listed."""
        raise NotImplementedError(f"{self.kind} targets list no machines outside the cloud API")

    def forget_image(self, ami_id: str) -> None:
        """After an AMI was deregistered: drop what stood behind it outside the cloud API (nothing, on EC2)."""
        return

    def ensure_bucket(self, bucket: str, region: str) -> None:
        """Before `stamp record` stores artifacts in `bucket` (defaults.artifacts): nothing where the bucket is the
        adopter's (EC2: a missing one fails the upload, exit 5); the local cloud makes it in its moto server."""
        return

    def lost_parent_warnings(self, catalog: Catalog, images: Sequence[str]) -> list[str]:
        """Warnings for parent releases whose AMIs this cloud no longer has; only a restarted local cloud loses them."""
        return []

    def attach(self, instance: Instance, *, image: Image, hostname: str, user_data: str) -> str:
        """Make a launched instance reachable (`stamp launch`); returns how to log in, or "" where EC2 does it."""
        return ""

    def kept_login(self, image: Image, build_id: str, machine: BuildMachine | None, ssh_config: Path) -> list[str]:
        """How to open a shell on the machine a failed build left running (`stamp build --on-error keep`).

        `ssh_config` names the build's own private key, kept next to it. One line each; empty when no machine
        of the build is running.
        """
        return []


def run_over_ssh(config: Path, host: Host, command: str) -> str:
    return proc.run(
        ssh_args(config, host.ssh_host, host.ssh_port, host.ssh_user, command), echo=False, timeout=60
    ).stdout
