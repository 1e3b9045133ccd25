"""The local cloud through the command line: `down` removes the images it made, a restarted cloud's lost AMIs are
named, `stamp workspace`, user-data (scripts and #cloud-config through cloud-init), and builds using the apt cache.

Real moto, real containers, real Packer and cloud-init; each test's catalog seeds a vendor image of its own, so
the names these tests create and remove are never another test's (or another checkout's).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stamp import local
from stamp.catalog.load import load_catalog
from stamp.commands.record import ensure_may_record
from stamp.drivers import proc
from stamp.drivers.ssh import ssh_args
from stamp.errors import PolicyError
from stamp.hosts.target import seeds_for
from stamp.local.aptcache import running
from stamp.local.baseimage import APT_BUILD_CONF, image_exists
from stamp.local.containers import CLOUD_LABEL, IMAGE_REPO, seed_image_for, stamp_images

pytestmark = pytest.mark.e2e

OWNER = "136693071363"
ABSENT_AMI = "ami-0123456789abcdef0"

# `tiny` is released as the seeded vendor AMI itself (so `stamp launch` needs no build); `gone` names an AMI this
# cloud never had, as a workspace's catalog does after its local cloud restarted; `child` is built from `gone`.
CATALOG = """\
version: 1
defaults:
  regions: [us-east-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  tiny:
    description: a root image whose build uses apt
    source:
      filter: {{name: "{pattern}", owners: ["{owner}"]}}
    provision: [images/tiny/apt.sh]
  gone:
    description: a root image whose release this local cloud never saw
    source:
      filter: {{name: "{pattern}", owners: ["{owner}"]}}
    provision: [images/tiny/apt.sh]
  child:
    description: built from gone
    parent: gone
    provision: [images/child/hello.sh]
releases:
  tiny:
    - version: 1
      amis: {{us-east-1: {seed}}}
      built_at: "2026-11-20T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: tiny-1-abc123
      source: {{amis: {{us-east-1: {seed}}}}}
      verified: passed
      status: current
  gone:
    - version: 3
      amis: {{us-east-1: {absent}}}
      built_at: "2026-11-20T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: gone-3-abc123
      source: {{amis: {{us-east-1: {seed}}}}}
      verified: passed
      status: current
"""

# The build's apt goes through the local cloud's cache: the configuration is there while the build runs.
APT_SCRIPT = f"""\
#!/usr/bin/env bash
set -euo pipefail
grep -q 'Acquire::http::Proxy::' {APT_BUILD_CONF}
apt-get -o DPkg::Lock::Timeout=300 update
echo "built with the apt cache" > /etc/stamp-test-apt
"""


def stamp(*argv: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STAMP_CLOUD"}
    return subprocess.run(
        [sys.executable, "-m", "stamp", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_repo(root: Path) -> str:
    """A git repository with CATALOG and the scripts it names; returns the seeded vendor AMI's ID."""
    pattern = f"stamp-cli-test-{secrets.token_hex(4)}-*"
    root.mkdir(parents=True)
    (root / "catalog.yaml").write_text(CATALOG.format(pattern=pattern, owner=OWNER, seed=ABSENT_AMI, absent=ABSENT_AMI))
    seed = seeds_for(load_catalog(root / "catalog.yaml", check_files=False))[0].resolved_ami_id
    text = CATALOG.format(pattern=pattern, owner=OWNER, seed=seed, absent=ABSENT_AMI)
    (root / "catalog.yaml").write_text(text)
    for path, body in {
        "images/tiny/apt.sh": APT_SCRIPT,
        "images/child/hello.sh": "#!/usr/bin/env bash\necho hello\n",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@stamp.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "test catalog"], check=True)
    return seed


