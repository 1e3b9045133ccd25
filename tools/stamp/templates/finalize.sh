#!/usr/bin/env bash
# stamp finalize: runs as root after every image's own provisioning scripts, while Packer is still
# connected over SSH. It removes everything that must not be shared by the servers stamped from the
# image: host keys, login keys, history, cloud-init state, machine identity, package caches.
# Removing files is safe here; sshd is deliberately not restarted (the live session keeps working).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { printf 'stamp-finalize: %s\n' "$*" >&2; }

# 1. Package caches and lists (~90 MB); every provisioning script runs apt-get update itself.
if command -v apt-get >/dev/null 2>&1; then
  apt-get clean
fi
rm -rf /var/lib/apt/lists/*
log "package caches and lists removed"

# 2. SSH host keys: openssh-server generated them at install time; each server must make its own at
#    first boot (cloud-init on AWS, the local cloud's first-boot shim locally).
rm -f /etc/ssh/ssh_host_*
log "ssh host keys removed"

# 3. Login keys and shell history of every account (root included), wherever its home is.
homes() {
  printf '%s\n' /root
  getent passwd | cut -d: -f6
  for d in /home/*; do [ -d "$d" ] && printf '%s\n' "$d"; done
}
while IFS= read -r home; do
  case "$home" in
    '' | / | /nonexistent | /dev/null) continue ;;
  esac
  [ -d "$home" ] || continue
  rm -f -- "$home/.ssh/authorized_keys" "$home/.ssh/authorized_keys2"
  rm -f -- "$home/.bash_history" "$home/.sh_history" "$home/.zsh_history" \
    "$home/.python_history" "$home/.lesshst" "$home/.viminfo" "$home/.wget-hsts"
done < <(homes | sort -u)
log "authorized_keys and shell history removed"

# 4. cloud-init state, so the next boot runs it as a first boot (new instance ID, keys, user data).
if command -v cloud-init >/dev/null 2>&1; then
  cloud-init clean --logs
else
  rm -rf /var/lib/cloud/instances /var/lib/cloud/instance /var/lib/cloud/data /var/lib/cloud/sem
  rm -f /var/log/cloud-init.log /var/log/cloud-init-output.log
fi
log "cloud-init state removed"

# 5. Machine identity. An empty /etc/machine-id (not a missing one) makes systemd generate a new ID at
#    boot without treating the boot as "first boot", so units enabled by provisioning stay enabled.
: >/etc/machine-id
chmod 0444 /etc/machine-id
rm -f /var/lib/dbus/machine-id
log "machine-id emptied"

# 6. Files uploaded by stamp for the provisioning scripts.
rm -rf /tmp/stamp-files
log "provisioning files removed"

sync
log "done"
