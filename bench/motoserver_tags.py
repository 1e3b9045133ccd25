"""The local cloud's moto server against moto's own, side by side on the same state: DescribeImages and
DescribeInstances with a tag filter, once N built images (and the instances they came from) carry tags.

stamp's server reads a resource's tags from its own entry (tools/stamp/local/motoserver.py,
patch_per_request_costs); moto's scans every tag in the region for each resource and each filter.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from stamp.local.credentials import BUILTIN_KEYS
from stamp.local.moto_process import moto_answers

TARGET_RATIO = 0.75


def start(module: str, amis: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    port_args = ["--port", str(port)] if module.startswith("stamp") else ["-p", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", module, *port_args],
        env={**os.environ, "MOTO_AMIS_PATH": str(amis)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not moto_answers(url, timeout=1.0):
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{module} did not start")
        time.sleep(0.2)
    return server, url


def populate(ec2: Any, images: int) -> None:
    """Images made as builds make them: an instance (tagged), CreateImage, the image tagged."""
    for i in range(images):
        tags = [
            {"Key": "stamp:image", "Value": "web" if i % 2 else "base"},
            {"Key": "stamp:build-id", "Value": f"web-2026113012000{i}"},
            {"Key": "Name", "Value": f"build {i}"},
        ]
        instance = ec2.run_instances(
            ImageId="ami-12345678",
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]
        ami = ec2.create_image(InstanceId=instance, Name=f"image-{i}")["ImageId"]
        ec2.create_tags(Resources=[ami], Tags=tags)


def seconds_per_read(ec2: Any, rounds: int) -> float:
    started = time.monotonic()
    for _ in range(rounds):
        web = [{"Name": "tag:stamp:image", "Values": ["web"]}]
        ec2.describe_images(Owners=["self"], Filters=web)
        ec2.describe_instances(Filters=web)
    return (time.monotonic() - started) / rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    measured: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        amis = Path(folder) / "amis.json"
        amis.write_text("[]")
        for module in ("moto.server", "stamp.local.motoserver"):
            server, url = start(module, amis)
            try:
                ec2 = boto3.client(  # type: ignore[call-overload]
                    "ec2",
                    endpoint_url=url,
                    region_name="us-east-1",
                    aws_access_key_id=BUILTIN_KEYS[0],
                    aws_secret_access_key=BUILTIN_KEYS[1],
                )
                populate(ec2, args.images)
                measured[module] = seconds_per_read(ec2, args.rounds)
            finally:
                server.terminate()
                server.wait(timeout=30)
    ratio = measured["stamp.local.motoserver"] / measured["moto.server"]
    print(
        f"local cloud tag reads ({args.images} images): stamp's moto server"
        f" {measured['stamp.local.motoserver'] * 1000:.0f} ms, moto's {measured['moto.server'] * 1000:.0f} ms"
        f" per DescribeImages + DescribeInstances; ratio {ratio:.2f}, target <= {TARGET_RATIO}:"
        f" {'ok' if ratio <= TARGET_RATIO else 'MISSED'}"
    )
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
