"""Start, find and stop the local cloud: a moto server, a container engine, a base image and an SSH key."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stamp.drivers import proc
from stamp.drivers.ssh import ssh_config_text
from stamp.errors import BuildError, CloudError, ProcessError
from stamp.local import aptcache
from stamp.local.baseimage import ensure_base_image, image_exists
from stamp.local.containers import remove_containers, remove_images, seed_image_for, stamp_images
from stamp.local.credentials import IAM_ENV, wants_iam
from stamp.local.engine import Engine, detect_engine
from stamp.local.moto_process import check_answers, pid_is_moto, start_moto, stop_pid
from stamp.local.removable_images import active_legacy_clouds, images_to_remove
from stamp.local.seeds import SeedImage, moto_amis, unique_seeds
from stamp.local.sources import debian_source_lines, read_apt_sources
from stamp.local.state_file import LocalCloud, cloud_id, locked, read_state, state_root, write_state


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


def status(repo_root: Path) -> LocalCloud | None:
    """The running local cloud, or None when it is not running (no state, or its moto server is gone).

    A moto server that is alive but does not answer (paused with SIGSTOP or Ctrl-Z, or hung) is a CloudError,
    not "not running": starting a second server would orphan it and overwrite the state of the cloud it holds.
    """
    cloud = read_state(state_root(repo_root))
    if cloud is None or not pid_is_moto(cloud.moto_pid):
        return None
    return cloud if check_answers(cloud) else None


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
    with locked(root):
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
            write_state(cloud)
            return cloud

        previous = read_state(root)
        engine = detect_engine(root)
        base_image = ensure_base_image(engine, root)
        private_key, public_key, config = ensure_ssh_key(root)
        wanted = unique_seeds(seeds)
        amis_path = _write_amis(root, moto_amis(wanted))
        seed_ids = tuple(seed.resolved_ami_id for seed in wanted)
        _tie_seeds(engine, base_image, _seed_names(root, seed_ids))
        endpoint, pid = start_moto(root, amis_path, enforce_iam=bool(enforce_iam))
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
        write_state(cloud)
        return cloud


def down(repo_root: Path) -> list[str]:
    """Stop moto and the apt cache, remove this cloud's containers and the container images it made; returns the
    names of the images removed.

    Images left by local clouds that are gone (another checkout's, one whose moto died) go too: their AMIs died
    with their moto server. The base image, the SSH key and the apt cache's files stay for the next `up`.
    """
    root = state_root(repo_root)
    if not root.is_dir():
        return []
    with locked(root):
        cloud = read_state(root)
        engine = cloud.engine_handle if cloud is not None else None
        if engine is None:
            try:
                engine = detect_engine(root)
            except CloudError:
                engine = None
        if engine is not None:
            remove_containers(engine, cloud_id(root))
        if cloud is not None and pid_is_moto(cloud.moto_pid):
            print(f"local cloud: stopping moto (pid {cloud.moto_pid})", file=sys.stderr)
            stop_pid(cloud.moto_pid)
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
