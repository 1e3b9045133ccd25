"""The container engine (Podman, else Docker), found by running it, and the one way stamp calls it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def detect_engine(root: Path) -> Engine:
    """The first engine that answers `info`: Podman, then Docker.

    Running it is the only reliable test: a Docker *client* with no daemon behind it is on PATH on some
    machines, and `which docker` would be fooled by it.
    """
    problems: list[str] = []
    podman_env = {"CONTAINERS_CONF": str(write_containers_conf(root))}
    for name, env in (("podman", podman_env), ("docker", {})):
        try:
            engine_call(name, env, ["info"], echo=False, timeout=60)
        except ProcessError as exc:
            lines = (exc.stderr or exc.stdout).strip().splitlines()
            problems.append(f"  {name}: {lines[-1] if lines else f'exit {exc.returncode}'}")
            continue
        return Engine(name, env)
    raise CloudError(
        "local cloud: no working container engine (tried `podman info` and `docker info`):\n" + "\n".join(problems),
        hint="install Podman: `sudo apt-get install -y podman runc` (or start a Docker daemon), then retry",
    )
