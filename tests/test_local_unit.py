"""Unit tests of the local cloud's pure parts: seeds, moto's AMI JSON, apt sources, ssh_config, env."""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import pytest

from stamp.drivers.ssh import ssh_config_text
from stamp.errors import BuildError, CatalogError, CloudError
from stamp.local import LocalCloud, SeedImage, aws_env, container_image_for, seed_ami_id
from stamp.local.baseimage import INIT_SCRIPT, USER_DATA_UNIT, customize_hook, image_exists
from stamp.local.cloud import _write_amis
from stamp.local.containers import stamp_images
from stamp.local.engine import READ_ATTEMPTS, Engine
from stamp.local.instances import _running
from stamp.local.seeds import moto_amis
from stamp.local.sources import (
    AptSource,
    debian_source_lines,
    parse_deb822,
    parse_one_line,
    read_apt_sources,
)
from stamp.local.state_file import cloud_id

SEED = SeedImage(
    name="debian-12-amd64-20261101-1234",
    owner_id="136693071363",
    creation_date="2026-11-01T12:34:00.000Z",
    description="Debian 12 (20261101-1234)",
)


def test_seed_ami_id_is_deterministic_and_well_formed() -> None:
    assert seed_ami_id(SEED.name) == seed_ami_id(SEED.name)
    assert re.fullmatch(r"ami-[0-9a-f]{17}", seed_ami_id(SEED.name))
    assert seed_ami_id(SEED.name) != seed_ami_id("debian-12-amd64-20261102-0000")
    assert SEED.resolved_ami_id == seed_ami_id(SEED.name)


def test_seed_keeps_a_given_ami_id() -> None:
    seed = SeedImage(SEED.name, SEED.owner_id, SEED.creation_date, ami_id="ami-0123456789abcdef0")
    assert seed.resolved_ami_id == "ami-0123456789abcdef0"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("creation_date", "2026-11-01 12:34:00"),
        ("owner_id", "12345"),
        ("ami_id", "ami-XYZ"),
        ("name", ""),
    ],
)
def test_seed_rejects_values_moto_or_ec2_would_not_take(field: str, value: str) -> None:
    kwargs = {"name": SEED.name, "owner_id": SEED.owner_id, "creation_date": SEED.creation_date, field: value}
    with pytest.raises(CatalogError, match=field):
        SeedImage(**kwargs)


def test_moto_amis_json_content(tmp_path: Path) -> None:
    other = SeedImage("debian-12-arm64-20261101-1234", "136693071363", "2026-11-01T12:34:00.000Z")
    path = _write_amis(tmp_path, moto_amis([SEED, other, SEED]))
    data = json.loads(path.read_text(encoding="utf-8"))
    assert [entry["ami_id"] for entry in data] == [SEED.resolved_ami_id, other.resolved_ami_id]
    first = data[0]
    assert first["name"] == SEED.name
    assert first["owner_id"] == "136693071363"
    assert first["creation_date"] == "2026-11-01T12:34:00.000Z"
    assert first["description"] == "Debian 12 (20261101-1234)"
    assert first["root_device_type"] == "ebs"
    assert first["state"] == "available"
    assert first["virtualization_type"] == "hvm"
    assert first["architecture"] == "x86_64"


def test_moto_amis_entries_are_moto_ami_arguments() -> None:
    from moto.ec2.models.amis import Ami

    accepted = set(inspect.signature(Ami.__init__).parameters)
    for entry in moto_amis([SEED]):
        assert set(entry) <= accepted


ONE_LINE = """\
# the machine's sources
deb http://mirror.example/debian bookworm main contrib
deb [arch=amd64 signed-by=/usr/share/keyrings/d.gpg] http://mirror.example/debian/ bookworm-updates main
deb-src http://mirror.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main  # trailing comment
deb https://thirdparty.example/apt bookworm stable
"""

DEB822 = """\
Types: deb deb-src
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: https://node.example/node_20.x
Suites: nodistro
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
"""

EXPECTED_LINES = [
    "deb http://mirror.example/debian bookworm main",
    "deb http://mirror.example/debian bookworm-updates main",
    "deb http://security.example/debian-security bookworm-security main",
]


