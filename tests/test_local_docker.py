"""The local cloud on Docker instead of Podman: a short pipeline (build, then verify, of one small image) through the
command line, with STAMP_LOCAL_ENGINE=docker and DOCKER_HOST naming a dockerd.

The fixture uses the Docker engine DOCKER_HOST (or Docker's default socket) reaches; when none answers, it starts
Debian's dockerd itself (data kept in the temporary folder between runs, so images are reused) and stops it after.
The `docker` first on PATH may be a client with no engine behind it (docs/facts.md, Podman): every call here and
in stamp names the daemon through DOCKER_HOST.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stamp import local
from stamp.catalog.load import load_catalog
from stamp.hosts.target import seeds_for

pytestmark = pytest.mark.e2e

DOCKERD_HOME = Path(tempfile.gettempdir()) / "stamp-test-dockerd"

CATALOG = """\
version: 1
defaults:
  regions: [us-east-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  small:
    description: a small image built and verified on Docker
    source:
      filter: {{name: "{pattern}", owners: ["136693071363"]}}
    provision: [images/small/setup.sh]
    tests: images/small/tests
releases: {{}}
"""

SETUP = """\
#!/usr/bin/env bash
set -euo pipefail
apt-get -o DPkg::Lock::Timeout=300 update
echo "built on docker" > /etc/stamp-small
"""

TESTS = """\
def test_the_build_left_its_mark(host):
    assert host.file("/etc/stamp-small").content_string == "built on docker\\n"


def test_systemd_runs_sshd(host):
    assert host.service("ssh").is_running
"""


def docker(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def docker_host() -> Iterator[str]:
    """A DOCKER_HOST whose daemon answers: the one configured, else a dockerd this fixture starts (and stops)."""
    configured = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if docker({"DOCKER_HOST": configured}, "info").returncode == 0:
        yield configured
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    assert Path(dockerd).is_file(), "Debian's docker.io is not installed: `sudo apt-get install -y docker.io`"
    DOCKERD_HOME.mkdir(exist_ok=True)
    host = f"unix://{DOCKERD_HOME / 'docker.sock'}"
    log = (DOCKERD_HOME / "dockerd.log").open("ab")
    daemon = subprocess.Popen(
        [
            dockerd,
            f"--data-root={DOCKERD_HOME / 'data'}",
            f"--exec-root={DOCKERD_HOME / 'exec'}",
            f"--pidfile={DOCKERD_HOME / 'dockerd.pid'}",
            f"--host={host}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while docker({"DOCKER_HOST": host}, "info").returncode != 0:
            assert daemon.poll() is None, (DOCKERD_HOME / "dockerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "dockerd did not answer within 60 s"
            time.sleep(0.5)
        yield host
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()


def stamp(root: Path, env: dict[str, str], *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("STAMP_CLOUD", "DOCKER_HOST")} | env
    return subprocess.run(
        [sys.executable, "-m", "stamp", *argv],
        cwd=root,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def host_cgroups() -> tuple[str, list[str]]:
    """How the host's /sys/fs/cgroup is mounted, and what is in it."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    options = next((line.split()[3] for line in mounts if line.split()[1] == "/sys/fs/cgroup"), "")
    return options, sorted(path.name for path in Path("/sys/fs/cgroup").iterdir())


def test_build_and_verify_on_docker(tmp_path: Path, docker_host: str) -> None:
    # systemd in a container once remounted the host's cgroup tmpfs read-only through a bind mount: never again.
    cgroups = host_cgroups()
    root = tmp_path / "repo"
    (root / "images/small/tests").mkdir(parents=True)
    (root / "catalog.yaml").write_text(CATALOG.format(pattern=f"stamp-docker-test-{secrets.token_hex(4)}-*"))
    (root / "images/small/setup.sh").write_text(SETUP)
    (root / "images/small/tests/test_small.py").write_text(TESTS)
    env = {"STAMP_LOCAL_ENGINE": "docker", "DOCKER_HOST": docker_host}
    try:
        up = stamp(root, env, "local", "up")
        assert up.returncode == 0, up.stderr
        cloud = local.status(root)
        assert cloud is not None
        assert (cloud.engine, cloud.engine_env) == ("docker", {"DOCKER_HOST": docker_host})
        assert cloud.apt_cache_url, "the apt cache serves Docker's bridge too"

        build = stamp(root, env, "build", "small", "--cloud", "local")
        assert build.returncode == 0, build.stderr
        result = json.loads((root / "build" / "small" / "result.json").read_text())
        ami = result["amis"]["us-east-1"]
        # The image behind the AMI is Docker's (Podman is not asked for anything).
        assert docker({"DOCKER_HOST": docker_host}, "image", "inspect", local.container_image_for(ami)).returncode == 0

        verify = stamp(root, env, "verify", "small", "--cloud", "local")
        assert verify.returncode == 0, verify.stderr
        assert json.loads((root / "build" / "small" / "result.json").read_text())["verified"] == "passed"
        seed = seeds_for(load_catalog(root / "catalog.yaml"))[0].resolved_ami_id
        assert seed in cloud.seeds
    finally:
        down = stamp(root, env, "local", "down")
    assert down.returncode == 0, down.stderr
    assert host_cgroups() == cgroups
    listed = docker({"DOCKER_HOST": docker_host}, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert [ref for ref in listed if ref.endswith(ami)] == []
    assert (
        docker(
            {"DOCKER_HOST": docker_host},
            "ps",
            "--all",
            "--quiet",
            "--filter",
            f"label=stamp.local.cloud={cloud.cloud_id}",
        ).stdout.split()
        == []
    )
