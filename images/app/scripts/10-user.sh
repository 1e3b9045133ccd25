#!/usr/bin/env bash
# app / step 10: the unprivileged system user that runs the service.
set -euo pipefail

if ! getent group stamp-app >/dev/null; then
  groupadd --system stamp-app
fi
if ! id -u stamp-app >/dev/null 2>&1; then
  useradd --system --gid stamp-app --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "stamp example app" stamp-app
fi
