"""Faults give clean answers, never tracebacks: each case runs through the CLI and checks the exit code, the one
message, and that nothing was harmed (the catalog's bytes, a running local cloud's state, no instance launched)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stamp.commands.build
import stamp.hosts.target
import stamp.local
import stamp.local.instances
from conftest import REPO
from fakes import FakeCloud
from stamp.catalog.results import BuildResult, write_result
from stamp.cli import main
from stamp.drivers.buildlock import lock_path
from stamp.errors import BuildError
from stamp.hosts.base import CloudKind, Target
from stamp.hosts.ec2 import Ec2Target
from stamp.local import cloud as local_cloud
from stamp.local import moto_process, state_file
from stamp.local.engine import Engine
from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG

TESTS = Path(__file__).resolve().parent
BASE_AMIS = {"us-east-1": "ami-0123456789abcdef0", "eu-west-1": "ami-0fedcba9876543210"}

CATALOG = """\
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  base:
    description: Base image
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/base/setup.sh]
    tests: images/base/tests
  web:
    description: Web image
    parent: base
    provision: [images/web/install.sh]
    files: images/web/files
    tests: images/web/tests
releases:
  base:
    - version: 1
      amis: {us-east-1: ami-0123456789abcdef0, eu-west-1: ami-0fedcba9876543210}
      built_at: "2026-11-20T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: base-1-abc123
      source: {amis: {us-east-1: ami-0aaaaaaaaaaaaaaaa}}
      verified: passed
      status: current
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch repository holding the catalog and every script and folder it names; the current folder."""
    root = tmp_path / "repo"
    for script in ("images/base/setup.sh", "images/web/install.sh"):
        (root / script).parent.mkdir(parents=True, exist_ok=True)
        (root / script).write_text("#!/usr/bin/env bash\nset -euo pipefail\necho hi\n", encoding="utf-8")
    for folder in ("images/base/tests", "images/web/tests", "images/web/files"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "keep.txt").write_text("x\n", encoding="utf-8")
    (root / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    monkeypatch.chdir(root)
    monkeypatch.delenv("STAMP_CLOUD", raising=False)
    return root


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCloud:
    """The cloud every command of the test talks to (no AWS, no local cloud)."""
    cloud = FakeCloud()

    def target_for(kind: CloudKind, catalog: Any) -> Target:
        return Ec2Target(cloud)

    monkeypatch.setattr(stamp.hosts.target, "target_for", target_for)
    return cloud


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`stamp ARGV` through `cli.main`: its exit code and its stderr; a traceback fails the test."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def built_web(fake: FakeCloud, out: Path, build_id: str = "web-20261121150000-abcdef") -> BuildResult:
    """A verified build result of `web` in `out`, its AMIs in the fake cloud tagged as stamp's own."""
    tags = {BUILD_ID_TAG: build_id, VERIFIED_TAG: VERIFIED}
    amis = {region: fake.add_image(region, f"web-{build_id}", tags=tags).ami_id for region in BASE_AMIS}
    result = BuildResult.model_validate(
        {
            "image": "web",
            "build_id": build_id,
            "cloud": "aws",
            "amis": amis,
            "source": {"image": "base", "version": 1},
            "commit": "0a1b2c3d",
            "started_at": "2026-11-21T15:00:00Z",
            "finished_at": "2026-11-21T15:09:00Z",
            "packer_version": "1.6.6",
            "verified": "passed",
        }
    )
    write_result(out, result)
    return result


def temp_files(repo: Path) -> list[str]:
    return sorted(p.name for p in repo.iterdir() if p.name.endswith(".tmp"))


# A `stamp ARGV` in a child process, with the fake cloud of `built_web` (its AMIs made again from the result):
# for faults a test cannot inject in-process, a file-size limit or a SIGKILL.
CHILD = """\
import json, os, resource, signal, sys
sys.path.insert(0, {tests!r})
from fakes import FakeCloud
import stamp.hosts.ec2
import stamp.hosts.target
from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG
from stamp.cli import main
from stamp.hosts.ec2 import Ec2Target

result = json.load(open({result!r}))
cloud = FakeCloud()
tags = {{BUILD_ID_TAG: result["build_id"], VERIFIED_TAG: VERIFIED}}
for region, ami_id in result["amis"].items():
    cloud.add_image(region, "web", ami_id=ami_id, tags=tags)
stamp.hosts.target.target_for = lambda kind, catalog: stamp.hosts.ec2.Ec2Target(cloud)
{setup}
sys.exit(main({argv!r}))
"""


def run_child(repo: Path, out: Path, argv: list[str], setup: str) -> subprocess.CompletedProcess[str]:
    script = CHILD.format(tests=str(TESTS), result=str(out / "web" / "result.json"), setup=setup, argv=argv)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("STAMP_CLOUD", None)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False
    )


