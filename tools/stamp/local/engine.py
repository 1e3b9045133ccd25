"""The container engine (Podman, else Docker), found by running it, and the one way stamp calls it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stamp.drivers import proc
from stamp.errors import CloudError, ProcessError

# Rootful Podman on some VMs fails out of the box with crun (setrlimit RLIMIT_NOFILE / RLIMIT_NPROC not
# permitted, then "cgroups in hybrid mode not supported"); runc and explicit ulimits fix all three
# (docs/facts.md, Podman).
CONTAINERS_CONF = """\
[engine]
runtime = "runc"

[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
"""
# `STAMP_LOCAL_ENGINE=docker` (or `podman`) picks the engine; without it, the first that answers `info` does.
ENGINE_SWITCH = "STAMP_LOCAL_ENGINE"
ENGINES = ("podman", "docker")
# Tries of a read the engine failed for no reason of the thing read: Podman fails a lookup while another process
# holds its storage lock, and a listing while another process removes an image ("image not known").
READ_ATTEMPTS = 3


@dataclass(frozen=True)
class Engine:
    """A working container engine: its command and the environment every call to it needs."""

    name: str
    env: Mapping[str, str]

    def run(
        self,
        args: Sequence[str],
        *,
        what: str,
        check: bool = True,
        echo: bool = True,
        timeout: float | None = 300,
    ) -> proc.Completed:
        """Run `<engine> args…`; a failure becomes a CloudError saying `what` failed."""
        try:
            return engine_call(self.name, self.env, args, check=check, echo=echo, timeout=timeout)
        except ProcessError as exc:
            raise CloudError(
                f"local cloud: {what} failed: {exc}",
                hint=f"check that `{self.name} info` works; `stamp local down` then `stamp local up` resets"
                " the local cloud",
            ) from exc

    def read(
        self, args: Sequence[str], *, what: str, answers: Callable[[proc.Completed], bool] = lambda _: False
    ) -> proc.Completed:
        """Run a read-only `<engine> args…` until it succeeds, or fails in a way `answers` takes as the answer itself
        ("no such image"); other failures are retried (READ_ATTEMPTS tries, 0.5 s and 1 s apart), then raised."""
        why = ""
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(0.5 * attempt)
            done = self.run(args, what=what, check=False, echo=False)
            if done.returncode == 0 or answers(done):
                return done
            why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise CloudError(
            f"local cloud: {what} failed {READ_ATTEMPTS} times: {why}",
            hint=f"check that `{self.name} info` works, then run the command again",
        )


def engine_call(
    name: str,
    env: Mapping[str, str],
    args: Sequence[str],
    *,
    check: bool = True,
    echo: bool = True,
    timeout: float | None = 300,
) -> proc.Completed:
    """Run one engine command through stamp.drivers.proc."""
    return proc.run([name, *args], env=dict(env), check=check, echo=echo, timeout=timeout)


def write_containers_conf(root: Path) -> Path:
    """Write the Podman `containers.conf` into the local cloud's state folder and return its path."""
    path = root / "containers.conf"
    if not path.is_file() or path.read_text(encoding="utf-8") != CONTAINERS_CONF:
        path.write_text(CONTAINERS_CONF, encoding="utf-8")
    return path


def docker_env() -> dict[str, str]:
    """What every docker call needs: the daemon's address, when DOCKER_HOST names one (a dockerd of your own)."""
    host = os.environ.get("DOCKER_HOST", "").strip()
    return {"DOCKER_HOST": host} if host else {}


def detect_engine(root: Path) -> Engine:
    """The engine STAMP_LOCAL_ENGINE names, else the first that answers `info`: Podman, then Docker.

    Running it is the only reliable test: a Docker *client* with no daemon behind it is on PATH on some
    machines, and `which docker` would be fooled by it (docs/facts.md, Podman). Docker is reached at
    DOCKER_HOST when it is set; the state file keeps it, so later commands reach the same daemon.
    """
    choice = os.environ.get(ENGINE_SWITCH, "").strip().lower()
    if choice and choice not in ENGINES:
        raise CloudError(
            f"local cloud: {ENGINE_SWITCH}={choice!r} names no container engine stamp knows",
            hint=f"set {ENGINE_SWITCH} to {' or '.join(ENGINES)}, or unset it to use the first that works",
        )
    problems: list[str] = []
    podman_env = {"CONTAINERS_CONF": str(write_containers_conf(root))}
    candidates = [("podman", podman_env), ("docker", docker_env())]
    for name, env in [(n, e) for n, e in candidates if choice in ("", n)]:
        try:
            engine_call(name, env, ["info"], echo=False, timeout=60)
        except ProcessError as exc:
            lines = (exc.stderr or exc.stdout).strip().splitlines()
            problems.append(f"  {name}: {lines[-1] if lines else f'exit {exc.returncode}'}")
            continue
        return Engine(name, env)
    tried = " and ".join(f"`{name} info`" for name, _env in candidates if choice in ("", name))
    raise CloudError(
        f"local cloud: no working container engine (tried {tried}):\n" + "\n".join(problems),
        hint="install Podman: `sudo apt-get install -y podman runc` (or start a Docker daemon, with DOCKER_HOST"
        " pointing at it when it is not the default one), then retry",
    )
