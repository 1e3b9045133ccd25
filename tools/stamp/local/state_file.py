"""The local cloud's state: what `up` started (LocalCloud), kept in `<repo>/.stamp/local/state.json`, and the lock
that serialises `up` and `down` on that folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stamp.local import aptcache
from stamp.local.engine import Engine

STATE_DIR = Path(".stamp") / "local"


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


def read_state(root: Path) -> LocalCloud | None:
    path = root / "state.json"
    if not path.is_file():
        return None
    try:
        return LocalCloud.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError):
        return None


def write_state(cloud: LocalCloud) -> None:
    path = cloud.root / "state.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cloud.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialise up/down on one state folder (parallel builds may all call `up`)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