@dataclass(frozen=True)
class Repo:
    root: Path
    seed: str

    @property
    def cloud(self) -> local.LocalCloud:
        found = local.status(self.root)
        assert found is not None
        return found


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    root = tmp_path_factory.mktemp("cli") / "repo"
    seed = make_repo(root)
    up = stamp("local", "up", cwd=root)
    assert up.returncode == 0, up.stderr
    try:
        yield Repo(root, seed)
    finally:
        down = stamp("local", "down", cwd=root)
        assert down.returncode == 0, down.stderr


def on_instance(cloud: local.LocalCloud, ssh: str, command: str) -> str:
    """Run `command` over the `ssh -F … -p PORT user@127.0.0.1` line `stamp launch` printed."""
    found = re.search(r"-p (\d+) (\S+)@127\.0\.0\.1", ssh)
    assert found is not None, ssh
    port, user = int(found.group(1)), found.group(2)
    return proc.run(ssh_args(cloud.ssh_config, "127.0.0.1", port, user, command), timeout=60).stdout.strip()


def image_names(cloud: local.LocalCloud) -> dict[str, dict[str, str]]:
    """Every name the local clouds on this engine made (IMAGE_REPO, commits, seeds) -> its image's labels."""
    return {image.ref: image.labels for image in stamp_images(cloud.engine_handle)}


# -- 1. down removes the images the local cloud made ------------------------------------------------------------


