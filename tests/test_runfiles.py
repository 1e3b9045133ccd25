"""Private keys and ssh control sockets live in private per-run directories: never under build/, gone after the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from builders import commit_all
from conftest import REPO, MakeAmi, local_target
from fakes import FakeCloud
from stamp import cli, local
from stamp.catalog.load import load_catalog
from stamp.cloud.aws import AwsCloud
from stamp.commands import verify
from stamp.commands.build import build_image
from stamp.commands.verify import launched
from stamp.drivers import packer, runfiles
from stamp.drivers.ssh import ssh_config_text
from stamp.errors import BuildError, CloudError
from stamp.hosts.base import Host
from stamp.hosts.ec2 import AwsLauncher, Ec2Target
from stamp.hosts.local import LocalLauncher
from stamp.local.cloud import ensure_ssh_key
from stamp.local.instances import Container

VENDOR_OWNER = "136693071363"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_keys_under(root: Path) -> list[Path]:
    """Files named like an SSH key, or holding one."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and (path.name.startswith("id_") or b"PRIVATE KEY" in path.read_bytes())
    )


def _option(config: Path | str, name: str) -> str | None:
    text = config.read_text(encoding="utf-8") if isinstance(config, Path) else config
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == name:
            return value.strip().strip('"')
    return None


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $XDG_RUNTIME_DIR of the test's own, so gc sees only the run directories made here."""
    path = tmp_path / "runtime"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    return path


# -- the run directory itself ---------------------------------------------------------------------------------------


