#!/usr/bin/env bash
# web / step 20: serve the static site from /var/www/stamp through its own server block.
set -euo pipefail

install -d -m 0755 -o root -g root /var/www/stamp
install -m 0644 -o root -g root /tmp/stamp-files/index.html /var/www/stamp/index.html
install -m 0644 -o root -g root /tmp/stamp-files/stamp-site.conf /etc/nginx/sites-available/stamp-site.conf
ln -sfn ../sites-available/stamp-site.conf /etc/nginx/sites-enabled/stamp-site.conf
# Our server block is the default_server on port 80; the package's welcome page would clash with it.
rm -f /etc/nginx/sites-enabled/default

nginx -t

# The package enables it already; enabling again would also run the SysV sync (0.4 s).
systemctl is-enabled --quiet nginx.service || systemctl enable nginx.service
if [ -d /run/systemd/system ]; then
  systemctl restart nginx.service
  systemctl is-active --quiet nginx.service
fi
