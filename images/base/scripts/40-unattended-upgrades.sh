#!/usr/bin/env bash
# base / step 40: daily package-list refresh and unattended security upgrades.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout: wait for, rather than fail on, an apt run already in progress (apt-daily, cloud-init).

# Retry: a mirror can be mid-sync or briefly unreachable (Error-Mode=any fails on any fetch error).
for try in 1 2 3; do
  apt-get -o DPkg::Lock::Timeout=300 -o APT::Update::Error-Mode=any update && break
  [ "$try" -lt 3 ] || exit 1
  sleep 5
done
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends unattended-upgrades

# unattended-upgrades' own debconf question would write this file too; ours is authoritative.
cat >/etc/apt/apt.conf.d/20auto-upgrades <<'CONF'
// Managed by stamp (images/base).
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
CONF
chmod 0644 /etc/apt/apt.conf.d/20auto-upgrades

# apt must parse the result and see it enabled.
# (Capture first: `grep -q` closing the pipe early would kill apt-config with SIGPIPE under pipefail.)
aptconf=$(apt-config dump)
for want in 'APT::Periodic::Update-Package-Lists "1";' 'APT::Periodic::Unattended-Upgrade "1";'; do
  grep -qxF "$want" <<<"$aptconf" || { echo "apt does not see: $want" >&2; exit 1; }
done

# The apt-daily timers drive unattended-upgrades: make sure they are on, unless someone masked them on
# purpose (the local cloud's stand-in image does, so they cannot take the dpkg lock during builds).
for timer in apt-daily.timer apt-daily-upgrade.timer; do
  if [ "$(systemctl is-enabled "$timer" 2>/dev/null || true)" != masked ]; then
    systemctl enable "$timer"
  fi
done
