"""SSH to instances, local or on AWS: the client configuration, the argument list and waiting for a login."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from stamp.drivers import proc
from stamp.errors import CloudError, ProcessError

# A unix socket's path holds at most 107 bytes (sun_path is 108 with its NUL); %C expands to 40 hex digits, and
# ssh first binds the master's socket at "<path>.<16 random characters>" before renaming it.
SOCKET_PATH_MAX = 107
CONTROL_NAME = "%C"
_CONTROL_NAME_EXPANDED = 40
_MASTER_SUFFIX = 17


def ssh_config_text(private_key: Path, control_dir: Path | None = None) -> str:
    """ssh_config for stamp's instances: each one makes fresh host keys, often on a reused address.

    With `control_dir` (a private per-run directory, see tools/stamp/drivers/runfiles.py), connections to one instance
    share one ssh master whose socket lives there; never in the shared temp dir, where others could reach it.
    Without one, or when its path is too long for a socket, every ssh connects on its own.
    """
    text = (
        "Host *\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  BatchMode yes\n"
        f'  IdentityFile "{private_key}"\n'
        "  IdentitiesOnly yes\n"
        "  PasswordAuthentication no\n"
        "  ConnectTimeout 5\n"
        "  LogLevel ERROR\n"
    )
    if control_dir is None or not control_path_fits(control_dir):
        return text
    # testinfra opens one ssh per check: sharing one connection per instance makes verification ~2x faster.
    # %C hashes the local host, remote host, port and user.
    return text + f'  ControlMaster auto\n  ControlPath "{control_dir / CONTROL_NAME}"\n  ControlPersist 15s\n'


def control_path_fits(control_dir: Path) -> bool:
    """Whether ssh can bind its master socket in `control_dir`."""
    longest = len(os.fsencode(control_dir / CONTROL_NAME)) - len(CONTROL_NAME) + _CONTROL_NAME_EXPANDED
    return longest + _MASTER_SUFFIX <= SOCKET_PATH_MAX


def ssh_args(config: Path, host: str, port: int, user: str, *command: str) -> list[str]:
    return ["ssh", "-F", str(config), "-p", str(port), f"{user}@{host}", *command]


def banner_answers(host: str, port: int) -> bool:
    """Whether sshd answers with its banner yet (cheaper than a login attempt, and no 5 s client back-off)."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def login_problem(config: Path, host: str, port: int, user: str) -> str | None:
    """None when `ssh … true` logs in; otherwise what went wrong."""
    try:
        done = proc.run(ssh_args(config, host, port, user, "true"), check=False, echo=False, timeout=15)
    except ProcessError as exc:
        if exc.returncode == 127:
            raise CloudError(
                "the ssh client is not installed, so instances cannot be reached",
                hint="install it with `sudo apt-get install -y openssh-client`, then retry",
            ) from exc
        return str(exc)
    if done.returncode == 0:
        return None
    return (done.stderr or done.stdout).strip() or f"ssh exit {done.returncode}"
