"""EC2: Packer launches the build instance itself; verification gets EC2 instances with a key pair of its own."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from stamp.cloud.protocol import Cloud
from stamp.drivers import proc, runfiles
from stamp.drivers.ssh import banner_answers, login_problem, ssh_config_text
from stamp.errors import CloudError, StampError
from stamp.hosts.base import BuildMachine, CloudKind, Host, Launcher, Target, run_over_ssh
from stamp.tags import BUILD_ID_TAG

if TYPE_CHECKING:
    from stamp.catalog.load import Image


@dataclass(frozen=True)
class Ec2Target(Target):
    """AWS, through the standard credential chain."""

    kind: ClassVar[CloudKind] = "aws"

    def launcher(self, image: Image, *, env: Mapping[str, str] | None = None) -> Launcher:
        """EC2 instances in the image's build region, reachable as the environment says (see AwsLauncher)."""
        env = os.environ if env is None else env
        groups = tuple(g.strip() for g in env.get("STAMP_VERIFY_SECURITY_GROUP_IDS", "").split(",") if g.strip())
        return AwsLauncher(
            cloud=self.cloud,
            region=image.regions[0],
            instance_type=image.instance_type,
            # Names the key pair; the instances also carry the build's own stamp:build-id through their labels.
            key_id=f"{image.name}-{secrets.token_hex(4)}",
            security_group_ids=groups,
            private_ip=env.get("STAMP_VERIFY_PRIVATE_IP", "") in ("1", "true", "yes"),
        )

    def kept_login(self, image: Image, build_id: str, machine: BuildMachine | None, ssh_config: Path) -> list[str]:
        """The instance Packer launched and left (`-on-error=abort`), found by its build-ID tag."""
        region = image.regions[0]
        ids = [r.resource_id for r in self.cloud.list_tagged(region, BUILD_ID_TAG, build_id) if r.kind == "instance"]
        lines: list[str] = []
        for instance in self.cloud.describe_instances(region, ids) if ids else []:
            if instance.state in ("shutting-down", "terminated"):
                continue
            lines.append(f"instance {instance.instance_id} in {region} ({instance.state})")
            address = instance.public_ip or instance.private_ip
            if address:
                lines.append(f"ssh -F {ssh_config} {image.ssh_username}@{address}")
            lines.append(
                f"aws ssm start-session --target {instance.instance_id} --region {region}"
                "  (needs the SSM agent on the image and an instance profile that allows it)"
            )
        return lines