# -- 1. a full disk or a file-size limit while recording ----------------------------------------------------------


def test_a_full_disk_while_recording_exits_1_in_one_line_and_leaves_the_catalog_intact(
    repo: Path, fake: FakeCloud, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    built_web(fake, out)
    before = (repo / "catalog.yaml").read_bytes()
    real_fdopen = os.fdopen

    class FullDisk:
        """The temp file's handle, on a disk that is full."""

        def __init__(self, fd: int) -> None:
            self.handle = real_fdopen(fd, "wb")

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        if Path(f"/proc/self/fd/{fd}").readlink().name.endswith(".tmp"):
            return FullDisk(fd)
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)
    code, err = run(["record", "--out", str(out)], capsys)
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert "catalog.yaml" in err and "No space left on device (ENOSPC)" in err, err
    assert "left unchanged" in err and "free space" in err, err
    assert (repo / "catalog.yaml").read_bytes() == before
    assert temp_files(repo) == []


def test_a_file_size_limit_while_recording_exits_1_in_one_line_and_leaves_the_catalog_intact(
    repo: Path, fake: FakeCloud, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    built_web(fake, out)
    before = (repo / "catalog.yaml").read_bytes()
    # A real EFBIG: the new catalog is longer than the limit; SIGXFSZ ignored, so the write fails instead.
    limit = len(before) + 16
    setup = (
        f"signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nresource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))"
    )
    done = run_child(repo, out, ["record", "--out", str(out)], setup)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "catalog.yaml" in lines[0] and "File too large (EFBIG)" in lines[0], lines[0]
    assert "left unchanged" in lines[0] and "ulimit -f" in lines[0], lines[0]
    assert (repo / "catalog.yaml").read_bytes() == before
    assert temp_files(repo) == []


# -- 2. what a killed record leaves ------------------------------------------------------------------------------


def test_the_temp_file_of_a_killed_record_is_removed_by_the_next_record(
    repo: Path, fake: FakeCloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    built_web(fake, out)
    before = (repo / "catalog.yaml").read_bytes()
    # Killed between writing the temp file and renaming it over the catalog.
    killed = run_child(
        repo, out, ["record", "--out", str(out)], "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = temp_files(repo)
    assert len(left) == 1 and left[0].startswith(".catalog.yaml."), left
    assert (repo / "catalog.yaml").read_bytes() == before
    (repo / ".catalog.yaml.notes.tmp").write_text("not stamp's\n", encoding="utf-8")

    code, err = run(["record", "--out", str(out)], capsys)
    assert code == 0, err
    assert "recorded web version 1" in err
    assert temp_files(repo) == [".catalog.yaml.notes.tmp"]  # only the stale temp file record made is removed
    assert (repo / "catalog.yaml").read_bytes() != before


def test_the_temp_files_of_a_killed_record_are_git_ignored() -> None:
    found = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", "--quiet", ".catalog.yaml.a1b2c3d4.tmp"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 128:
        pytest.skip(f"not a git work tree: {found.stderr.strip()}")
    assert found.returncode == 0, ".catalog.yaml.*.tmp is not in .gitignore"


# -- 3. user-data template errors -----------------------------------------------------------------------------------


@pytest.fixture
def launchable(repo: Path, fake: FakeCloud) -> FakeCloud:
    """The fake cloud, holding the AMI of base's current release, so that `stamp launch base` can run."""
    fake.add_image("us-east-1", "base-1", ami_id=BASE_AMIS["us-east-1"])
    return fake


@pytest.mark.parametrize(
    ("template", "line", "message"),
    [
        ("#!/bin/sh\n{% if index == 3 %}\necho {{ 1/0 }}\n{% endif %}\n", 3, "for instance 3 of 5: division by zero"),
        ("#!/bin/sh\necho {{ hostname }}\necho {{ nope }}\n", 3, "for instance 1 of 5: 'nope' is undefined"),
        ("#!/bin/sh\n{% if index %}\necho {{ hostname }}\n", 3, "Unexpected end of template"),
        ("#!/bin/sh\necho {{ index | no_such_filter }}\n", 2, "No filter named 'no_such_filter'"),
        (
            "#!/bin/sh\n{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}\n",
            2,
            "more than 100000 steps",
        ),
        ("#!/bin/sh\n{% macro f() %}{{ f() }}{% endmacro %}\n{{ f() }}\n", 2, "maximum recursion depth"),
        ("#!/bin/sh\necho {{ 'x' * 10**10 }}\n", 2, "`*` would make 10000000000 items"),
    ],
    ids=["error-in-one-index", "undefined", "syntax", "unknown-filter", "nested-loops", "recursion", "huge-string"],
)
def test_a_user_data_template_error_exits_1_naming_file_and_line_before_any_instance_is_launched(
    template: str,
    line: int,
    message: str,
    launchable: FakeCloud,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user_data = tmp_path / "user-data.j2"
    user_data.write_text(template, encoding="utf-8")
    code, err = run(["launch", "base", "--count", "5", "--user-data", str(user_data)], capsys)
    assert code == 1, err
    assert f"{user_data}:{line}: user-data template" in err, err
    assert message in err, err
    assert "no instance was launched" in err, err
    assert launchable.calls["RunInstances"] == 0


def test_a_good_user_data_template_launches_every_instance(
    launchable: FakeCloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user_data = tmp_path / "user-data.j2"
    loops = "{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}"  # 90,000 steps: fine
    user_data.write_text(f"#!/bin/sh\n{loops}echo {{{{ hostname }}}} {{{{ index }}}}/{{{{ count }}}}\n")
    code, err = run(["launch", "base", "--count", "5", "--user-data", str(user_data)], capsys)
    assert code == 0, err
    assert launchable.calls["RunInstances"] == 5


# -- 4. a paused or hung moto server ---------------------------------------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """The local cloud with a real moto server but no container engine, base image or SSH key behind it;
    returns the list `start_moto` appends each server it starts to. Every server is killed afterwards."""
    started: list[str] = []
    real_start = moto_process.start_moto

    def start_moto(root: Path, amis_path: Path, *, enforce_iam: bool) -> tuple[str, int]:
        endpoint, pid = real_start(root, amis_path, enforce_iam=enforce_iam)
        started.append(f"{endpoint} {pid}")
        return endpoint, pid

    keys = tmp_path / "keys"
    monkeypatch.setattr(local_cloud, "start_moto", start_moto)
    monkeypatch.setattr(local_cloud, "detect_engine", lambda root: Engine("podman", {}))
    monkeypatch.setattr(local_cloud, "ensure_base_image", lambda engine, root: "localhost/stamp-test-base")
    monkeypatch.setattr(local_cloud, "image_exists", lambda engine, image: True)
    monkeypatch.setattr(local_cloud, "_tie_seeds", lambda engine, base, ami_ids: None)
    monkeypatch.setattr(local_cloud, "ensure_ssh_key", lambda root: (keys / "id", keys / "id.pub", keys / "config"))
    monkeypatch.setattr(stamp.local, "list_instances", lambda cloud, *args: [])
    monkeypatch.setattr(stamp.local.cloud, "remove_containers", lambda engine, cloud_id: None)
    yield started
    for line in started:
        pid = int(line.split()[1])
        if moto_process.pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _state(repo: Path) -> Path:
    return repo / ".stamp" / "local" / "state.json"


def test_a_paused_moto_server_is_reported_and_never_replaced(
    repo: Path, no_engine: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(["local", "up"], capsys)
    assert code == 0, err
    first = json.loads(_state(repo).read_text(encoding="utf-8"))
    pid, endpoint = first["moto_pid"], first["endpoint_url"]

    code, err = run(["local", "up"], capsys)  # up twice: the same server, the same state
    assert code == 0, err
    assert json.loads(_state(repo).read_text(encoding="utf-8")) == first
    assert len(no_engine) == 1

    os.kill(pid, signal.SIGSTOP)
    try:
        state = _state(repo).read_bytes()
        for argv in (["local", "up"], ["local", "status"], ["publish", "base", "--cloud", "local", "--dry-run"]):
            clock = time.monotonic()
            code, err = run(argv, capsys)
            assert code == 5, err
            assert len(err.strip().splitlines()) == 1, err
            assert f"the local cloud's EC2 API at {endpoint} (moto, pid {pid}) does not answer" in err, err
            assert "paused" in err and "`stamp local down && stamp local up`" in err, err
            assert time.monotonic() - clock < 10
            assert _state(repo).read_bytes() == state
            assert len(no_engine) == 1  # no second server
    finally:
        os.kill(pid, signal.SIGCONT)

    code, err = run(["local", "up"], capsys)  # resumed: the same cloud again, nothing lost
    assert code == 0, err
    assert json.loads(_state(repo).read_text(encoding="utf-8")) == first

    os.kill(pid, signal.SIGSTOP)
    code, err = run(["local", "down"], capsys)  # down stops a paused server too
    assert code == 0, err
    assert not moto_process.pid_alive(pid)
    assert not _state(repo).exists()


def test_a_hung_moto_server_is_reported_and_left_alone(
    repo: Path, no_engine: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alive, named like the server, but answering nothing: hung.
    hung = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "stamp.local.motoserver"], start_new_session=True
    )
    try:
        with socket_free_port() as port:
            root = state_file.state_root(repo)
            root.mkdir(parents=True)
            cloud = state_file.LocalCloud(
                root=root,
                endpoint_url=f"http://127.0.0.1:{port}",
                moto_pid=hung.pid,
                engine="podman",
                engine_env={},
                base_image="localhost/stamp-test-base",
                ssh_private_key=root / "id",
                ssh_public_key=root / "id.pub",
                ssh_config=root / "config",
            )
            state_file.write_state(cloud)
            state = _state(repo).read_bytes()
            monkeypatch.setattr(moto_process, "MOTO_ANSWER_GRACE", 1.0)
            code, err = run(["local", "up"], capsys)
        assert code == 5, err
        assert f"at http://127.0.0.1:{port} (moto, pid {hung.pid}) does not answer; it is hung" in err, err
        assert _state(repo).read_bytes() == state
        assert no_engine == []
        assert hung.poll() is None
    finally:
        hung.kill()
        hung.wait()


@contextlib.contextmanager
def socket_free_port() -> Iterator[int]:
    """A port of 127.0.0.1 nothing listens on (bound, not listening, for the block)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# -- 5. two builds of one image ----------------------------------------------------------------------------------------


def _past_the_lock(*args: Any, **kwargs: Any) -> Any:
    """Stands in for what a build does after taking its lock, so that no test ever runs Packer."""
    raise BuildError("test: the build got past its lock")


def test_a_second_build_of_the_same_image_exits_6_build_in_progress(
    repo: Path, fake: FakeCloud, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stamp.commands.build, "resolve_source", _past_the_lock)
    lock = lock_path(repo / "build", "web")
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'%d\\n' % os.getpid())\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        code, err = run(["build", "web"], capsys)
        assert code == 6, err
        assert "build in progress" in err and f"(pid {holder.pid})" in err and "build/web/.build.lock" in err, err
        assert "got past" not in err
    finally:
        holder.kill()
        holder.wait()
    for _ in range(2):  # the lock is free again, and a build releases it when it ends
        code, err = run(["build", "web"], capsys)
        assert code == 3 and "got past its lock" in err, err


def test_a_second_build_in_the_same_process_is_refused_too(
    repo: Path, fake: FakeCloud, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stamp.commands.build, "resolve_source", _past_the_lock)
    lock = lock_path(repo / "build", "web")
    lock.parent.mkdir(parents=True)
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code, err = run(["build", "web"], capsys)
    assert code == 6 and "build in progress" in err, err


# -- 6. symlinks into private folders -------------------------------------------------------------------------------

PRIVATE = {
    ".git": ".git/config",
    ".stamp": ".stamp/local/ssh/id_ed25519",
    ".venv": ".venv/bin/activate",
    "build": "build/web/packer.log",
}


@pytest.mark.parametrize("private", sorted(PRIVATE))
@pytest.mark.parametrize(
    ("key", "link", "line"),
    [
        ("images.web.files", "images/web/files/secret", "files: images/web/files"),
        ("images.web.tests", "images/web/tests/conftest.py", "tests: images/web/tests"),
        ("images.web.provision[0]", "images/web/install.sh", "provision: [images/web/install.sh]"),
    ],
    ids=["files", "tests", "provision"],
)
def test_a_symlink_into_a_private_folder_is_refused_by_validate(
    private: str, key: str, link: str, line: str, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = repo / PRIVATE[private]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("secret\n", encoding="utf-8")
    (repo / link).unlink(missing_ok=True)
    (repo / link).symlink_to(os.path.relpath(target, (repo / link).parent))
    code, err = run(["validate"], capsys)
    assert code == 1, err
    number = next(i for i, text in enumerate(CATALOG.splitlines(), 1) if line in text)
    assert f"catalog.yaml:{number}:" in err and f"{key}:" in err, err
    assert f"{private}/" in err and "never uploads or runs" in err, err


def test_a_files_folder_that_is_a_symlink_into_stamp_state_is_refused(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / ".stamp" / "local" / "ssh").mkdir(parents=True)
    files = repo / "images" / "web" / "files"
    (files / "keep.txt").unlink()
    files.rmdir()
    files.symlink_to("../../.stamp/local/ssh")
    code, err = run(["validate"], capsys)
    assert code == 1, err
    assert "images.web.files: 'images/web/files' leads into .stamp/" in err, err


def test_symlinks_within_the_repository_are_still_accepted(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "images" / "web" / "files" / "setup.sh").symlink_to("../../base/setup.sh")
    code, err = run(["lookup", "base", "--region", "us-east-1"], capsys)
    assert code == 0, err
