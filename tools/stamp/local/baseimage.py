"""The local cloud's stand-in for the vendor Debian 12 AMI: a systemd container image built with mmdebstrap."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from stamp.drivers import proc
from stamp.errors import BuildError, ProcessError
from stamp.local.engine import Engine, engine_call, write_containers_conf
from stamp.local.sources import debian_source_lines, read_apt_sources
from stamp.output import say

# The tag ends with a hash of the recipe (BASE_IMAGE, below): a changed recipe builds a new base image once.
BASE_REPO = "localhost/stamp/debian-base"
DEFAULT_USER = "admin"
INIT = "/usr/local/sbin/stamp-local-init"
SEED_DIR = "/var/lib/stamp-local/seed"
# Where an instance's user-data output goes: a script's (stamp-user-data.service), a #cloud-config's (cloud-init).
USER_DATA_LOG = "/var/log/stamp-user-data.log"
CLOUD_INIT_LOG = "/var/log/cloud-init-output.log"
# A build's apt configuration (the local cloud's apt cache): copied from the seed at boot, removed before commit.
APT_BUILD_CONF = "/etc/apt/apt.conf.d/00stamp-local-build"

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
    # Debian's cloud images have it; here it runs only for a #cloud-config user-data (CLOUD_CFG).
    "cloud-init",
)

# cloud-init's settings for a container of the local cloud: the user-data comes from a NoCloud seed the first-boot
# shim writes; network, hostname and disk belong to the container engine; host keys and the default user are the
# shim's (as on EC2, before cloud-init runs); the apt sources made from this machine's Debian mirror stay.
CLOUD_CFG = """\
# Written by the local cloud's base image recipe (stamp); see /usr/local/sbin/stamp-local-init.
datasource_list: [NoCloud, None]
network: {config: disabled}
preserve_hostname: true
growpart: {mode: "off"}
resize_rootfs: false
ssh_deletekeys: false
ssh_genkeytypes: [ed25519, ecdsa]
apt: {preserve_sources_list: true}
locale: C.UTF-8
"""
CLOUD_CFG_FILE = "/etc/cloud/cloud.cfg.d/95-stamp-local.cfg"
CLOUD_INIT_UNITS = "cloud-init-local cloud-init cloud-config cloud-final"

# The container CMD. It does the per-instance part of cloud-init's job, then hands PID 1 to systemd.
# An instance is "new" when its seed's instance-id differs from the one recorded in the image, which is
# also true on the first boot of an image committed from another instance: like EC2, every instance then
# gets its own SSH host keys and machine-id. A user-data script runs from stamp-user-data.service; a
# #cloud-config goes to the real cloud-init through a NoCloud seed (cloud-init stays disabled otherwise, so
# instances without one boot as fast as before). Every change to this file or to the write-ups below it gives
# the base image a new tag (BASE_IMAGE).
INIT_SCRIPT = f"""\
#!/bin/sh
# stamp-local-init: the local cloud's stand-in for cloud-init (per-instance set-up), then systemd as PID 1.
set -eu
seed={SEED_DIR}
state=/var/lib/stamp-local
nocloud=/var/lib/cloud/seed/nocloud
mkdir -p "$state"

kind=none
if [ -s "$seed/user-data" ]; then
    case "$(head -n 1 "$seed/user-data")" in
        '#!'*) kind=script ;;
        '#cloud-config' | '#cloud-config'[[:space:]]*) kind=cloud-config ;;
        *) kind=other ;;
    esac
fi

instance_id=$(cat "$seed/instance-id" 2>/dev/null || hostname)
if [ "$(cat "$state/instance-id" 2>/dev/null || true)" != "$instance_id" ]; then
    rm -f /etc/ssh/ssh_host_*
    : > /etc/machine-id
    rm -f /var/lib/dbus/machine-id "$state/user-data" "$state/user-data.done"
    case "$kind" in
        script) install -m 0700 "$seed/user-data" "$state/user-data" ;;
        other) echo "stamp-local: user-data is neither a script (#!) nor #cloud-config: not run" >> {USER_DATA_LOG} ;;
    esac
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

# A #cloud-config: cloud-init runs it on this boot (its own state says whether the instance is new).
# Files are only written or removed when that changes something, so a committed build container differs
# from its image only by what its provisioning did.
if [ -d /etc/cloud ]; then
    user_cfg=/etc/cloud/cloud.cfg.d/96-stamp-local-user.cfg
    if [ "$kind" = cloud-config ]; then
        mkdir -p "$nocloud"
        cp "$seed/user-data" "$nocloud/user-data"
        printf 'instance-id: %s\\nlocal-hostname: %s\\n' "$instance_id" "$(hostname)" > "$nocloud/meta-data"
        printf 'system_info:\\n  default_user:\\n    name: %s\\n' "$user" > "$user_cfg"
        rm -f /etc/cloud/cloud-init.disabled
    else
        [ ! -e "$nocloud" ] || rm -rf "$nocloud"
        [ ! -e "$user_cfg" ] || rm -f "$user_cfg"
        [ -e /etc/cloud/cloud-init.disabled ] || : > /etc/cloud/cloud-init.disabled
    fi
fi

# A build's apt settings (the local cloud's apt cache), for this container only: never part of an image.
if [ -s "$seed/apt.conf" ]; then
    install -m 0644 "$seed/apt.conf" {APT_BUILD_CONF}
elif [ -e {APT_BUILD_CONF} ]; then
    rm -f {APT_BUILD_CONF}
fi

