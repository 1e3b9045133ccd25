#!/usr/bin/env bash
# base / step 10: bring every installed package up to date (security fixes included).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout: wait for, rather than fail on, an apt run already in progress (apt-daily, cloud-init).

# Vendor images ship with empty or stale package lists: always refresh first.
# Retry: a mirror can be mid-sync or briefly unreachable (Error-Mode=any fails on any fetch error).
for try in 1 2 3; do
  apt-get -o DPkg::Lock::Timeout=300 -o APT::Update::Error-Mode=any update && break
  [ "$try" -lt 3 ] || exit 1
  sleep 5
done
# Keep locally modified configuration files; take the package default for new ones.
apt-get -o DPkg::Lock::Timeout=300 -y \
  -o Dpkg::Options::=--force-confdef \
  -o Dpkg::Options::=--force-confold \
  dist-upgrade
apt-get -o DPkg::Lock::Timeout=300 -y autoremove --purge
