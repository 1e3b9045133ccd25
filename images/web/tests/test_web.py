"""Outcome checks for the web image (run on a fresh instance launched from it)."""

MARKER = "stamp-web: served by nginx from a stamped golden image"


def test_nginx_installed(host):
    assert host.package("nginx").is_installed


def test_nginx_enabled_and_running(host):
    nginx = host.service("nginx")
    assert nginx.is_enabled
    assert nginx.is_running


def test_port_80_listening(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_site_serves_marker(host):
    body = host.check_output("curl -fsS http://127.0.0.1/")
    assert MARKER in body


def test_healthz(host):
    assert host.check_output("curl -fsS http://127.0.0.1/healthz") == "ok"


def test_only_stamp_site_enabled(host):
    enabled = host.file("/etc/nginx/sites-enabled/stamp-site.conf")
    assert enabled.is_symlink
    assert enabled.linked_to == "/etc/nginx/sites-available/stamp-site.conf"
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_nginx_config_valid(host):
    with host.sudo():
        host.run_expect([0], "nginx -t")


def test_no_service_start_policy_left_behind(host):
    # Step 10 forbids service starts while nginx installs; an image that kept the policy would start nothing.
    assert not host.file("/usr/sbin/policy-rc.d").exists
