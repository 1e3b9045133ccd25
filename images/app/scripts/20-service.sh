#!/usr/bin/env bash
# app / step 20: install the application (standard library only) and run it as a systemd service.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout: wait for, rather than fail on, an apt run already in progress (apt-daily, cloud-init).

if ! command -v python3 >/dev/null 2>&1; then
  # Retry: a mirror can be mid-sync or briefly unreachable (Error-Mode=any fails on any fetch error).
  for try in 1 2 3; do
    apt-get -o DPkg::Lock::Timeout=300 -o APT::Update::Error-Mode=any update && break
    [ "$try" -lt 3 ] || exit 1
    sleep 5
  done
  apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends python3
fi

# Code owned by root and only readable by the service user: the app cannot modify itself.
install -d -m 0755 -o root -g root /opt/stamp-app
install -m 0644 -o root -g root /tmp/stamp-files/app.py /opt/stamp-app/app.py
python3 -m py_compile /opt/stamp-app/app.py

install -m 0644 -o root -g root /tmp/stamp-files/stamp-app.service /etc/systemd/system/stamp-app.service
systemd-analyze verify /etc/systemd/system/stamp-app.service

systemctl daemon-reload
systemctl enable stamp-app.service
if [ -d /run/systemd/system ]; then
  systemctl restart stamp-app.service
  # Fail the build if the service does not come up and answer.
  for _ in $(seq 1 20); do
    if python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=1)' 2>/dev/null; then
      exit 0
    fi
    sleep 0.5
  done
  systemctl --no-pager status stamp-app.service >&2 || true
  echo "stamp-app did not answer on 127.0.0.1:8080" >&2
  exit 1
fi