def test_down_removes_every_image_the_cloud_made_and_those_of_dead_clouds(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    seed = make_repo(root)
    assert stamp("local", "up", cwd=root).returncode == 0
    cloud = local.status(root)
    assert cloud is not None and cloud.seeds == (seed,)
    builder = local.launch(cloud, seed, name="down-test", ssh_user="admin", wait=False)
    made = local.commit(cloud, builder.container_id, ["ami-0d0e000000000000a", "ami-0d0e000000000000b"])
    local.terminate(cloud, builder.container_id)
    ours = [made, f"{IMAGE_REPO}:ami-0d0e000000000000b", seed_image_for(cloud.cloud_id, seed)]
    assert set(ours) <= set(image_names(cloud))

    # Another local cloud (another checkout's) whose moto server died without a `down`: its AMIs died with it, so
    # the image it committed stands behind nothing any more.
    dead_root = tmp_path / "other-checkout"
    dead = local.up(dead_root, seeds_for(load_catalog(root / "catalog.yaml")))
    try:
        other = local.launch(dead, seed, name="down-test-other", ssh_user="admin", wait=False)
        orphan = local.commit(dead, other.container_id, ["ami-0d0e000000000000c"])
        local.terminate(dead, other.container_id)
        os.kill(dead.moto_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while local.status(dead_root) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert local.status(dead_root) is None

        down = stamp("local", "down", cwd=root)
        assert down.returncode == 0, down.stderr
        assert re.search(r"removed (\d+) container image", down.stderr), down.stderr
        left = image_names(cloud)
        assert [ref for ref in [*ours, orphan] if ref in left] == []
        assert [ref for ref, labels in left.items() if labels.get(CLOUD_LABEL) == cloud.cloud_id] == []
        assert [
            ref
            for ref in left
            if ref.startswith(IMAGE_REPO + ":") and ref.endswith(("0d0e000000000000a", "0d0e000000000000b"))
        ] == []
        # The base image stays: the next `up` must not spend ~45 s on it.
        assert image_exists(cloud.engine_handle, cloud.base_image)
        assert local.status(root) is None
        assert not running(cloud.apt_cache)
    finally:
        local.down(dead_root)
    assert seed_image_for(dead.cloud_id, seed) not in image_names(cloud)


# -- 2. a restarted local cloud: the AMIs a catalog names are gone ---------------------------------------------------


def test_lookup_and_build_name_amis_the_local_cloud_lost(repo: Repo) -> None:
    warning = (
        f"gone v3's AMI {ABSENT_AMI} (us-east-1) does not exist in this local cloud (a restarted local cloud loses"
        " its AMIs): run `stamp release gone` again"
    )
    lookup = stamp("lookup", "gone", "--cloud", "local", cwd=repo.root)
    assert lookup.returncode == 0, lookup.stderr
    assert lookup.stdout.split() == ["us-east-1", ABSENT_AMI]
    assert warning in lookup.stderr, lookup.stderr

    fine = stamp("lookup", "tiny", "--cloud", "local", "--region", "us-east-1", cwd=repo.root)
    assert (fine.returncode, fine.stdout.strip()) == (0, repo.seed), fine.stderr
    assert "does not exist" not in fine.stderr
    # On AWS, lookup stays a catalog read: no cloud is asked.
    aws = stamp("lookup", "gone", "--cloud", "aws", cwd=repo.root)
    assert aws.returncode == 0 and "warning" not in aws.stderr, aws.stderr

    build = stamp("build", "child", "--cloud", "local", "--out", str(repo.root / "build-child"), cwd=repo.root)
    assert build.returncode == 3, build.stderr
    assert warning in build.stderr, build.stderr
    assert f"gone's AMI {ABSENT_AMI} does not exist in this local cloud" in build.stderr
    assert [label for label in local.build_labels(repo.cloud).values() if label.startswith("child-")] == []


# -- 3. stamp workspace ----------------------------------------------------------------------------------------


def test_workspace_is_a_marked_copy_with_its_own_history(repo: Repo, tmp_path: Path) -> None:
    (repo.root / "untracked-note.txt").write_text("copied too: git would list it\n")
    target = tmp_path / "ws"
    made = stamp("workspace", str(target), cwd=repo.root)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(target.resolve())
    assert (target / "catalog.yaml").read_text() == (repo.root / "catalog.yaml").read_text()
    assert (target / "images/tiny/apt.sh").read_text() == APT_SCRIPT
    assert (target / "untracked-note.txt").is_file()
    assert (target / ".stamp" / "local-workspace").is_file()
    log = subprocess.run(["git", "-C", str(target), "log", "--format=%s"], capture_output=True, text=True, check=True)
    assert len(log.stdout.splitlines()) == 1 and log.stdout.startswith("stamp workspace: a copy of repo at ")
    status = subprocess.run(["git", "-C", str(target), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""
    source_log = subprocess.run(
        ["git", "-C", str(repo.root), "rev-list", "--count", "HEAD"], capture_output=True, text=True
    )
    assert source_log.stdout.strip() == "1"  # the source's history is not copied: the workspace's is its own
    assert subprocess.run(
        ["git", "-C", str(target), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    ).stdout.strip() == str(target.resolve())

    again = stamp("workspace", str(target), cwd=repo.root)
    assert again.returncode == 1
    assert "exists and is not an empty folder" in again.stderr
    assert (
        len(
            subprocess.run(
                ["git", "-C", str(target), "log", "--format=%s"], capture_output=True, text=True
            ).stdout.splitlines()
        )
        == 1
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    assert stamp("workspace", str(empty), cwd=repo.root).returncode == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert stamp("workspace", str(a_file), cwd=repo.root).returncode == 1
    # A workspace may record local-cloud releases; the repository it was copied from may not.
    ensure_may_record(load_catalog(target / "catalog.yaml"), "local")
    with pytest.raises(PolicyError, match="never recorded"):
        ensure_may_record(load_catalog(repo.root / "catalog.yaml"), "local")


# -- 4. user-data: scripts, and #cloud-config through cloud-init ----------------------------------------------------


def launch(repo: Repo, user_data: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path = repo.root / f"user-data-{secrets.token_hex(3)}"
    path.write_text(user_data)
    return stamp(
        "launch", "tiny", "--cloud", "local", "--user-data", str(path), "--format", "json", *extra, cwd=repo.root
    )


def test_cloud_config_runs_through_cloud_init(repo: Repo) -> None:
    user_data = """\
#cloud-config
write_files:
  - path: /etc/stamp-instance
    content: "index={{ index }} of {{ count }} host={{ hostname }}\\n"
runcmd:
  - echo "runcmd ran as $(id -un)"
"""
    done = launch(repo, user_data, "--count", "2")
    assert done.returncode == 0, done.stderr
    launched = json.loads(done.stdout)
    assert [item["index"] for item in launched] == [1, 2]
    for item in launched:
        assert on_instance(repo.cloud, item["ssh"], "cat /etc/stamp-instance") == (
            f"index={item['index']} of 2 host=tiny-1-{item['index']}"
        )
        assert "runcmd ran as root" in on_instance(repo.cloud, item["ssh"], "cat /var/log/cloud-init-output.log")
        assert on_instance(repo.cloud, item["ssh"], "cloud-init status") == "status: done"
        assert on_instance(repo.cloud, item["ssh"], "id -un") == "admin"
    # A failed stage's leftovers are not waited for (docs/local-cloud.md, "Waiting for SSH").
    units = "cloud-init-local cloud-init cloud-config cloud-final"
    shown = on_instance(repo.cloud, launched[0]["ssh"], f"for u in {units}; do systemctl show -P KillMode $u; done")
    assert shown.split() == ["process"] * 4


def test_a_shell_script_still_runs_without_cloud_init(repo: Repo) -> None:
    done = launch(repo, '#!/bin/sh\necho "script {{ index }} ran as $(id -un)"\n')
    assert done.returncode == 0, done.stderr
    (item,) = json.loads(done.stdout)
    assert on_instance(repo.cloud, item["ssh"], "cat /var/log/stamp-user-data.log") == "script 1 ran as root"
    assert on_instance(repo.cloud, item["ssh"], "cloud-init status") == "status: disabled"


def test_user_data_cloud_init_cannot_finish_is_an_error(repo: Repo) -> None:
    done = launch(repo, "#cloud-config\nbootcmd: [false]\n")
    assert done.returncode == 5, done.stderr
    assert "cloud-init did not finish the #cloud-config" in done.stderr, done.stderr
    assert "status error" in done.stderr and "/var/log/cloud-init-output.log" in done.stderr


@pytest.mark.parametrize("user_data", ["#include https://example.invalid/x\n", "echo no shebang\n"])
def test_other_user_data_is_refused_not_skipped(repo: Repo, user_data: str) -> None:
    before = set(local.list_instances(repo.cloud))
    done = launch(repo, user_data)
    assert done.returncode == 1, done.stderr
    assert "cannot run on the local cloud" in done.stderr
    assert "#cloud-config" in done.stderr and "#!" in done.stderr
    assert set(local.list_instances(repo.cloud)) == before


# -- 5. builds reach the Debian mirror through the local cloud's apt cache -------------------------------------------


def test_a_build_uses_the_apt_cache_and_the_image_does_not_keep_it(repo: Repo) -> None:
    cloud = repo.cloud
    assert cloud.apt_cache_url.startswith("http://") and cloud.apt_hosts
    log = cloud.root / "apt-cache" / "log" / "apt-cacher.log"
    before = log.read_text() if log.is_file() else ""
    out = repo.root / "build-tiny"
    build = stamp("build", "tiny", "--cloud", "local", "--out", str(out), cwd=repo.root, timeout=600)
    assert build.returncode == 0, build.stderr
    result = json.loads((out / "tiny" / "result.json").read_text())
    served = log.read_text()[len(before) :]
    assert [line for line in served.splitlines() if "InRelease" in line], served
    image = local.container_image_for(result["amis"]["us-east-1"])
    probe = proc.run(
        [
            cloud.engine,
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            f"cat /etc/stamp-test-apt; test ! -e {APT_BUILD_CONF} && echo no-apt-cache-config",
        ],
        env=cloud.engine_env,
        timeout=120,
    )
    assert probe.stdout.split("\n")[:2] == ["built with the apt cache", "no-apt-cache-config"], probe.stdout
