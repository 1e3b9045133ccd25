"""The local cloud's apt cache: Debian's apt-cacher-ng on the container bridge, the apt proxy of build containers.

`stamp local up` starts it next to moto and `stamp local down` stops it; its cache stays in `.stamp/local/apt-cache/`
between lives of the cloud. Only the hosts of this machine's Debian mirrors go through it (the ones the base image's
sources name); every other repository a build adds is reached directly. What it gains is measured in
docs/local-cloud.md (Apt cache).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stamp.drivers import proc
from stamp.local.engine import Engine
from stamp.output import say

PROGRAM = "apt-cacher-ng"
# apt-cacher-ng 3.7 keeps its port in a signed 16-bit number: 32768 and above become negative and it cannot bind.
PORTS = range(20000, 32768)
START_TIMEOUT = 10.0
# `STAMP_LOCAL_APT_CACHE=off` starts none (builds reach the mirror directly), e.g. to measure what it gains.
SWITCH = "STAMP_LOCAL_APT_CACHE"


@dataclass(frozen=True)
class AptCache:
    """A running apt-cacher-ng: its URL as build containers reach it, and its pid."""

    url: str
    pid: int


def wanted() -> bool:
    """Whether the local cloud runs an apt cache (it does unless STAMP_LOCAL_APT_CACHE=off)."""
    return os.environ.get(SWITCH, "on").strip().lower() not in ("off", "0", "no", "false")


def bridge_gateway(engine: Engine) -> str | None:
    """The host's address on the engine's default container network: what a container reaches the host at.

    Docker's default bridge may record no gateway, only its subnet: the host is then the subnet's first address.
    """
    if engine.name == "podman":
        args = ["network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Gateway}}|{{.Subnet}} {{end}}"]
    else:
        args = ["network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}|{{.Subnet}} {{end}}"]
    done = engine.run(args, what="finding the container network's gateway", check=False, echo=False)
    if done.returncode != 0:
        return None
    for entry in done.stdout.split():
        gateway, _, subnet = entry.partition("|")
        with contextlib.suppress(ValueError):
            if gateway and gateway != "<nil>":
                return str(ipaddress.IPv4Address(gateway))
            network = ipaddress.IPv4Network(subnet, strict=False)
            return str(network.network_address + 1)
    return None


def _can_bind(address: str, port: int = 0) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _answers(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1.0):
        return True
    return False


def config_text(folder: Path, address: str, port: int) -> str:
    """apt-cacher-ng's configuration: everything in `folder`, listening on `address:port` only, no remapping
    (requests go to the mirror they name), in the foreground so that stamp owns the process."""
    return "\n".join(
        [
            "# Written by `stamp local up` (tools/stamp/local/aptcache.py).",
            f"CacheDir: {folder / 'cache'}",
            f"LogDir: {folder / 'log'}",
            f"PidFile: {folder / 'pid'}",
            f"SocketPath: {folder / 'socket'}",
            f"BindAddress: {address}",
            f"Port: {port}",
            "ForeGround: 1",
            # Each transfer is logged as it happens (apt-cacher.log): what the cache served, and to whom.
            "UnbufferLogs: 1",
            # Index files unused this many days are dropped by apt-cacher-ng's own expiry.
            "ExThreshold: 4",
            "",
        ]
    )


def _is_ours(pid: int) -> bool:
    try:
        return PROGRAM in Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False


def running(cache: AptCache | None) -> bool:
    """Whether `cache` is still the apt-cacher-ng stamp started, and it answers."""
    if cache is None or not _is_ours(cache.pid):
        return False
    parts = urlsplit(cache.url)
    return parts.hostname is not None and parts.port is not None and _answers(parts.hostname, parts.port)


def start(engine: Engine, root: Path, *, base_image: str) -> AptCache | None:
    """Start apt-cacher-ng for the local cloud whose state is in `root`; None (and a line saying why) without one.

    Builds then reach the mirror directly, as before: the cache makes them faster, never possible.
    """
    if not wanted():
        return None
    program = shutil.which(PROGRAM) or next(
        (str(p) for p in (Path("/usr/sbin") / PROGRAM, Path("/usr/bin") / PROGRAM) if p.is_file()), None
    )
    if program is None:
        say(
            f"local cloud: {PROGRAM} is not installed, so builds reach the Debian mirror without a cache"
            f" (install it with `sudo apt-get install -y {PROGRAM}`, or `make system-deps`)"
        )
        return None
    address = bridge_gateway(engine)
    if address is not None and not _can_bind(address):
        # Podman makes its bridge with the first container; one short-lived container brings it up.
        engine.run(
            ["run", "--rm", "--entrypoint=/bin/true", base_image],
            what="bringing up the container network",
            check=False,
            echo=False,
        )
    if address is None or not _can_bind(address):
        say(
            f"local cloud: no container network address to serve an apt cache on ({address or 'none found'}),"
            " so builds reach the Debian mirror without one"
        )
        return None
    folder = root / "apt-cache"
    for sub in ("cache", "log", "conf"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    log = folder / "apt-cacher-ng.out"
    for _attempt in range(3):
        port = _free_port(address)
        (folder / "conf" / "acng.conf").write_text(config_text(folder, address, port), encoding="utf-8")
        child = proc.start([program, "-c", str(folder / "conf")], log=log, new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and child.poll() is None:
            if _answers(address, port):
                return AptCache(f"http://{address}:{port}", child.pid)
            time.sleep(0.05)
        if child.poll() is None:
            child.kill()
        child.wait()
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:] if log.is_file() else []
    say(
        f"local cloud: {PROGRAM} did not start ({'; '.join(tail) or 'no output'}), so builds reach the Debian mirror"
        f" without a cache; see {log}"
    )
    return None


def _free_port(address: str) -> int:
    ports = list(PORTS)
    random.shuffle(ports)
    return next((port for port in ports[:200] if _can_bind(address, port)), ports[0])


def stop(pid: int, timeout: float = 5.0) -> None:
    """Stop the apt-cacher-ng stamp started (a pid now held by another program is left alone)."""
    if pid <= 0 or not _is_ours(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if not _is_ours(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def mirror_hosts(source_lines: Iterable[str]) -> list[str]:
    """The hosts of `deb URI suite…` lines (the base image's sources), in order, once each."""
    hosts: list[str] = []
    for line in source_lines:
        fields = line.split()
        host = urlsplit(fields[1]).hostname if len(fields) > 1 and fields[1].startswith("http://") else None
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def build_apt_config(cache: AptCache, hosts: Iterable[str]) -> str:
    """The apt configuration a build container gets: the cache as the proxy of the Debian mirror's hosts.

    apt-cacher-ng passes on any request; naming the hosts keeps third-party repositories (and HTTPS, which it
    cannot cache) on a direct connection, as on EC2. Translations are not fetched, and the lists come gzip- rather than
    xz-compressed: nothing in a build reads translations, and the lists are deleted when it ends
    (tools/stamp/templates/finalize.sh).
    """
    lines = [
        "// The local cloud's apt cache, for this build only: stamp removes this file before the image is made.",
        *(f'Acquire::http::Proxy::{host} "{cache.url}/";' for host in hosts),
        'Acquire::Languages "none";',
        # gzip-compressed package lists: `apt-get update` then takes 0.9 s instead of 1.2 s unpacking xz.
        'Acquire::CompressionTypes::Order:: "gz";',
        # No fsync per file: a build container that crashes is thrown away, never resumed.
        'DPkg::Options:: "--force-unsafe-io";',
        "",
    ]
    return "\n".join(lines)
