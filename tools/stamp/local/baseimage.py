"""The local cloud's stand-in for the vendor Debian 12 AMI: a systemd container image built with mmdebstrap."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from stamp.drivers import proc
from stamp.errors import BuildError, ProcessError
from stamp.local.engine import Engine
from stamp.local.sources import debian_source_lines, read_apt_sources

BASE_IMAGE = "localhost/stamp/debian-base:bookworm"
DEFAULT_USER = "admin"
INIT = "/usr/local/sbin/stamp-local-init"
SEED_DIR = "/var/lib/stamp-local/seed"

PACKAGES = (
    "openssh-server",
    "python3",
    "sudo",
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "procps",
    "ca-certificates",
    "curl",
)

# The container CMD. It does the per-instance part of cloud-init's job, then hands PID 1 to systemd.
# An instance is "new" when its seed's instance-id differs from the one recorded in the image, which is
# also true on the first boot of an image committed from another instance: like EC2, every instance then
# gets its own SSH host keys and machine-id.
INIT_SCRIPT = """\
#!/bin/sh
# stamp-local-init: the local cloud's stand-in for cloud-init (per-instance set-up), then systemd as PID 1.
set -eu
seed=/var/lib/stamp-local/seed
state=/var/lib/stamp-local
mkdir -p "$state"

instance_id=$(cat "$seed/instance-id" 2>/dev/null || hostname)
if [ "$(cat "$state/instance-id" 2>/dev/null || true)" != "$instance_id" ]; then
    rm -f /etc/ssh/ssh_host_*
    : > /etc/machine-id
    rm -f /var/lib/dbus/machine-id "$state/user-data" "$state/user-data.done"
    if [ -s "$seed/user-data" ]; then
        install -m 0700 "$seed/user-data" "$state/user-data"
    fi
    printf '%s\\n' "$instance_id" > "$state/instance-id"
fi

# cloud-init creates the default user when the image lacks it; so does this.
user=$(cat "$seed/ssh-user" 2>/dev/null || echo admin)
if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --groups sudo,adm "$user"
    printf '%s ALL=(ALL) NOPASSWD:ALL\\n' "$user" > "/etc/sudoers.d/90-stamp-$user"
    chmod 0440 "/etc/sudoers.d/90-stamp-$user"
fi
if [ -s "$seed/authorized_keys" ]; then
    home=$(getent passwd "$user" | cut -d: -f6)
    group=$(id -gn "$user")
    install -d -m 0700 -o "$user" -g "$group" "$home/.ssh"
    keys="$home/.ssh/authorized_keys"
    touch "$keys"
    while IFS= read -r key; do
        [ -n "$key" ] || continue
        grep -qxF "$key" "$keys" || printf '%s\\n' "$key" >> "$keys"
    done < "$seed/authorized_keys"
    chown "$user:$group" "$keys"
    chmod 0600 "$keys"
fi

ssh-keygen -A >/dev/null
mkdir -p /run/sshd
exec /sbin/init
"""

# Runs the user-data once per instance, like cloud-init's scripts-user, but from a systemd unit so the
# script can use systemctl. Ordered before ssh.service: when SSH answers, the user-data has finished.
USER_DATA_SCRIPT = """\
#!/bin/sh
# stamp-local-user-data: runs this instance's user-data once; output goes to /var/log/stamp-user-data.log.
set -u
script=/var/lib/stamp-local/user-data
marker=/var/lib/stamp-local/user-data.done
log=/var/log/stamp-user-data.log
[ -s "$script" ] || exit 0
[ -e "$marker" ] && exit 0
if [ "$(head -c 2 "$script")" != "#!" ]; then
    echo "stamp-local: user-data does not start with #!, so it is not run" >> "$log"
    echo skipped > "$marker"
    exit 0
fi
"$script" >> "$log" 2>&1
rc=$?
echo "$rc" > "$marker"
exit "$rc"
"""

USER_DATA_UNIT = """\
[Unit]
Description=Run the instance user-data (local cloud stand-in for cloud-init scripts-user)
After=network.target
Before=ssh.service systemd-user-sessions.service
ConditionPathExists=/var/lib/stamp-local/user-data

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/stamp-local-user-data
TimeoutStartSec=10min

