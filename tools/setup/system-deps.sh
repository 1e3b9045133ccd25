#!/usr/bin/env bash
# Installs the system tools stamp needs (Packer, a container engine, mmdebstrap, apt-cacher-ng) where apt allows it,
# or says exactly what to install. Run by `make demo` and `make test`; fast when everything is present.
set -euo pipefail

need=()
command -v packer >/dev/null 2>&1 || need+=(packer)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
# The local cloud's apt cache for builds: `stamp local up` runs its own apt-cacher-ng (tools/stamp/local/aptcache.py).
command -v apt-cacher-ng >/dev/null 2>&1 || [ -x /usr/sbin/apt-cacher-ng ] || need+=(apt-cacher-ng)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
# The workflows' scripts use jq; tests/test_workflow_record.py runs them.
command -v jq >/dev/null 2>&1 || need+=(jq)
# The update check verifies apt indexes with gpgv and Debian's keyring; the tests sign their own with gpg.
command -v gpgv >/dev/null 2>&1 || need+=(gpgv)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
# `stamp site` draws the lineage with Graphviz's dot; tests/test_site_browser.py drives Debian's chromium.
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v chromium >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
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
  if [[ " ${need[*]} " == *" apt-cacher-ng "* ]]; then
    # The package's own service would serve every network interface; stamp needs only the program.
    systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true
    update-rc.d apt-cacher-ng disable >/dev/null 2>&1 || true
    service apt-cacher-ng stop >/dev/null 2>&1 || true
  fi
  exit 0
fi

cat >&2 <<MSG
stamp needs these system tools: ${need[*]}
  Debian/Ubuntu:  sudo apt-get install -y ${need[*]}
  macOS:          brew install packer podman   (mmdebstrap is only needed where no registry is reachable;
                  without apt-cacher-ng, local builds reach the Debian mirror directly)
  Packer must be 1.6.6 or newer; with Packer >= 1.7 run \`packer init build/<image>\` once.
MSG
exit 1
