"""The local cloud's decisions without a cloud: which images `down` removes, which user-data runs, the apt cache's
configuration, the lost-AMI warning."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fakes import FakeCloud
from stamp.catalog.models import Release, ReleaseSource
from stamp.errors import CatalogError
from stamp.local import LocalCloud, user_data_kind
from stamp.local.aptcache import AptCache, build_apt_config, config_text, mirror_hosts
from stamp.local.baseimage import APT_BUILD_CONF, BASE_IMAGE, CLOUD_CFG, INIT_SCRIPT, customize_hook
from stamp.local.containers import CLOUD_LABEL, LIFE_LABEL, STATE_LABEL, StampImage, _created, seed_image_for
from stamp.local.removable_images import images_to_remove
from stamp.local.stale import absent_amis, release_warnings
from stamp.local.state_file import cloud_id, state_root, write_state

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _cloud(root: Path, pid: int) -> LocalCloud:
    return LocalCloud(
        root=root,
        endpoint_url="http://127.0.0.1:41234",
        moto_pid=pid,
        engine="podman",
        engine_env={},
        base_image=BASE_IMAGE,
        ssh_private_key=root / "id",
        ssh_public_key=root / "id.pub",
        ssh_config=root / "config",
        seeds=("ami-0aaaaaaaaaaaaaaa1",),
        apt_cache_url="http://10.88.0.1:23142",
        apt_cache_pid=4321,
        apt_hosts=("mirror.example",),
    )


def _image(ref: str, labels: dict[str, str] | None = None, age: timedelta = timedelta(0)) -> StampImage:
    return StampImage(ref, "id-" + ref, labels or {}, NOW - age)


def _labels(root: Path, life: int) -> dict[str, str]:
    return {CLOUD_LABEL: cloud_id(root), STATE_LABEL: str(root), LIFE_LABEL: str(life)}


@pytest.fixture
def moto_like() -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line names the moto entry point, as a running local cloud's server does."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "stamp.local.motoserver"])
    # Right after the spawn, /proc/<pid>/cmdline can still be empty on some kernels (seen under gVisor).
    cmdline = Path(f"/proc/{child.pid}/cmdline")
    deadline = time.monotonic() + 10
    while b"stamp.local.motoserver" not in cmdline.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield child
    child.kill()
    child.wait()


def test_down_takes_its_own_images_and_dead_clouds_but_not_running_ones(
    tmp_path: Path, moto_like: subprocess.Popen[bytes]
) -> None:
    this = state_root(tmp_path / "this")
    running = state_root(tmp_path / "running")
    dead = state_root(tmp_path / "dead")
    running.mkdir(parents=True)
    write_state(_cloud(running, moto_like.pid))
    images = [
        _image("localhost/stamp/ami:ami-1", _labels(this, 111)),  # this cloud, an earlier life
        _image("localhost/stamp/ami:ami-2", _labels(running, moto_like.pid)),  # a running cloud's
        _image("localhost/stamp/ami:ami-3", _labels(running, 999)),  # the running cloud's earlier life
        _image("localhost/stamp/ami:ami-4", _labels(dead, 222)),  # a cloud with no state left
        _image(seed_image_for(cloud_id(this), "ami-5")),  # this cloud's name for a seed
        _image(seed_image_for(cloud_id(running), "ami-5")),  # another cloud's
        _image("localhost/stamp/ami:ami-6"),  # an older stamp's seed name
        _image("localhost/stamp/ami:ami-7", {CLOUD_LABEL: "0123456789ab"}, timedelta(hours=2)),  # an older stamp's
        _image("localhost/stamp/ami:ami-8", {CLOUD_LABEL: "0123456789ab"}, timedelta(minutes=5)),  # too recent
    ]
    doomed = images_to_remove(images, this, set(), now=NOW)
    assert doomed == [
        "localhost/stamp/ami:ami-1",
        "localhost/stamp/ami:ami-3",
        "localhost/stamp/ami:ami-4",
        seed_image_for(cloud_id(this), "ami-5"),
        "localhost/stamp/ami:ami-6",
        "localhost/stamp/ami:ami-7",
    ]
    # While a cloud of an older stamp has containers, what it may launch stays.
    kept = images_to_remove(images, this, {"0123456789ab"}, now=NOW)
    assert "localhost/stamp/ami:ami-6" not in kept and "localhost/stamp/ami:ami-7" not in kept
    assert "localhost/stamp/ami:ami-1" in kept


def test_engine_creation_times_are_read_to_the_microsecond() -> None:
    assert _created("2026-11-30T09:24:59.370539734Z") == datetime(2026, 11, 30, 9, 24, 59, 370539, tzinfo=UTC)
    assert _created("2026-11-30T09:24:59Z") == datetime(2026, 11, 30, 9, 24, 59, tzinfo=UTC)
    assert _created("") is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("#!/bin/sh\necho hi\n", "script"),
        ("#!/usr/bin/env python3\n", "script"),
        ("#cloud-config\nruncmd: [true]\n", "cloud-config"),
        ("#cloud-config  \r\npackages: [jq]\n", "cloud-config"),
        ("", "none"),
        (" \n\n", "none"),
    ],
)
def test_user_data_kinds_that_run(text: str, kind: str) -> None:
    assert user_data_kind(text) == kind


@pytest.mark.parametrize(
    "text", ["#include https://example.invalid/x\n", "#cloud-boothook\n", "Content-Type: multipart/x\n", "\nhi", "hi"]
)
def test_other_user_data_is_refused(text: str) -> None:
    with pytest.raises(CatalogError, match="cannot run on the local cloud") as refused:
        user_data_kind(text)
    assert "#cloud-config" in str(refused.value) and refused.value.exit_code == 1


def test_the_first_boot_shim_and_the_user_data_kinds_agree(tmp_path: Path) -> None:
    """The shim decides with `case` what Python decided; run that part of it on the same inputs."""
    case = INIT_SCRIPT[INIT_SCRIPT.index("kind=none") : INIT_SCRIPT.index("instance_id=")]
    for text in ("#!/bin/sh\n", "#cloud-config\n", "#cloud-config \n", "#include x\n", "#cloud-config-archive\n"):
        (tmp_path / "user-data").write_text(text)
        shell = case.replace('"$seed/user-data"', f'"{tmp_path}/user-data"') + 'printf %s "$kind"'
        got = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout
        try:
            expected = user_data_kind(text)
        except CatalogError:
            expected = "other"
        assert got == expected, text


def test_the_base_image_runs_cloud_init_only_for_cloud_config() -> None:
    hook = customize_hook()
    assert "/etc/cloud/cloud-init.disabled" in hook and CLOUD_CFG in hook
    assert "datasource_list: [NoCloud, None]" in CLOUD_CFG
    assert "rm -f /etc/cloud/cloud-init.disabled" in INIT_SCRIPT
    assert f'install -m 0644 "$seed/apt.conf" {APT_BUILD_CONF}' in INIT_SCRIPT
    assert BASE_IMAGE.startswith("localhost/stamp/debian-base:bookworm-") and len(BASE_IMAGE.rsplit("-", 1)[1]) == 12


def test_apt_cache_configuration() -> None:
    text = config_text(Path("/state/apt-cache"), "10.88.0.1", 23142)
    assert "BindAddress: 10.88.0.1\n" in text and "Port: 23142\n" in text and "ForeGround: 1\n" in text
    assert "Remap" not in text
    hosts = mirror_hosts(
        [
            "deb http://mirror.example/debian bookworm main",
            "deb http://mirror.example/debian bookworm-updates main",
            "deb http://security.example/debian-security bookworm-security main",
            "deb https://tls.example/debian x main",
        ]
    )
    assert hosts == ["mirror.example", "security.example"]
    conf = build_apt_config(AptCache("http://10.88.0.1:23142", 1), hosts)
    assert 'Acquire::http::Proxy::mirror.example "http://10.88.0.1:23142/";' in conf
    assert 'Acquire::http::Proxy::security.example "http://10.88.0.1:23142/";' in conf
    assert 'Acquire::Languages "none";' in conf
    assert 'Acquire::CompressionTypes::Order:: "gz";' in conf
    assert 'Acquire::http::Proxy "' not in conf  # every other host stays direct


def test_state_keeps_the_apt_cache_and_reads_older_state(tmp_path: Path) -> None:
    cloud = _cloud(tmp_path, 1234)
    assert LocalCloud.from_json(json.loads(json.dumps(cloud.to_json()))) == cloud
    older = {k: v for k, v in cloud.to_json().items() if not k.startswith("apt_")}
    read = LocalCloud.from_json(older)
    assert (read.apt_cache, read.build_apt_config()) == (None, None)
    assert cloud.build_apt_config() == build_apt_config(AptCache(cloud.apt_cache_url, 4321), ["mirror.example"])


def test_the_lost_ami_warning_names_release_ami_and_the_fix() -> None:
    cloud = FakeCloud()
    kept = cloud.add_image("us-east-1", "base-3").ami_id
    release = Release(
        version=3,
        amis={"us-east-1": kept, "eu-west-1": "ami-0fedcba9876543210"},
        built_at="2026-11-20T10:00:00Z",
        commit="1a2b3c4d5e6f",
        build_id="base-3-abc123",
        source=ReleaseSource(amis={"us-east-1": "ami-0aaaaaaaaaaaaaaaa"}),
        verified="passed",
        status="current",
    )
    assert absent_amis(cloud, release.amis) == {"eu-west-1": "ami-0fedcba9876543210"}
    assert release_warnings(cloud, [("base", release, "us-east-1")]) == []
    (line,) = release_warnings(cloud, [("base", release, "us-east-1"), ("base", release, None)])
    assert line == (
        "warning: base v3's AMI ami-0fedcba9876543210 (eu-west-1) does not exist in this local cloud (a restarted"
        " local cloud loses its AMIs): run `stamp release base` again"
    )
