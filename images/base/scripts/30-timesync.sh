#!/usr/bin/env bash
# base / step 30: time synchronisation with chrony (replaces systemd-timesyncd).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout: wait for, rather than fail on, an apt run already in progress (apt-daily, cloud-init).

# Retry: a mirror can be mid-sync or briefly unreachable (Error-Mode=any fails on any fetch error).
for try in 1 2 3; do
  apt-get -o DPkg::Lock::Timeout=300 -o APT::Update::Error-Mode=any update && break
  [ "$try" -lt 3 ] || exit 1
  sleep 5
done
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends chrony

# Debian's chrony.conf reads *.sources from this directory; the package's pool stays as a fallback.
install -d -m 0755 /etc/chrony/sources.d
cat >/etc/chrony/sources.d/stamp.sources <<'CONF'
# Managed by stamp (images/base).
# Amazon Time Sync Service: link-local, reachable from every EC2 instance without internet access.
server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4
CONF
chmod 0644 /etc/chrony/sources.d/stamp.sources

# Refuse to bake an image whose chrony configuration does not parse or does not read our sources.
chronyd -p -f /etc/chrony/sources.d/stamp.sources >/dev/null
chrony_conf=$(chronyd -p)
grep -qxF 'sourcedir /etc/chrony/sources.d' <<<"$chrony_conf" || {
  echo "chrony.conf does not read /etc/chrony/sources.d" >&2
  exit 1
}

systemctl enable chrony.service
# Pick up the new source now when chrony can run here (it cannot in containers without CAP_SYS_TIME).
if [ -d /run/systemd/system ] && systemctl is-active --quiet chrony.service; then
  systemctl restart chrony.service
fi