@dataclass
class AwsLauncher:
    """EC2 instances with a key pair made for this verification; the runner must reach them on port 22.

    Which network path that is depends on the organisation: `STAMP_VERIFY_SECURITY_GROUP_IDS` names security
    groups that admit the runner, and `STAMP_VERIFY_PRIVATE_IP=1` connects to private addresses (a runner
    inside the VPC). Both are read once, by `Ec2Target.launcher`.

    The private key and ssh_config live in `work_dir` when one is given, otherwise in a private run directory
    (tools/stamp/drivers/runfiles.py), never under build/; either way the key goes with the key pair, once the last
    instance is terminated or the first launch fails.
    """

    cloud: Cloud
    region: str
    instance_type: str
    key_id: str
    work_dir: Path | None = None
    security_group_ids: tuple[str, ...] = ()
    private_ip: bool = False
    timeout: float = 600.0
    wait_for_login: Callable[[Path, Host, float], None] | None = None
    _key_name: str | None = field(default=None, init=False)
    _run_dir: Path | None = field(default=None, init=False)
    _running: set[str] = field(default_factory=set, init=False)
    # Verification launches its instances side by side: one key pair for all of them, made and removed once.
    _key_lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    @property
    def ssh_config(self) -> Path:
        return self._files() / "ssh_config"

    def launch(self, ami_id: str, *, name: str, ssh_user: str, labels: dict[str, str]) -> Host:
        key_name = self._ensure_key_pair(labels)
        try:
            (instance,) = self.cloud.run_instances(
                self.region,
                ami_id,
                count=1,
                instance_type=self.instance_type,
                key_name=key_name,
                security_group_ids=self.security_group_ids,
                tags={"Name": name, **labels},
            )
        except BaseException:
            if not self._running:
                self._release_key()
            raise
        self._running.add(instance.instance_id)
        host = Host(instance.instance_id, "", 22, ssh_user)
        try:
            host = Host(instance.instance_id, self._wait_for_address(instance.instance_id), 22, ssh_user)
            (self.wait_for_login or wait_for_login)(self.ssh_config, host, self.timeout)
        except BaseException:
            # The caller never learns of this instance, so it is terminated here (and the key with the last one).
            with contextlib.suppress(StampError):
                self.terminate(host)
            raise
        return host

    def terminate(self, host: Host) -> None:
        try:
            self.cloud.terminate_instances(self.region, [host.instance_id])
        finally:
            self._running.discard(host.instance_id)
            if not self._running:
                self._release_key()

    def run(self, host: Host, command: str) -> str:
        return run_over_ssh(self.ssh_config, host, command)

    def _files(self) -> Path:
        """Where the private key and ssh_config go."""
        if self.work_dir is not None:
            return self.work_dir
        if self._run_dir is None:
            self._run_dir = runfiles.make_run_dir()
        return self._run_dir

    def _ensure_key_pair(self, tags: dict[str, str]) -> str:
        # Tagged like the instances (stamp:build-id), so the janitor finds a key pair a killed run left behind.
        with self._key_lock:
            return self._ensure_key_pair_locked(tags)

    def _ensure_key_pair_locked(self, tags: dict[str, str]) -> str:
        if self._key_name is None:
            files = self._files()
            files.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_key = files / "id_ed25519"
            try:
                if not private_key.exists():
                    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.key_id, "-f", str(private_key)])
                self.ssh_config.write_text(ssh_config_text(private_key, control_dir=files), encoding="utf-8")
                name = f"stamp-verify-{self.key_id}"
                public_key = private_key.with_suffix(".pub").read_text(encoding="utf-8")
                self.cloud.import_key_pair(self.region, name, public_key, tags=tags)
            except BaseException:
                self._remove_files()
                raise
            self._key_name = name
        return self._key_name

    def _release_key(self) -> None:
        """Delete the key pair and the private key: nothing may log in with it once verification is over."""
        with self._key_lock:
            name, self._key_name = self._key_name, None
            try:
                if name is not None:
                    self.cloud.delete_key_pair(self.region, name)
            finally:
                self._remove_files()

    def _remove_files(self) -> None:
        if self._run_dir is not None:
            runfiles.remove_run_dir(self._run_dir)
            self._run_dir = None
        elif self.work_dir is not None:
            for path in (self.work_dir / "id_ed25519", self.work_dir / "id_ed25519.pub", self.work_dir / "ssh_config"):
                path.unlink(missing_ok=True)

    def _wait_for_address(self, instance_id: str) -> str:
        deadline = time.monotonic() + self.timeout
        state = "unknown"
        while time.monotonic() < deadline:
            found = self.cloud.describe_instances(self.region, [instance_id])
            if found:
                state = found[0].state
                address = found[0].private_ip if self.private_ip else found[0].public_ip
                if state == "running" and address:
                    return address
                if state in ("shutting-down", "terminated", "stopped"):
                    break
            time.sleep(2)
        raise CloudError(
            f"instance {instance_id} in {self.region} is {state} without a"
            f" {'private' if self.private_ip else 'public'} address",
            hint="set STAMP_VERIFY_PRIVATE_IP=1 for a runner inside the VPC, or launch into a subnet with public IPs",
        )


def wait_for_login(config: Path, host: Host, timeout: float) -> None:
    """Wait for sshd's banner, then for a real login (cloud-init installs the key a little after sshd starts)."""
    deadline = time.monotonic() + timeout
    last = "no SSH banner yet"
    while time.monotonic() < deadline:
        if banner_answers(host.ssh_host, host.ssh_port):
            problem = login_problem(config, host.ssh_host, host.ssh_port, host.ssh_user)
            if problem is None:
                return
            last = problem
        time.sleep(3)
    raise CloudError(
        f"instance {host.instance_id} did not accept SSH logins as {host.ssh_user} at {host.ssh_host}:22"
        f" within {timeout:.0f} s: {last}",
        hint="check that the security groups admit this runner on port 22 (STAMP_VERIFY_SECURITY_GROUP_IDS)",
    )