def test_a_run_dir_is_private_names_its_process_and_is_gone_after_the_block_error_or_not(runtime_dir: Path) -> None:
    with runfiles.run_dir() as path:
        assert path.parent == runtime_dir and path.name.startswith(runfiles.PREFIX)
        assert _mode(path) == 0o700 and path.stat().st_uid == os.getuid()
        assert (path / runfiles.OWNER_FILE).read_text().split()[0] == str(os.getpid())
        (path / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert not path.exists()

    with pytest.raises(RuntimeError), runfiles.run_dir() as failing:
        raise RuntimeError("the build failed")
    assert not failing.exists()
    assert list(runtime_dir.iterdir()) == []


def test_without_a_private_xdg_runtime_dir_run_dirs_go_to_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with runfiles.run_dir() as path:
        assert path.parent == Path(tempfile.gettempdir())
        assert _mode(path) == 0o700


def _child(script: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(env if env is not None else os.environ),
    )


def test_a_sigterm_to_the_cli_removes_the_run_dir_and_so_does_a_normal_exit_without_a_with(runtime_dir: Path) -> None:
    sigtermed = _child(
        """
        import time
        from stamp.drivers import runfiles
        from stamp.cli import _sigterm_raises
        with _sigterm_raises(), runfiles.run_dir() as path:
            (path / "id_ed25519").write_text("secret")
            print(path, flush=True)
            time.sleep(60)
        """
    )
    assert sigtermed.stdout is not None
    made = Path(sigtermed.stdout.readline().strip())
    assert (made / "id_ed25519").is_file()
    sigtermed.send_signal(signal.SIGTERM)
    assert sigtermed.wait(timeout=30) != 0
    assert not made.exists()

    forgotten = _child("from stamp.drivers import runfiles\nprint(runfiles.make_run_dir(), flush=True)\n")
    assert forgotten.stdout is not None
    left = Path(forgotten.stdout.readline().strip())
    assert forgotten.wait(timeout=30) == 0
    assert left.name.startswith(runfiles.PREFIX) and not left.exists()


# -- stamp gc ---------------------------------------------------------------------------------------------------


def _killed_run_dir() -> Path:
    """A run directory, with a private key, whose process was SIGKILLed: no `finally` and no atexit ran."""
    child = _child(
        """
        import time
        from stamp.drivers import runfiles
        path = runfiles.make_run_dir()
        (path / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\\n")
        print(path, flush=True)
        time.sleep(60)
        """
    )
    assert child.stdout is not None
    path = Path(child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert (path / "id_ed25519").is_file()
    return path


def test_stamp_gc_removes_the_run_dirs_of_killed_processes_and_keeps_live_ones_and_dry_run_only_lists(
    runtime_dir: Path,
    aws: AwsCloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(REPO / "tests" / "fixtures" / "catalog", tmp_path / "repo")
    catalog = str(tmp_path / "repo" / "good.yaml")
    monkeypatch.setattr("stamp.hosts.target.target_for", lambda kind, catalog: Ec2Target(aws))
    killed = _killed_run_dir()
    # A pid now used by another process (this one): its start time is not the one the directory recorded.
    reused = runtime_dir / f"{runfiles.PREFIX}reused"
    reused.mkdir(mode=0o700)
    (reused / runfiles.OWNER_FILE).write_text(f"{os.getpid()} 1\n")
    (reused / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with runfiles.run_dir() as live:
        capsys.readouterr()
        assert cli.main(["gc", "--catalog", catalog, "--dry-run"]) == 0
        dry = capsys.readouterr().err
        assert str(killed) in dry and str(reused) in dry and str(live) not in dry
        assert killed.is_dir() and reused.is_dir(), "--dry-run changes nothing"

        assert cli.main(["gc", "--catalog", catalog]) == 0
        done = capsys.readouterr().err
        assert f"removed: {killed}" in done and f"removed: {reused}" in done
        assert not killed.exists() and not reused.exists()
        assert (live / runfiles.OWNER_FILE).is_file(), "a running process keeps its run directory"
    assert list(runtime_dir.iterdir()) == []


# -- ssh_config ---------------------------------------------------------------------------------------------------


def test_ssh_configs_keep_the_master_socket_in_a_private_run_dir_never_directly_in_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = Path(tempfile.mkdtemp(prefix="sr-"))  # a short path: the socket's must fit in 107 bytes
    try:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(short))
        with runfiles.run_dir() as run:
            control = _option(ssh_config_text(tmp_path / "id_ed25519", control_dir=run), "ControlPath")
            assert control is not None
            assert Path(control).parent == run and _mode(run) == 0o700
            assert Path(control).parent != Path(tempfile.gettempdir())
    finally:
        shutil.rmtree(short)

    # Too long a directory for a socket: no multiplexing at all rather than a broken ssh.
    assert _option(ssh_config_text(tmp_path / "k", control_dir=tmp_path / ("d" * 80)), "ControlPath") is None

    # The local cloud's long-lived config (for people and login checks) has no socket in a shared directory.
    _, _, config = ensure_ssh_key(tmp_path / "cloud")
    control = _option(config, "ControlPath")
    assert control is None or _mode(Path(control).parent) == 0o700, control


# -- builds (Packer faked) and verification (moto) ----------------------------------------------------------------


@dataclass
class SpyPacker:
    """Stands in for `packer.build`: notes where the private key is and how it is kept, then registers AMIs."""

    cloud: FakeCloud
    fail: bool = False
    key: Path | None = None
    key_dir_mode: int = 0

    def build(self, directory: Path, *, vars: Mapping[str, str], **_: object) -> None:
        self.key = Path(vars["ssh_private_key_file"])
        assert "PRIVATE KEY" in self.key.read_text()
        self.key_dir_mode = _mode(self.key.parent)
        if self.fail:
            raise BuildError("packer build failed (exit 1)")
        builds = []
        for region in ("us-east-1", "eu-west-1"):
            image = self.cloud.add_image(region, f"base-{vars['build_id']}", tags={"stamp:build-id": vars["build_id"]})
            builds.append(f"{region}:{image.ami_id}")
        run = {"packer_run_uuid": "r", "artifact_id": ",".join(builds), "custom_data": {"build_id": vars["build_id"]}}
        (directory / "manifest.json").write_text(json.dumps({"last_run_uuid": "r", "builds": [run]}))


@pytest.mark.parametrize("fails", [False, True], ids=["success", "failure"])
def test_a_builds_private_key_is_in_a_private_run_dir_never_under_build_and_gone_after(
    runtime_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    shutil.copytree(REPO / "tests" / "fixtures" / "catalog", tmp_path / "repo")
    catalog = load_catalog(tmp_path / "repo" / "good.yaml")
    cloud = FakeCloud()
    cloud.add_image("us-east-1", "debian-12-amd64-20261101-1234", owner_id=VENDOR_OWNER)
    spy = SpyPacker(cloud, fail=fails)
    monkeypatch.setattr("stamp.commands.build.packer.detect_version", lambda *a, **k: (1, 6, 6))
    monkeypatch.setattr("stamp.commands.build.packer.build", spy.build)
    build_root = tmp_path / "build"

    if fails:
        with pytest.raises(BuildError):
            build_image(catalog, "base", Ec2Target(cloud), build_root=build_root)
    else:
        build_image(catalog, "base", Ec2Target(cloud), build_root=build_root)

    assert spy.key is not None
    assert not spy.key.is_relative_to(build_root.resolve()) and spy.key.parent.parent == runtime_dir
    assert spy.key_dir_mode == 0o700
    assert not spy.key.parent.exists(), "the key and its run directory go with the build"
    assert _private_keys_under(build_root) == []


def test_aws_verification_keys_are_never_under_build_and_go_with_the_last_instance_or_a_failed_launch(
    runtime_dir: Path, aws: AwsCloud, make_ami: MakeAmi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a relative build/ would land
    shutil.copytree(REPO / "tests" / "fixtures" / "catalog", tmp_path / "repo")
    image = load_catalog(tmp_path / "repo" / "good.yaml").images["base"]
    ami_id = make_ami("us-east-1", "base-verify")
    launcher = Ec2Target(aws).launcher(image)
    assert isinstance(launcher, AwsLauncher)
    seen: list[tuple[Path, int]] = []

    def login(config: Path, host: Host, timeout: float) -> None:
        key = Path(_option(config, "IdentityFile") or "")
        seen.append((key, _mode(key.parent)))

    launcher.wait_for_login = login
    with launched(launcher, ami_id, names=["v-1", "v-2"], ssh_user="admin", build_id="base-20261126-abc"):
        assert len(seen) == 2 and seen[0] == seen[1]
        key, mode = seen[0]
        assert key.is_file() and key.parent.parent == runtime_dir and mode == 0o700
        assert [p for p in _private_keys_under(tmp_path) if not p.is_relative_to(runtime_dir)] == []
    assert not key.parent.exists()

    def refuse(config: Path, host: Host, timeout: float) -> None:
        seen.append((Path(_option(config, "IdentityFile") or ""), 0))
        raise CloudError("no login")

    launcher.wait_for_login = refuse
    with pytest.raises(CloudError), launched(launcher, ami_id, names=["v-3"], ssh_user="admin", build_id="b"):
        pass
    assert not seen[-1][0].parent.exists(), "a launch that fails takes its key with it"
    assert not [p for p in aws.list_tagged("us-east-1", value="b") if p.kind == "key-pair"]
    assert _private_keys_under(tmp_path) == []
    assert list(runtime_dir.iterdir()) == []


def test_local_verification_ssh_config_is_in_a_private_run_dir_that_goes_with_the_last_instance(
    runtime_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _, _ = ensure_ssh_key(tmp_path / "cloud")
    cloud = local.LocalCloud(
        root=tmp_path / "cloud",
        endpoint_url="http://127.0.0.1:1",
        moto_pid=1,
        engine="podman",
        engine_env={},
        base_image="localhost/stamp/debian-base:bookworm",
        ssh_private_key=key,
        ssh_public_key=key.with_suffix(".pub"),
        ssh_config=tmp_path / "cloud" / "ssh" / "ssh_config",
    )
    started: list[str] = []

    def fake_launch(cloud: local.LocalCloud, ami_id: str, *, name: str, ssh_user: str, **_: object) -> Container:
        started.append(name)
        return Container(f"c-{name}", name, ami_id, "127.0.0.1", 40022, ssh_user)

    monkeypatch.setattr("stamp.hosts.local.local.launch", fake_launch)
    monkeypatch.setattr(
        "stamp.hosts.local.local.terminate", lambda cloud, container_id: started.remove(container_id[2:])
    )
    launcher = LocalLauncher(cloud)
    with launched(launcher, "ami-1", names=["a", "b"], ssh_user="admin", build_id="x") as hosts:
        config = launcher.ssh_config
        assert config.parent.parent == runtime_dir and _mode(config.parent) == 0o700
        assert _option(config, "IdentityFile") == str(key), "the local cloud's own key, kept under .stamp/"
        control = _option(config, "ControlPath")
        assert control is None or Path(control).parent == config.parent
        launcher.terminate(hosts.pop(0))
        assert config.is_file(), "kept while an instance runs"
    assert started == [] and not config.parent.exists()


# -- end to end on the local cloud: real Packer, real ssh, testinfra -----------------------------------------------

CATALOG = """\
version: 1
defaults:
  regions: [us-east-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  keyed:
    description: a tiny image
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/keyed/provision.sh]
    tests: images/keyed/tests
releases: {}
"""
IMAGE_TEST = """\
def test_keyed_was_provisioned(host):
    assert host.file("/etc/stamp-keyed").exists
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch repository with one tiny image, on its own local cloud (as tests/reliability/test_kill.py)."""
    root = tmp_path_factory.mktemp("keys")
    (root / "catalog.yaml").write_text(CATALOG)
    (root / "images" / "keyed" / "tests").mkdir(parents=True)
    (root / "images" / "keyed" / "provision.sh").write_text("#!/bin/sh\nset -e\ntouch /etc/stamp-keyed\n")
    (root / "images" / "keyed" / "tests" / "test_keyed.py").write_text(IMAGE_TEST)
    commit_all(root)
    target = local_target(load_catalog(root / "catalog.yaml"))
    try:
        yield root
    finally:
        assert target.local is not None
        built = root / "build" / "keyed" / "result.json"
        amis = json.loads(built.read_text())["amis"].values() if built.is_file() else []
        local.down(root)
        for ami_id in amis:  # the engine is shared: its images of AMIs made here go too
            target.local.engine_handle.run(
                ["rmi", local.container_image_for(ami_id)], what="test clean-up", check=False, echo=False
            )


@pytest.mark.e2e
def test_build_and_verify_on_the_local_cloud_leave_no_private_key_in_build_and_no_run_dir(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, tuple[Path, int]] = {}
    real_build, real_pytest_args = packer.build, verify.pytest_args

    def spy_build(
        directory: Path, *, env: Mapping[str, str] | None, vars: Mapping[str, str], log: Path, image: str
    ) -> None:
        key = Path(vars["ssh_private_key_file"])
        seen["build key"] = (key, _mode(key.parent))
        real_build(directory, env=env, vars=vars, log=log, image=image)

    def spy_pytest_args(tests_dir: Path, host: Host, *, ssh_config: Path, junit: Path) -> list[str]:
        seen["verify config"] = (ssh_config, _mode(ssh_config.parent))
        control = _option(ssh_config, "ControlPath")
        if control is not None:
            seen["control socket dir"] = (Path(control).parent, _mode(Path(control).parent))
        return real_pytest_args(tests_dir, host, ssh_config=ssh_config, junit=junit)

    monkeypatch.setattr("stamp.commands.build.packer.build", spy_build)
    monkeypatch.setattr("stamp.commands.verify.pytest_args", spy_pytest_args)
    build = workspace / "build"
    common = ["--cloud", "local", "--catalog", str(workspace / "catalog.yaml"), "--out", str(build)]

    assert cli.main(["build", "keyed", *common]) == 0
    assert cli.main(["verify", "keyed", *common]) == 0

    assert _private_keys_under(build) == []
    key, key_mode = seen["build key"]
    config, config_mode = seen["verify config"]
    assert key_mode == config_mode == 0o700
    for path in (key, config):
        assert not path.is_relative_to(workspace) and path.parent.name.startswith(runfiles.PREFIX), path
        assert not path.parent.exists(), f"{path.parent} outlived the command"
    if "control socket dir" in seen:
        assert seen["control socket dir"] == (config.parent, 0o700)
    # The local cloud's own key stays for the cloud's life, under .stamp/ (never an artifact) and private.
    own = workspace / ".stamp" / "local" / "ssh" / "id_ed25519"
    assert _mode(own) == 0o600 and _mode(own.parent) == 0o700