# Host keys of the kinds sshd prefers, made on a new instance's first boot. Not RSA: a 3072-bit key costs 0.5-1 s of
# CPU on every boot (docs/local-cloud.md, Host keys).
for kind in ed25519 ecdsa; do
    key=/etc/ssh/ssh_host_${{kind}}_key
    [ -e "$key" ] || ssh-keygen -q -t "$kind" -N '' -f "$key"
done
mkdir -p /run/sshd
exec /sbin/init
"""

# Runs the user-data once per instance, like cloud-init's scripts-user, but from a systemd unit so the
# script can use systemctl. Ordered before ssh.service: when SSH answers, the user-data has finished.
USER_DATA_SCRIPT = f"""\
#!/bin/sh
# stamp-local-user-data: runs this instance's user-data once; output goes to {USER_DATA_LOG}.
set -u
script=/var/lib/stamp-local/user-data
marker=/var/lib/stamp-local/user-data.done
log={USER_DATA_LOG}
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
# cloud-init: the local cloud's settings, and off until an instance's user-data is a #cloud-config.
mkdir -p "$root/etc/cloud/cloud.cfg.d"
cat > "$root{CLOUD_CFG_FILE}" <<'STAMP_EOF'
{CLOUD_CFG}STAMP_EOF
: > "$root/etc/cloud/cloud-init.disabled"
# A failed cloud-init stage is stopped by killing what it left (a `tee` of its output), then systemd waits for the
# cgroup to empty; in a cgroup v1 container that news can be lost, and the units' TimeoutSec=0 made it wait
# forever, holding back sshd (2 of 8 boots of a failing #cloud-config under load; docs/local-cloud.md).
for unit in {CLOUD_INIT_UNITS}; do
  mkdir -p "$root/etc/systemd/system/$unit.service.d"
  printf '[Service]\\nKillMode=process\\n' > "$root/etc/systemd/system/$unit.service.d/50-stamp-local.conf"
done
# apt's daily timers would take the dpkg lock in the middle of a provisioning run.
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
"""


def _recipe_hash() -> str:
    """What the base image is made of (packages, customize hook, import changes), hashed for its tag."""
    recipe = "\n".join([*PACKAGES, customize_hook(), *IMPORT_CHANGES])
    return hashlib.sha256(recipe.encode("utf-8")).hexdigest()[:12]


IMPORT_CHANGES = (f'CMD ["{INIT}"]', "STOPSIGNAL SIGRTMIN+3")
BASE_IMAGE = f"{BASE_REPO}:bookworm-{_recipe_hash()}"
# One build of the base image at a time on this machine: local clouds of other checkouts share the engine.
BASE_BUILD_LOCK = Path(tempfile.gettempdir()) / "stamp-local-base-image.lock"


@contextlib.contextmanager
def _one_base_build() -> Iterator[None]:
    with BASE_BUILD_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# What Podman ("image not known") and Docker ("No such image") say of an image they do not have.
_ABSENT = ("image not known", "no such image")


def inspect_image(engine: Engine, ref: str, template: str) -> str | None:
    """`<engine> image inspect --format template ref`'s answer, or None when the engine has no image called `ref`.

    Only the engine's own "no such image" means no: any other failure (a busy Podman's storage lock) is retried,
    then raised. Taking it for "absent" would make an adoptable build look lost, and a rerun deregister its AMIs.
    """
    done = engine.read(
        ["image", "inspect", "--format", template, ref],
        what=f"telling whether the engine has image {ref}",
        answers=lambda failed: any(text in failed.stderr.lower() for text in _ABSENT),
    )
    return done.stdout if done.returncode == 0 else None


def image_exists(engine: Engine, ref: str) -> bool:
    """Whether the engine has an image called `ref` (an engine error is raised, not taken for "no")."""
    return inspect_image(engine, ref, "{{.Id}}") is not None


def ensure_base_image(engine: Engine, root: Path, *, apt_dir: Path = Path("/etc/apt")) -> str:
    """The base image reference, building it first when the engine does not have it yet."""
    if not image_exists(engine, BASE_IMAGE):
        with _one_base_build():
            # Another local cloud may have built it while this one waited for the lock.
            if not image_exists(engine, BASE_IMAGE) and not _copy_from_podman(engine, root):
                build_base_image(engine, root, apt_dir=apt_dir)
    return BASE_IMAGE


def _copy_from_podman(engine: Engine, root: Path) -> bool:
    """For Docker: load the base image Podman has already (seconds, where building it takes ~45 s)."""
    if engine.name != "docker" or shutil.which("podman") is None:
        return False
    podman_env = {"CONTAINERS_CONF": str(write_containers_conf(root))}
    tar = root / "base-build" / "debian-base-podman.tar"
    tar.parent.mkdir(parents=True, exist_ok=True)
    try:
        saved = engine_call(
            "podman",
            podman_env,
            ["save", "--format", "docker-archive", "-o", str(tar), BASE_IMAGE],
            check=False,
            echo=False,
            timeout=600,
        )
        if saved.returncode != 0:
            return False
        loaded = engine.run(["load", "-i", str(tar)], what="loading the base image", check=False, timeout=600)
        return loaded.returncode == 0 and image_exists(engine, BASE_IMAGE)
    except ProcessError:
        return False
    finally:
        tar.unlink(missing_ok=True)


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
    say(f"local cloud: building base image {BASE_IMAGE} from the Debian mirror (~45 s, once)")
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
            ["import", *(arg for change in IMPORT_CHANGES for arg in ("--change", change)), str(tar), BASE_IMAGE],
            what=f"importing the base image {BASE_IMAGE}",
            timeout=600,
        )
    finally:
        tar.unlink(missing_ok=True)
    say(f"local cloud: base image ready in {time.monotonic() - started:.0f} s")
