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
# No service starts while packages install (policy-rc.d, as in Debian's container images): step 20 starts nginx
# once its site is in place. Otherwise nginx-common's postinst starts nginx and nginx's postinst then "upgrades" the
# running binary, waiting a second for the new master's pid file: half of the install's 2 s.
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends nginx
