"""SSH to instances, local or on AWS: the client configuration, the argument list and waiting for a login."""

from __future__ import annotations

import socket
from pathlib import Path

from stamp import proc
from stamp.errors import CloudError


def ssh_config_text(private_key: Path) -> str:
    """ssh_config for stamp's instances: each one makes fresh host keys, often on a reused address."""
    return (
        "Host *\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  BatchMode yes\n"
        f'  IdentityFile "{private_key}"\n'
        "  IdentitiesOnly yes\n"
        "  PasswordAuthentication no\n"
        "  ConnectTimeout 5\n"
        "  LogLevel ERROR\n"
        # testinfra opens one ssh per check: sharing one connection per instance makes verification ~2x faster.
        # The socket path is short on purpose (sun_path holds 108 bytes); %C hashes host, port and user.
        "  ControlMaster auto\n"
        "  ControlPath /tmp/stamp-ssh-%C\n"
        "  ControlPersist 15s\n"
    )


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
    except proc.ProcessError as exc:
        if exc.returncode == 127:
            raise CloudError(
                "the ssh client is not installed, so instances cannot be reached",
                hint="install it with `sudo apt-get install -y openssh-client`, then retry",
            ) from exc
        return str(exc)
    if done.returncode == 0:
        return None
    return (done.stderr or done.stdout).strip() or f"ssh exit {done.returncode}"
