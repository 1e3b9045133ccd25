#!/usr/bin/env bash
# Installs the system tools stamp needs (Packer, a container engine, mmdebstrap) where apt allows it,
# or says exactly what to install. Run by `make demo` and `make test`; fast when everything is present.
set -euo pipefail

need=()
command -v packer >/dev/null 2>&1 || need+=(packer)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
# The workflows' scripts use jq; tests/test_workflow_record.py runs them.
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
# A container engine counts only if it really runs (a docker client without an engine does not).
if ! podman info >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  need+=(podman runc uidmap slirp4netns fuse-overlayfs)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  exit 0
fi

cat >&2 <<MSG
stamp needs these system tools: ${need[*]}
  Debian/Ubuntu:  sudo apt-get install -y ${need[*]}
  macOS:          brew install packer podman   (mmdebstrap is only needed where no registry is reachable)
  Packer must be 1.6.6 or newer; with Packer >= 1.7 run \`packer init build/<image>\` once.
MSG
exit 1
