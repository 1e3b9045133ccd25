"""Outcome checks for the app image (run on a fresh instance launched from it)."""

import json


def test_user_is_unprivileged_system_user(host):
    user = host.user("stamp-app")
    assert user.exists
    assert user.uid != 0
    assert user.uid < 1000  # a system account
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    assert user.group == "stamp-app"


def test_app_installed_read_only_for_service(host):
    app = host.file("/opt/stamp-app/app.py")
    assert app.is_file
    assert app.user == "root"
    assert app.mode == 0o644


def test_unit_enabled_and_running(host):
    service = host.service("stamp-app")
    assert service.is_enabled
    assert service.is_running


def test_unit_hardening(host):
    props = host.check_output(
        "systemctl show stamp-app.service -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome"
    )
    assert set(props.splitlines()) == {
        "User=stamp-app",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
    }


def test_port_8080_listening(host):
    assert host.socket("tcp://0.0.0.0:8080").is_listening


def test_app_answers_json(host):
    payload = json.loads(host.check_output("curl -fsS http://127.0.0.1:8080/"))
    assert payload["app"] == "stamp-app"
    assert payload["status"] == "ok"


def test_healthz(host):
    assert host.check_output("curl -fsS http://127.0.0.1:8080/healthz") == "ok"


def test_process_runs_as_stamp_app(host):
    pid = host.check_output("systemctl show -p MainPID --value stamp-app.service")
    assert pid.isdigit() and int(pid) > 0
    owner = host.check_output(f"ps -o user:32= -p {pid}")
    assert owner == "stamp-app"
    # And nothing of the app runs as root.
    with host.sudo():
        root_procs = host.check_output("ps -u root -o args=")
    assert "/opt/stamp-app/app.py" not in root_procs