def test_parse_one_line_format() -> None:
    sources = parse_one_line(ONE_LINE)
    assert AptSource("deb", "http://mirror.example/debian", "bookworm-updates", ("main",)) in sources
    assert AptSource("deb-src", "http://mirror.example/debian", "bookworm", ("main",)) in sources
    assert AptSource("deb", "http://security.example/debian-security", "bookworm-security", ("main",)) in sources
    assert debian_source_lines(sources) == EXPECTED_LINES


def test_parse_deb822_format() -> None:
    sources = parse_deb822(DEB822)
    assert not any(source.uri == "http://disabled.example/debian" for source in sources)
    assert AptSource("deb", "https://node.example/node_20.x", "nodistro", ("main",)) in sources
    assert debian_source_lines(sources) == EXPECTED_LINES


def test_read_apt_sources_reads_both_formats_and_skips_other_suffixes(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text("deb http://off.example/debian bookworm main\n")
    lines = debian_source_lines(read_apt_sources(tmp_path))
    assert lines == EXPECTED_LINES
    assert not any("off.example" in line for line in lines)


def test_missing_bookworm_mirror_is_a_clear_build_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://archive.example/ubuntu jammy main\n")
    with pytest.raises(BuildError, match="no Debian bookworm mirror") as info:
        debian_source_lines(read_apt_sources(tmp_path))
    assert "sources.list.d" in info.value.hint


def test_ssh_config_content(tmp_path: Path) -> None:
    key = tmp_path / "ssh" / "id_ed25519"
    text = ssh_config_text(key)
    options = dict(line.strip().split(" ", 1) for line in text.splitlines() if line.startswith("  "))
    assert text.startswith("Host *\n")
    assert options["StrictHostKeyChecking"] == "no"
    assert options["UserKnownHostsFile"] == "/dev/null"
    assert options["BatchMode"] == "yes"
    assert options["IdentityFile"] == f'"{key}"'
    assert options["IdentitiesOnly"] == "yes"


def _cloud(root: Path) -> LocalCloud:
    return LocalCloud(
        root=root,
        endpoint_url="http://127.0.0.1:41234",
        moto_pid=1234,
        engine="podman",
        engine_env={"CONTAINERS_CONF": str(root / "containers.conf")},
        base_image="localhost/stamp/debian-base:bookworm",
        ssh_private_key=root / "ssh" / "id_ed25519",
        ssh_public_key=root / "ssh" / "id_ed25519.pub",
        ssh_config=root / "ssh" / "ssh_config",
    )


def test_aws_env_points_sdks_at_the_endpoint_without_max_attempts(tmp_path: Path) -> None:
    env = aws_env(_cloud(tmp_path))
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:41234"
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["STAMP_CLOUD"] == "local"
    assert "AWS_MAX_ATTEMPTS" not in env


def test_state_round_trips(tmp_path: Path) -> None:
    cloud = _cloud(tmp_path)
    assert LocalCloud.from_json(json.loads(json.dumps(cloud.to_json()))) == cloud


def test_cloud_id_is_per_state_folder(tmp_path: Path) -> None:
    assert cloud_id(tmp_path / "a") == cloud_id(tmp_path / "a")
    assert cloud_id(tmp_path / "a") != cloud_id(tmp_path / "b")


def test_container_image_for() -> None:
    assert container_image_for("ami-0123456789abcdef0") == "localhost/stamp/ami:ami-0123456789abcdef0"


def test_base_image_mimics_the_vendor_image() -> None:
    hook = customize_hook()
    assert "useradd --create-home --shell /bin/bash --groups sudo,adm admin" in hook
    assert "NOPASSWD:ALL" in hook
    assert "Defaults requiretty" not in hook
    assert 'rm -f "$root"/etc/ssh/ssh_host_*' in hook
    assert ': > "$root/etc/machine-id"' in hook
    assert INIT_SCRIPT in hook
    assert INIT_SCRIPT.rstrip().endswith("exec /sbin/init")
    # Host keys of the two kinds sshd prefers; which ones a launched instance has: tests/test_local_e2e.py.
    assert "for kind in ed25519 ecdsa; do" in INIT_SCRIPT and "ssh-keygen -A" not in INIT_SCRIPT
    assert "mkdir -p /run/sshd" in INIT_SCRIPT
    assert "Before=ssh.service" in USER_DATA_UNIT


def _engine_script(tmp_path: Path, answers: list[tuple[int, str]]) -> Engine:
    """An engine whose `image inspect` gives `answers` in turn (exit code, stderr), then keeps the last one."""
    state = tmp_path / "calls"
    lines = [f"n=$(cat {state} 2>/dev/null || echo 0); echo $((n + 1)) > {state}", 'case "$n" in']
    for index, (code, stderr) in enumerate(answers):
        pattern = str(index) if index < len(answers) - 1 else "*"
        lines.append(f"  {pattern}) echo '{stderr}' >&2; exit {code} ;;")
    lines.append("esac")
    script = tmp_path / "engine"
    script.write_text("#!/bin/sh\n" + "\n".join(lines) + "\n")
    script.chmod(0o755)
    return Engine(str(script), {"PATH": "/usr/bin:/bin"})


def _calls(tmp_path: Path) -> int:
    return int((tmp_path / "calls").read_text())


def test_an_engine_error_during_an_image_lookup_is_retried_not_taken_for_absence(tmp_path: Path) -> None:
    busy = (125, "Error: acquiring lock 0 for volume: database is locked")
    engine = _engine_script(tmp_path, [busy, (0, "")])
    assert image_exists(engine, "localhost/stamp/ami:ami-0123456789abcdef0")
    assert _calls(tmp_path) == 2


@pytest.mark.parametrize("absent", ["Error: localhost/x: image not known", "Error: No such image: localhost/x"])
def test_the_engines_own_no_such_image_answer_is_absence_at_once(tmp_path: Path, absent: str) -> None:
    engine = _engine_script(tmp_path, [(125, absent)])
    assert not image_exists(engine, "localhost/x")
    assert _calls(tmp_path) == 1


def test_an_engine_that_keeps_failing_a_lookup_is_an_error_naming_the_image(tmp_path: Path) -> None:
    engine = _engine_script(tmp_path, [(125, "Error: database is locked")])
    refused = r"telling whether the engine has image localhost/x failed 3 times: .*database is locked"
    with pytest.raises(CloudError, match=refused):
        image_exists(engine, "localhost/x")
    assert _calls(tmp_path) == READ_ATTEMPTS


def test_podman_answers_a_lookup_of_an_image_it_does_not_have() -> None:
    assert not image_exists(Engine("podman", dict(os.environ)), "localhost/stamp/never-built:nothing")


def test_an_image_listing_the_engine_fails_is_retried_not_taken_for_no_images(tmp_path: Path) -> None:
    # What Podman answers when another process removes an image during the listing (1 listing in 150 here).
    removed = (125, 'Error: retrieving label for image "53cd": image not known')
    engine = _engine_script(tmp_path, [removed, (0, "")])
    assert stamp_images(engine) == []
    assert _calls(tmp_path) == 2


def test_an_image_listing_that_keeps_failing_is_an_error(tmp_path: Path) -> None:
    engine = _engine_script(tmp_path, [(125, "Error: database is locked")])
    with pytest.raises(CloudError, match=r"listing the engine's images failed 3 times: Error: database is locked"):
        stamp_images(engine)
    assert _calls(tmp_path) == READ_ATTEMPTS


def test_a_container_the_engine_does_not_know_is_not_running_at_once(tmp_path: Path) -> None:
    engine = _engine_script(tmp_path, [(125, "Error: inspecting object: no such container c0ffee")])
    assert not _running(engine, "c0ffee")
    assert _calls(tmp_path) == 1


def test_an_engine_that_keeps_failing_a_state_read_is_an_error_not_a_stopped_instance(tmp_path: Path) -> None:
    engine = _engine_script(tmp_path, [(125, "Error: database is locked")])
    with pytest.raises(CloudError, match=r"reading the state of container c0ffee failed 3 times"):
        _running(engine, "c0ffee")
    assert _calls(tmp_path) == READ_ATTEMPTS
