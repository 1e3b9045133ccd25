#!/usr/bin/env bash
# web / step 10: install nginx.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout: wait for, rather than fail on, an apt run already in progress (apt-daily, cloud-init).

# Retry: a mirror can be mid-sync or briefly unreachable (Error-Mode=any fails on any fetch error).
for try in 1 2 3; do
  apt-get -o DPkg::Lock::Timeout=300 -o APT::Update::Error-Mode=any update && break
  [ "$try" -lt 3 ] || exit 1
  sleep 5
done
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends nginx