[Install]
WantedBy=multi-user.target
"""


def customize_hook() -> str:
    """The mmdebstrap customize hook (run on the host with the new root as $1) that makes it vendor-like."""
    user = DEFAULT_USER
    return f"""\
#!/bin/sh
set -eu
root="$1"
# The vendor image's default user: passwordless sudo, no requiretty, key-only SSH.
chroot "$root" useradd --create-home --shell /bin/bash --groups sudo,adm {user}
printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {user} > "$root/etc/sudoers.d/90-cloud-init-users"
chmod 0440 "$root/etc/sudoers.d/90-cloud-init-users"
mkdir -p "$root/etc/ssh/sshd_config.d"
printf 'PasswordAuthentication no\\n' > "$root/etc/ssh/sshd_config.d/50-cloud-init.conf"
# Per-instance identity is made at first boot, never baked in.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
printf 'localhost\\n' > "$root/etc/hostname"
mkdir -p "$root{SEED_DIR}"
cat > "$root{INIT}" <<'STAMP_EOF'
{INIT_SCRIPT}STAMP_EOF
chmod 0755 "$root{INIT}"
cat > "$root/usr/local/sbin/stamp-local-user-data" <<'STAMP_EOF'
{USER_DATA_SCRIPT}STAMP_EOF
chmod 0755 "$root/usr/local/sbin/stamp-local-user-data"
cat > "$root/etc/systemd/system/stamp-user-data.service" <<'STAMP_EOF'
{USER_DATA_UNIT}STAMP_EOF
chroot "$root" systemctl enable stamp-user-data.service
# apt's daily timers would take the dpkg lock in the middle of a provisioning run.
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
"""


def image_exists(engine: Engine, ref: str) -> bool:
    """Whether the engine has an image called `ref`."""
    done = engine.run(["image", "inspect", "--format", "{{.Id}}", ref], what="image lookup", check=False, echo=False)
    return done.returncode == 0


def ensure_base_image(engine: Engine, root: Path, *, apt_dir: Path = Path("/etc/apt")) -> str:
    """The base image reference, building it first when the engine does not have it yet."""
    if not image_exists(engine, BASE_IMAGE):
        build_base_image(engine, root, apt_dir=apt_dir)
    return BASE_IMAGE


def build_base_image(engine: Engine, root: Path, *, apt_dir: Path = Path("/etc/apt")) -> None:
    """mmdebstrap a Debian bookworm tree from the machine's configured mirror and import it as BASE_IMAGE."""
    if shutil.which("mmdebstrap") is None:
        raise BuildError(
            "local cloud: mmdebstrap is not installed, so the Debian base image cannot be built",
            hint="install it with `sudo apt-get install -y mmdebstrap`, then retry",
        )
    source_lines = debian_source_lines(read_apt_sources(apt_dir))
    build_dir = root / "base-build"
    build_dir.mkdir(parents=True, exist_ok=True)
    hook = build_dir / "customize.sh"
    hook.write_text(customize_hook(), encoding="utf-8")
    hook.chmod(0o755)
    tar = build_dir / "debian-base.tar"
    log = root / "base-image.log"
    print(
        f"local cloud: building base image {BASE_IMAGE} from the Debian mirror (~40 s, once)",
        file=sys.stderr,
    )
    started = time.monotonic()
    try:
        try:
            proc.run_logged(
                [
                    "mmdebstrap",
                    "--variant=apt",
                    "--include=" + ",".join(PACKAGES),
                    # mmdebstrap runs the hook directly when it is an executable file.
                    f"--customize-hook={hook}",
                    "bookworm",
                    str(tar),
                    *source_lines,
                ],
                log=log,
                prefix="  mmdebstrap | ",
            )
        except ProcessError as exc:
            raise BuildError(
                f"local cloud: building the Debian base image with mmdebstrap failed (exit {exc.returncode})",
                hint=f"see {log}; check that the Debian mirror in the apt sources is reachable"
                f" ({'; '.join(source_lines)})",
            ) from exc
        engine.run(
            [
                "import",
                "--change",
                f'CMD ["{INIT}"]',
                "--change",
                "STOPSIGNAL SIGRTMIN+3",
                str(tar),
                BASE_IMAGE,
            ],
            what=f"importing the base image {BASE_IMAGE}",
            timeout=600,
        )
    finally:
        tar.unlink(missing_ok=True)
    print(f"local cloud: base image ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
