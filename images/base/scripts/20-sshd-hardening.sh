#!/usr/bin/env bash
# base / step 20: harden sshd with a drop-in; the main sshd_config and AuthorizedKeysFile stay untouched.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout: wait for, rather than fail on, an apt run already in progress (apt-daily, cloud-init).

dropin=/etc/ssh/sshd_config.d/50-stamp-hardening.conf

if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
  # Retry: a mirror can be mid-sync or briefly unreachable (Error-Mode=any fails on any fetch error).
  for try in 1 2 3; do
    apt-get -o DPkg::Lock::Timeout=300 -o APT::Update::Error-Mode=any update && break
    [ "$try" -lt 3 ] || exit 1
    sleep 5
  done
  apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends openssh-server
fi

# Debian's sshd_config includes sshd_config.d/*.conf before its own settings, so the drop-in wins.
grep -Eq '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config || {
  echo "sshd_config does not include /etc/ssh/sshd_config.d/*.conf; the drop-in would be ignored" >&2
  exit 1
}

install -d -m 0755 /etc/ssh/sshd_config.d
cat >"$dropin" <<'CONF'
# Managed by stamp (images/base). Included before the settings in /etc/ssh/sshd_config,
# so these values win. AuthorizedKeysFile is deliberately left at its default.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
X11Forwarding no
MaxAuthTries 3
CONF
chown root:root "$dropin"
chmod 0644 "$dropin"

# sshd refuses to test a configuration without host keys or its privilege-separation directory.
# The image carries no host keys after finalize, so validate with a throw-away key when there are none.
mkdir -p /run/sshd
keyargs=()
if ! compgen -G '/etc/ssh/ssh_host_*_key' >/dev/null; then
  tmpdir=$(mktemp -d)
  trap 'rm -rf "$tmpdir"' EXIT
  ssh-keygen -q -t ed25519 -N '' -f "$tmpdir/hostkey"
  keyargs=(-h "$tmpdir/hostkey")
fi
/usr/sbin/sshd -t "${keyargs[@]}"

# Check the effective values: an earlier drop-in (sorted before ours) could still override them.
effective=$(/usr/sbin/sshd -T "${keyargs[@]}" -C user=stamp,host=localhost,addr=127.0.0.1)
for want in 'permitrootlogin no' 'passwordauthentication no' 'kbdinteractiveauthentication no' \
            'x11forwarding no' 'maxauthtries 3'; do
  if ! grep -qx "$want" <<<"$effective"; then
    echo "effective sshd config lacks '$want' (another file in sshd_config.d overrides it?)" >&2
    exit 1
  fi
done
