"""End-to-end tests of the local cloud: a real moto server, real containers, real SSH logins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from mypy_boto3_ec2 import EC2Client

from stamp.drivers import proc
from stamp.drivers.ssh import ssh_args
from stamp.errors import CloudError
from stamp.local import (
    Container,
    LocalCloud,
    SeedImage,
    aws_env,
    commit,
    down,
    launch,
    list_instances,
    status,
    terminate,
    up,
)
from stamp.local.containers import CLOUD_LABEL
from stamp.local.instances import wait_for_ssh
from stamp.local.moto_process import pid_alive

pytestmark = pytest.mark.e2e

SEED = SeedImage(
    name="debian-12-amd64-20261101-1234",
    owner_id="136693071363",
    creation_date="2026-11-01T12:34:00.000Z",
    description="Debian 12 (20261101-1234)",
)
LATE_SEED = SeedImage(
    name="debian-12-amd64-20261115-2000",
    owner_id="136693071363",
    creation_date="2026-11-15T20:00:00.000Z",
)


@pytest.fixture(scope="session")
def repo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A scratch repository root, so these tests never touch anyone's .stamp/ in a real checkout.
    return tmp_path_factory.mktemp("local-cloud-repo")


@pytest.fixture(scope="session")
def cloud(repo_root: Path) -> Iterator[LocalCloud]:
    started = time.monotonic()
    local = up(repo_root, [SEED])
    print(f"\nlocal cloud up in {time.monotonic() - started:.1f} s")
    try:
        yield local
    finally:
        down(repo_root)


def ec2(cloud: LocalCloud, region: str) -> EC2Client:
    env = aws_env(cloud)
    return boto3.client(
        "ec2",
        region_name=region,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def ssh(cloud: LocalCloud, instance: Container, command: str) -> str:
    args = ssh_args(cloud.ssh_config, instance.ssh_host, instance.ssh_port, instance.ssh_user, command)
    return proc.run(args, timeout=60).stdout.strip()


def test_up_twice_reuses_the_running_cloud(cloud: LocalCloud, repo_root: Path) -> None:
    started = time.monotonic()
    again = up(repo_root, [SEED])
    print(f"warm up in {time.monotonic() - started:.2f} s")
    assert again.endpoint_url == cloud.endpoint_url
    assert again.moto_pid == cloud.moto_pid
    assert status(repo_root) == again
    assert (repo_root / ".stamp" / "local" / "state.json").is_file()


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_seed_is_found_by_the_catalog_filter(cloud: LocalCloud, region: str) -> None:
    images = ec2(cloud, region).describe_images(
        Filters=[{"Name": "name", "Values": ["debian-12-amd64-*"]}], Owners=["136693071363"]
    )["Images"]
    assert [image["ImageId"] for image in images] == [SEED.resolved_ami_id]
    assert images[0]["Name"] == SEED.name
    assert images[0]["RootDeviceType"] == "ebs"
    assert images[0]["CreationDate"].startswith("2026-11-01T12:34:00")


def test_a_seed_added_later_is_served_without_restarting(cloud: LocalCloud, repo_root: Path) -> None:
    again = up(repo_root, [SEED, LATE_SEED])
    assert again.moto_pid == cloud.moto_pid
    for region in ("us-east-1", "ap-southeast-2"):
        images = ec2(cloud, region).describe_images(
            Filters=[{"Name": "name", "Values": [LATE_SEED.name]}], Owners=[LATE_SEED.owner_id]
        )["Images"]
        assert [image["ImageId"] for image in images] == [LATE_SEED.resolved_ami_id]


def test_created_and_copied_images_are_ebs_backed(cloud: LocalCloud) -> None:
    client = ec2(cloud, "us-east-1")
    run = client.run_instances(ImageId=SEED.resolved_ami_id, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    instance_id = run["Instances"][0]["InstanceId"]
    image_id = client.create_image(InstanceId=instance_id, Name="stamp-e2e-created")["ImageId"]
    created = client.describe_images(ImageIds=[image_id])["Images"][0]
    assert created["RootDeviceType"] == "ebs"
    copy_id = ec2(cloud, "eu-west-1").copy_image(SourceImageId=image_id, SourceRegion="us-east-1", Name="copy")[
        "ImageId"
    ]
    copied = ec2(cloud, "eu-west-1").describe_images(ImageIds=[copy_id])["Images"][0]
    assert copied["RootDeviceType"] == "ebs"


@pytest.fixture(scope="module")
def two_instances(cloud: LocalCloud) -> Iterator[tuple[Container, Container]]:
    started = time.monotonic()
    first = launch(
        cloud,
        SEED.resolved_ami_id,
        name="e2e-a",
        ssh_user="admin",
        labels={"stamp.test": "pair"},
        user_data="#!/bin/sh\necho user-data ran as $(id -un)\n",
    )
    print(f"\nlaunch to SSH-ready in {time.monotonic() - started:.2f} s")
    second = launch(cloud, SEED.resolved_ami_id, name="e2e-b", ssh_user="admin", labels={"stamp.test": "pair"})
    try:
        yield first, second
    finally:
        terminate(cloud, first.container_id)
        terminate(cloud, second.container_id)


def test_launched_instance_is_like_the_vendor_image(
    cloud: LocalCloud, two_instances: tuple[Container, Container]
) -> None:
    first, _ = two_instances
    assert first.ssh_host == "127.0.0.1"
    assert ssh(cloud, first, "id -un") == "admin"
    assert ssh(cloud, first, "sudo -n true && echo ok") == "ok"
    assert ssh(cloud, first, "ps -p 1 -o comm=") == "systemd"
    assert ssh(cloud, first, "systemctl is-active ssh") == "active"
    assert ssh(cloud, first, "python3 -c 'print(42)'") == "42"
    assert ssh(cloud, first, "cat /var/log/stamp-user-data.log") == "user-data ran as root"


def test_each_instance_has_its_own_host_keys_and_machine_id(
    cloud: LocalCloud, two_instances: tuple[Container, Container]
) -> None:
    first, second = two_instances
    # ed25519 and ECDSA, no RSA: an RSA key would cost 0.5-1 s of CPU on every boot (docs/local-cloud.md, Host keys).
    kinds = "cd /etc/ssh && ls ssh_host_*_key"
    assert ssh(cloud, first, kinds).split() == ["ssh_host_ecdsa_key", "ssh_host_ed25519_key"]
    keys = "cat /etc/ssh/ssh_host_*_key.pub"
    assert ssh(cloud, first, keys) != ssh(cloud, second, keys)
    # sshd serves both and names no missing key as its own.
    journal = ssh(cloud, first, "sudo journalctl -u ssh --no-pager")
    assert "Server listening" in journal and "ssh_host_rsa_key" not in journal
    ids = [ssh(cloud, instance, "cat /etc/machine-id") for instance in two_instances]
    assert all(len(machine_id) == 32 for machine_id in ids)
    assert ids[0] != ids[1]


def test_list_instances_filters_by_labels(cloud: LocalCloud, two_instances: tuple[Container, Container]) -> None:
    ids = {instance.container_id for instance in two_instances}
    assert set(list_instances(cloud, {"stamp.test": "pair"})) == ids
    assert ids <= set(list_instances(cloud))
    assert list_instances(cloud, {"stamp.test": "nobody"}) == []


def test_commit_then_launch_from_the_new_ami(cloud: LocalCloud) -> None:
    builder = launch(cloud, SEED.resolved_ami_id, name="e2e-builder", ssh_user="admin", labels={"stamp.test": "b"})
    try:
        ssh(cloud, builder, "echo baked | sudo tee /etc/stamp-e2e-marker >/dev/null")
        old_key = ssh(cloud, builder, "cat /etc/ssh/ssh_host_ed25519_key.pub")
        started = time.monotonic()
        ref = commit(cloud, builder.container_id, ["ami-0e2e000000000000a", "ami-0e2e000000000000b"])
        print(f"\ncommit in {time.monotonic() - started:.2f} s")
    finally:
        terminate(cloud, builder.container_id)
    assert ref == "localhost/stamp/ami:ami-0e2e000000000000a"
    child = launch(cloud, "ami-0e2e000000000000b", name="e2e-child", ssh_user="admin")
    try:
        assert ssh(cloud, child, "cat /etc/stamp-e2e-marker") == "baked"
        # A committed image still boots as a new instance: fresh host keys, like cloud-init on EC2.
        assert ssh(cloud, child, "cat /etc/ssh/ssh_host_ed25519_key.pub") != old_key
        assert ssh(cloud, child, "ps -p 1 -o comm=") == "systemd"
        # Like an EC2 instance and its AMI's tags, the child does not inherit the builder's labels.
        assert list_instances(cloud, {"stamp.test": "b"}) == []
        assert list_instances(cloud, {"stamp.local.ami": "ami-0e2e000000000000b"}) == [child.container_id]
    finally:
        terminate(cloud, child.container_id)
        # Engine images outlive the cloud; drop this test's so repeated runs do not pile them up.
        proc.run(
            [cloud.engine, "rmi", "--force", ref, "localhost/stamp/ami:ami-0e2e000000000000b"],
            env=cloud.engine_env,
            check=False,
        )


def test_launch_of_an_ami_without_an_image_names_the_ami(cloud: LocalCloud) -> None:
    with pytest.raises(CloudError, match="ami-0ffffffffffffffff"):
        launch(cloud, "ami-0ffffffffffffffff", name="e2e-missing", ssh_user="admin")


def test_an_instance_that_never_takes_ssh_logins_is_an_error_saying_what_its_boot_waits_for(
    cloud: LocalCloud,
) -> None:
    instance = launch(cloud, SEED.resolved_ami_id, name="e2e-no-sshd", ssh_user="admin", wait=False)
    try:
        engine = cloud.engine_handle
        stopped = ["exec", instance.container_id, "systemctl", "mask", "--now", "ssh.service", "ssh.socket"]
        # Once booted, sshd goes; the console's last lines then say so.
        deadline = time.monotonic() + 60
        while engine.run(stopped, what="test", check=False, echo=False).returncode != 0:
            assert time.monotonic() < deadline, "systemd in the instance never answered"
            time.sleep(0.5)
        with pytest.raises(CloudError) as failed:
            wait_for_ssh(cloud, instance, timeout=2)
        message = failed.value.message
        assert f"did not accept SSH logins as admin on 127.0.0.1:{instance.ssh_port} within 2 s" in message
        assert "--- systemctl list-jobs ---" in message and "No jobs running." in message
        assert "--- sshd's banner on port 22 inside the instance ---" in message
        assert "ConnectionRefusedError" in message
        assert "--- last lines of its console ---" in message
    finally:
        terminate(cloud, instance.container_id)


def test_terminate_is_harmless_when_already_gone(cloud: LocalCloud) -> None:
    instance = launch(cloud, SEED.resolved_ami_id, name="e2e-gone", ssh_user="admin", wait=False)
    terminate(cloud, instance.container_id)
    terminate(cloud, instance.container_id)
    assert instance.container_id not in list_instances(cloud)


def test_down_removes_containers_and_stops_moto(tmp_path: Path) -> None:
    # Its own cloud, so the session's cloud stays up for the other tests whatever the order.
    local = up(tmp_path, [SEED])
    launch(local, SEED.resolved_ami_id, name="e2e-down", ssh_user="admin", wait=False)
    assert list_instances(local)
    down(tmp_path)
    assert status(tmp_path) is None
    assert not pid_alive(local.moto_pid)
    # Containers of other local clouds sharing this engine (other checkouts) are none of down's business.
    left = proc.run(
        [local.engine, "ps", "--all", "--quiet", "--filter", f"label={CLOUD_LABEL}={local.cloud_id}"],
        env=local.engine_env,
    ).stdout.split()
    assert left == []
    assert local.ssh_private_key.is_file()
    down(tmp_path)  # a second down is harmless
