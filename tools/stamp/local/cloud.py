"""Start, find and stop the local cloud: a moto server, a container engine, a base image and an SSH key."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stamp.drivers import proc
from stamp.drivers.ssh import ssh_config_text
from stamp.errors import BuildError, CloudError, ProcessError, UsageError
from stamp.local import aptcache
from stamp.local.baseimage import ensure_base_image, image_exists
from stamp.local.containers import (
    CLOUD_LABEL,
    LABEL,
    LIFE_LABEL,
    SEED_REPO,
    STATE_LABEL,
    StampImage,
    remove_containers,
    remove_images,
    seed_image_for,
    stamp_images,
)
from stamp.local.engine import Engine, detect_engine
from stamp.local.seeds import SeedImage, moto_amis, unique_seeds
from stamp.local.sources import debian_source_lines, read_apt_sources

STATE_DIR = Path(".stamp") / "local"
MOTO_START_TIMEOUT = 30.0
# How long a running (not paused) moto server that does not answer gets before it is reported hung: long enough
# for one busy with other requests on a loaded 2-core machine (10 s proved too short in the full suite).
MOTO_ANSWER_GRACE = 30.0
# Images an older stamp made carry no state label; past this age `down` takes them as left behind.
LEGACY_IMAGE_AGE = timedelta(hours=1)
# The local cloud's own throwaway keys: what every command signs with, unless CREDENTIALS_ENV says otherwise.
BUILTIN_KEYS = ("testing", "testing")
# `env`: sign with the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead (an IAM user of the local
# cloud, to run as a role); unset or `builtin`: BUILTIN_KEYS. docs/local-cloud.md, IAM enforcement.
CREDENTIALS_ENV = "STAMP_LOCAL_CREDENTIALS"
# `enforce`: a local cloud started now checks requests against IAM (motoserver.enforce_iam); `off` or unset: it
# does not. Set, it must match a running cloud's; unset, any running cloud is reused.
IAM_ENV = "STAMP_LOCAL_IAM"


@dataclass(frozen=True)
class LocalCloud:
    """What `up` started, persisted in `<repo>/.stamp/local/state.json`."""

    root: Path
    endpoint_url: str
    moto_pid: int
    engine: str
    engine_env: dict[str, str]
    base_image: str
    ssh_private_key: Path
    ssh_public_key: Path
    ssh_config: Path
    seeds: tuple[str, ...] = field(default=())
    # Whether its moto server checks requests against IAM (IAM_ENV when it started).
    enforce_iam: bool = False
    # The apt cache build containers use (aptcache.py): its URL and pid, and the mirror hosts it stands in for.
    apt_cache_url: str = ""
    apt_cache_pid: int = 0
    apt_hosts: tuple[str, ...] = field(default=())

    @property
    def cloud_id(self) -> str:
        """Labels this cloud's containers, so two checkouts sharing one engine never touch each other's."""
        return cloud_id(self.root)

    @property
    def engine_handle(self) -> Engine:
        """The engine this cloud runs on."""
        return Engine(self.engine, self.engine_env)

    @property
    def apt_cache(self) -> aptcache.AptCache | None:
        """The apt cache this cloud runs, if it runs one."""
        return aptcache.AptCache(self.apt_cache_url, self.apt_cache_pid) if self.apt_cache_url else None

    def build_apt_config(self) -> str | None:
        """The apt configuration for a build container (the apt cache as proxy), or None without a cache."""
        cache = self.apt_cache
        return aptcache.build_apt_config(cache, self.apt_hosts) if cache is not None and self.apt_hosts else None

    def to_json(self) -> dict[str, Any]:
        """The state file's content."""
        return {
            "root": str(self.root),
            "endpoint_url": self.endpoint_url,
            "moto_pid": self.moto_pid,
            "engine": self.engine,
            "engine_env": self.engine_env,
            "base_image": self.base_image,
            "ssh_private_key": str(self.ssh_private_key),
            "ssh_public_key": str(self.ssh_public_key),
            "ssh_config": str(self.ssh_config),
            "seeds": list(self.seeds),
            "enforce_iam": self.enforce_iam,
            "apt_cache_url": self.apt_cache_url,
            "apt_cache_pid": self.apt_cache_pid,
            "apt_hosts": list(self.apt_hosts),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalCloud:
        """Read the state file's content back."""
        return cls(
            root=Path(data["root"]),
            endpoint_url=str(data["endpoint_url"]),
            moto_pid=int(data["moto_pid"]),
            engine=str(data["engine"]),
            engine_env={str(k): str(v) for k, v in data["engine_env"].items()},
            base_image=str(data["base_image"]),
            ssh_private_key=Path(data["ssh_private_key"]),
            ssh_public_key=Path(data["ssh_public_key"]),
            ssh_config=Path(data["ssh_config"]),
            seeds=tuple(str(s) for s in data.get("seeds", [])),
            enforce_iam=bool(data.get("enforce_iam", False)),
            apt_cache_url=str(data.get("apt_cache_url", "")),
            apt_cache_pid=int(data.get("apt_cache_pid", 0)),
            apt_hosts=tuple(str(h) for h in data.get("apt_hosts", [])),
        )


def state_root(repo_root: Path) -> Path:
    """`<repo>/.stamp/local`, absolute."""
    return (repo_root / STATE_DIR).resolve()


def cloud_id(root: Path) -> str:
    """A short stable ID for the local cloud whose state lives in `root`."""
    return hashlib.sha256(str(root.resolve()).encode("utf-8")).hexdigest()[:12]


def credentials(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The access key and secret stamp signs the local cloud's requests with (CREDENTIALS_ENV)."""
    env = os.environ if environ is None else environ
    mode = env.get(CREDENTIALS_ENV, "")
    if mode in ("", "builtin"):
        return BUILTIN_KEYS
    if mode != "env":
        raise UsageError(f"{CREDENTIALS_ENV}={mode}: expected env or builtin")
    key, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if not key or not secret:
        raise UsageError(
            f"{CREDENTIALS_ENV}=env needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            hint="set them to an access key of a user in the local cloud's IAM, or unset " + CREDENTIALS_ENV,
        )
    return key, secret


def wants_iam(environ: Mapping[str, str] | None = None) -> bool | None:
    """Whether the local cloud should enforce IAM (IAM_ENV): True, False, or None when the variable is unset."""
    mode = (os.environ if environ is None else environ).get(IAM_ENV, "")
    if mode not in ("", "off", "enforce"):
        raise UsageError(f"{IAM_ENV}={mode}: expected enforce or off")
    return None if not mode else mode == "enforce"


def aws_env(cloud: LocalCloud) -> dict[str, str]:
    """Environment for boto3 and Packer to talk to the local cloud, signing with `credentials()`.

    No AWS_MAX_ATTEMPTS: Packer reads it as its waiter attempt count, not as API retries.
    """
    key, secret = credentials()
    return {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": cloud.endpoint_url,
        # Static keys are given; this stops SDKs probing an instance metadata service that is not there.
        "AWS_EC2_METADATA_DISABLED": "true",
        "STAMP_CLOUD": "local",
    }


def ensure_ssh_key(root: Path) -> tuple[Path, Path, Path]:
    """The ed25519 key pair every local instance accepts, generated once, and its ssh_config."""
    ssh_dir = root / "ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    private_key = ssh_dir / "id_ed25519"
    public_key = ssh_dir / "id_ed25519.pub"
    if not (private_key.is_file() and public_key.is_file()):
        private_key.unlink(missing_ok=True)
        public_key.unlink(missing_ok=True)
        try:
            proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stamp-local", "-f", str(private_key)])
        except ProcessError as exc:
            raise CloudError(
                f"local cloud: generating the SSH key {private_key} failed: {exc}",
                hint="install the OpenSSH client (`sudo apt-get install -y openssh-client`), then retry",
            ) from exc
    private_key.chmod(0o600)
    config = ssh_dir / "ssh_config"
    # The local cloud's own key stays here for the cloud's life: .stamp/ is never collected as an artifact.
    # This config is for people and for login checks: no ssh master socket (verification writes its own
    # config with one, in a private per-run directory: tools/stamp/hosts/local.py).
    text = ssh_config_text(private_key)
    if not config.is_file() or config.read_text(encoding="utf-8") != text:
        config.write_text(text, encoding="utf-8")
    return private_key, public_key, config


def moto_answers(endpoint_url: str, timeout: float = 2.0) -> bool:
    """Whether the moto server's dashboard answers (Packer would retry ~50 s against a dead endpoint)."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _pid_is_moto(pid: int) -> bool:
    """Whether `pid` is alive and is our moto server (not an unrelated process that reused the pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"stamp.local.motoserver" in cmdline.read_bytes()
        except OSError:
            return False
    return True


def _read_state(root: Path) -> LocalCloud | None:
    path = root / "state.json"
    if not path.is_file():
        return None
    try:
        return LocalCloud.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError):
        return None


def _write_state(cloud: LocalCloud) -> None:
    path = cloud.root / "state.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cloud.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise up/down on one state folder (parallel builds may all call `up`)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def status(repo_root: Path) -> LocalCloud | None:
    """The running local cloud, or None when it is not running (no state, or its moto server is gone).

    A moto server that is alive but does not answer (paused with SIGSTOP or Ctrl-Z, or hung) is a CloudError,
    not "not running": starting a second server would orphan it and overwrite the state of the cloud it holds.
    """
    cloud = _read_state(state_root(repo_root))
    if cloud is None or not _pid_is_moto(cloud.moto_pid):
        return None
    return cloud if _check_answers(cloud) else None


def _process_state(pid: int) -> str | None:
    """The one-letter state of `pid` in /proc (`T` stopped, `t` traced, `Z` zombie…), or None if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _check_answers(cloud: LocalCloud) -> bool:
    """True once the live moto server answers, False if it died meanwhile (a kill is not instant); a busy one gets
    MOTO_ANSWER_GRACE, then a CloudError."""
    pid, url = cloud.moto_pid, cloud.endpoint_url
    deadline = time.monotonic() + MOTO_ANSWER_GRACE
    while True:
        paused = _process_state(pid) in ("T", "t")
        if paused or time.monotonic() > deadline:
            break
        if moto_answers(url, timeout=min(MOTO_ANSWER_GRACE, 3.0)):
            return True
        if not _pid_is_moto(pid) or not _pid_alive(pid):
            return False
        time.sleep(0.2)
    how = (
        f"it is paused (stopped by a signal): `kill -CONT {pid}` resumes it, or restart it with"
        if paused
        else "it is hung:"
    )
    raise CloudError(
        f"the local cloud's EC2 API at {url} (moto, pid {pid}) does not answer; {how} "
        "`stamp local down && stamp local up` (every AMI built in it is lost)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Path, lines: int = 15) -> str:
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _start_moto(root: Path, amis_path: Path, *, enforce_iam: bool = False) -> tuple[str, int]:
    """Start the moto server in its own session (it outlives stamp) and wait until it answers."""
    log = root / "moto.log"
    last_error = ""
    for _attempt in range(3):
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        child = proc.start(
            [
                sys.executable,
                "-m",
                "stamp.local.motoserver",
                "--port",
                str(port),
                *(["--enforce-iam"] if enforce_iam else []),
            ],
            env={"MOTO_AMIS_PATH": str(amis_path)},
            log=log,
            new_session=True,
        )
        deadline = time.monotonic() + MOTO_START_TIMEOUT
        while time.monotonic() < deadline:
            if moto_answers(endpoint, timeout=1.0):
                return endpoint, child.pid
            if child.poll() is not None:
                break
            time.sleep(0.1)
        if child.poll() is None:
            child.kill()
            child.wait()
            last_error = f"it did not answer on {endpoint}/moto-api/ within {MOTO_START_TIMEOUT:.0f} s"
            break
        # Most likely another process took the port between choosing it and binding it: try another.
        last_error = f"it exited with code {child.returncode}"
    raise CloudError(
        f"local cloud: the moto server did not start ({last_error})\n{_log_tail(log)}",
        hint=f"see {log}; check that moto is installed in stamp's environment (`pip install 'moto[server]'`)",
    )


def _seed_running(cloud: LocalCloud, seeds: Sequence[SeedImage]) -> LocalCloud:
    """Add seeds the running server does not have yet, without restarting it (that would lose every AMI)."""
    new = [seed for seed in unique_seeds(seeds) if seed.resolved_ami_id not in cloud.seeds]
    if not new:
        return cloud
    request = urllib.request.Request(  # noqa: S310
        f"{cloud.endpoint_url}/stamp-local/seed",
        data=json.dumps(moto_amis(new)).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise CloudError(
            f"local cloud: adding vendor images to the running moto server failed: {exc}",
            hint="`stamp local down` then `stamp local up` restarts it with every seed (built AMIs are lost)",
        ) from exc
    seeded = (*cloud.seeds, *(seed.resolved_ami_id for seed in new))
    _write_amis(cloud.root, [*_read_amis(cloud.root), *moto_amis(new)])
    return _replace_seeds(cloud, seeded)


def _replace_seeds(cloud: LocalCloud, seeds: tuple[str, ...]) -> LocalCloud:
    data = cloud.to_json()
    data["seeds"] = list(seeds)
    return LocalCloud.from_json(data)


def _with_apt_cache(cloud: LocalCloud, cache: aptcache.AptCache | None, hosts: Sequence[str]) -> LocalCloud:
    data = cloud.to_json()
    data |= {
        "apt_cache_url": cache.url if cache else "",
        "apt_cache_pid": cache.pid if cache else 0,
        "apt_hosts": list(hosts) if cache else [],
    }
    return LocalCloud.from_json(data)


def _mirror_hosts() -> list[str]:
    """The Debian mirror hosts the base image's apt sources name (the machine's own sources)."""
    try:
        return aptcache.mirror_hosts(debian_source_lines(read_apt_sources(Path("/etc/apt"))))
    except BuildError:
        return []


def _start_apt_cache(cloud: LocalCloud, previous: LocalCloud | None = None) -> LocalCloud:
    """The cloud with an apt cache: the one the stopped cloud before it in this folder left running, or a new one.
    Without apt-cacher-ng, or with STAMP_LOCAL_APT_CACHE=off, it has none and builds reach the mirror directly."""
    if previous is not None and aptcache.running(previous.apt_cache) and aptcache.wanted():
        return _with_apt_cache(cloud, previous.apt_cache, previous.apt_hosts)
    if previous is not None:
        aptcache.stop(previous.apt_cache_pid)
    hosts = _mirror_hosts()
    cache = aptcache.start(cloud.engine_handle, cloud.root, base_image=cloud.base_image) if hosts else None
    return _with_apt_cache(cloud, cache, hosts)


def _keep_apt_cache(cloud: LocalCloud) -> LocalCloud:
    """A running cloud whose apt cache stopped (killed, or the machine restarted) gets a new one."""
    if cloud.apt_cache is None or aptcache.running(cloud.apt_cache):
        return cloud
    aptcache.stop(cloud.apt_cache_pid)
    return _start_apt_cache(cloud)


def _read_amis(root: Path) -> list[dict[str, Any]]:
    path = root / "amis.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, list) else []


def _write_amis(root: Path, entries: list[dict[str, Any]]) -> Path:
    path = root / "amis.json"
    path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return path


def _tie_seeds(engine: Engine, base_image: str, names: Sequence[str]) -> None:
    """Give the base image this cloud's name for each seeded vendor AMI (`seed_image_for`): launches of a seed
    start from it, and `down` removes the names without touching another cloud's."""
    for name in names:
        engine.run(["tag", base_image, name], what=f"tying {name.rpartition(':')[2]} to the base image")


def _seed_names(root: Path, ami_ids: Sequence[str]) -> list[str]:
    return [seed_image_for(cloud_id(root), ami_id) for ami_id in ami_ids]


def up(repo_root: Path, seeds: Sequence[SeedImage]) -> LocalCloud:
    """Start the local cloud, or reuse the running one; either way every seed is served afterwards.

    A running, healthy cloud is reused as is (same port, every AMI built so far kept); seeds it lacks are
    added to the running server. A cloud whose moto died is started afresh: moto keeps state in memory, so
    AMIs built before are gone (their container images stay in the engine, unused, until a `down`). Its apt
    cache (aptcache.py) is started with it, or restarted when it stopped.
    """
    root = state_root(repo_root)
    enforce_iam = wants_iam()
    with _locked(root):
        current = status(repo_root)
        if current is not None:
            if enforce_iam is not None and current.enforce_iam != enforce_iam:
                said = "enforces" if current.enforce_iam else "does not enforce"
                raise CloudError(
                    f"the running local cloud {said} IAM, and {IAM_ENV} asks otherwise",
                    hint=f"`stamp local down`, then start it again with the {IAM_ENV} you want (built AMIs are lost)",
                )
            engine = current.engine_handle
            if not image_exists(engine, current.base_image):
                ensure_base_image(engine, root)
            # Rewrites a config an older stamp left (it put the ssh master socket in the shared temp dir).
            ensure_ssh_key(root)
            cloud = _keep_apt_cache(_seed_running(current, seeds))
            _tie_seeds(engine, cloud.base_image, _seed_names(root, cloud.seeds))
            _write_state(cloud)
            return cloud

        previous = _read_state(root)
        engine = detect_engine(root)
        base_image = ensure_base_image(engine, root)
        private_key, public_key, config = ensure_ssh_key(root)
        wanted = unique_seeds(seeds)
        amis_path = _write_amis(root, moto_amis(wanted))
        seed_ids = tuple(seed.resolved_ami_id for seed in wanted)
        _tie_seeds(engine, base_image, _seed_names(root, seed_ids))
        endpoint, pid = _start_moto(root, amis_path, enforce_iam=bool(enforce_iam))
        cloud = LocalCloud(
            root=root,
            endpoint_url=endpoint,
            moto_pid=pid,
            engine=engine.name,
            engine_env=dict(engine.env),
            base_image=base_image,
            ssh_private_key=private_key,
            ssh_public_key=public_key,
            ssh_config=config,
            seeds=seed_ids,
            enforce_iam=bool(enforce_iam),
        )
        cloud = _start_apt_cache(cloud, previous)
        _write_state(cloud)
        return cloud


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a paused server acts on the SIGTERM only once it runs again
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    # A child of ours that exited stays a zombie until reaped: count it as gone.
    with contextlib.suppress(ChildProcessError):
        waited, _status = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(repo_root: Path) -> list[str]:
    """Stop moto and the apt cache, remove this cloud's containers and the container images it made; returns the
    names of the images removed.

    Images left by local clouds that are gone (another checkout's, one whose moto died) go too: their AMIs died
    with their moto server. The base image, the SSH key and the apt cache's files stay for the next `up`.
    """
    root = state_root(repo_root)
    if not root.is_dir():
        return []
    with _locked(root):
        cloud = _read_state(root)
        engine = cloud.engine_handle if cloud is not None else None
        if engine is None:
            try:
                engine = detect_engine(root)
            except CloudError:
                engine = None
        if engine is not None:
            remove_containers(engine, cloud_id(root))
        if cloud is not None and _pid_is_moto(cloud.moto_pid):
            print(f"local cloud: stopping moto (pid {cloud.moto_pid})", file=sys.stderr)
            _stop_pid(cloud.moto_pid)
        if cloud is not None:
            aptcache.stop(cloud.apt_cache_pid)
        (root / "state.json").unlink(missing_ok=True)
        if engine is None:
            return []
        try:
            images = stamp_images(engine)
            doomed = images_to_remove(images, root, active_legacy_clouds(engine), now=datetime.now(UTC))
            return remove_images(engine, doomed)
        except CloudError as exc:
            print(f"local cloud: the container images it made could not be removed: {exc.message}", file=sys.stderr)
            return []


def _life_is_running(state: Path, life: str) -> bool:
    """Whether the local cloud whose state folder is `state` runs, with the moto server (pid) `life`."""
    cloud = _read_state(state)
    return cloud is not None and str(cloud.moto_pid) == life and _pid_is_moto(cloud.moto_pid)


def active_legacy_clouds(engine: Engine) -> set[str]:
    """Cloud IDs of containers an older stamp started (no state label): their images may still be in use."""
    ids = engine.run(
        ["ps", "--all", "--quiet", "--filter", f"label={LABEL}=1"], what="listing containers", check=False, echo=False
    ).stdout.split()
    if not ids:
        return set()
    done = engine.run(["container", "inspect", *ids], what="inspecting containers", check=False, echo=False)
    try:
        data = json.loads(done.stdout or "[]")
    except ValueError:
        data = []
    labels = [(item.get("Config") or {}).get("Labels") or {} for item in data]
    return {str(label.get(CLOUD_LABEL, "")) for label in labels if STATE_LABEL not in label}


def images_to_remove(images: Sequence[StampImage], root: Path, legacy_active: set[str], *, now: datetime) -> list[str]:
    """The names `down` removes for the local cloud in `root`: every image it made, in any of its lives; images of
    local clouds that are gone; and what an older stamp left, unless a cloud of that stamp may still use it.

    Seeded AMIs have a name per cloud (SEED_REPO/<cloud id>), so one cloud's `down` never takes another's.
    """
    this = cloud_id(root)
    doomed: list[str] = []
    for image in images:
        labels = image.labels
        owner = labels.get(CLOUD_LABEL, "")
        if image.ref.startswith(f"{SEED_REPO}/"):
            if image.ref.startswith(f"{SEED_REPO}/{this}:"):
                doomed.append(image.ref)
        elif owner == this:
            doomed.append(image.ref)
        elif STATE_LABEL in labels:
            if not _life_is_running(Path(labels[STATE_LABEL]), labels.get(LIFE_LABEL, "")):
                doomed.append(image.ref)
        elif legacy_active and (not labels or owner in legacy_active):
            continue  # an older stamp's cloud has containers: it may launch these
        elif not labels or (image.created is not None and now - image.created > LEGACY_IMAGE_AGE):
            # An older stamp's name for a seed (on its base image: no labels), or an image it committed.
            doomed.append(image.ref)
    return doomed
