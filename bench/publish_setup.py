"""The publish benchmarks' world: a moto server in its own process, AMIs made through the API, a catalog for them."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from stamp.catalog.load import Catalog, load_catalog
from stamp.cloud.aws import AwsCloud
from stamp.drivers import proc
from stamp.local.moto_process import moto_answers

ORG = "arn:aws:organizations::111122223333:organization/o-exampleorg1"
OU = "arn:aws:organizations::111122223333:ou/o-exampleorg1/ou-ab12-cd34ef56"
CREDENTIALS = ("bench", "bench")


def principals(count: int) -> dict[str, list[str]]:
    """A share of `count` entities: one organization, one OU, and accounts for the rest."""
    return {
        "accounts": [f"{100000000000 + n:012d}" for n in range(count - 2)],
        "organizations": [ORG],
        "organizational_units": [OU],
    }


@contextmanager
def moto_server(root: Path) -> Iterator[str]:
    """stamp's local moto server in a process of its own, so its work does not share this one's interpreter lock
    with the threads being measured (AWS, too, answers from elsewhere)."""
    seeds = root / "no-seeds.json"
    seeds.write_text("[]\n", encoding="utf-8")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    child = proc.start(
        [sys.executable, "-m", "stamp.local.motoserver", "--port", str(port)],
        env={"MOTO_AMIS_PATH": str(seeds)},
        log=root / "moto.log",
    )
    try:
        deadline = time.monotonic() + 30
        while not moto_answers(endpoint, timeout=1.0):
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the moto server did not start; see {root / 'moto.log'}")
            time.sleep(0.1)
        yield endpoint
    finally:
        child.terminate()
        child.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reset(endpoint: str) -> None:
    """Empties every moto backend (moto's own reset API)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310 - local moto
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - local moto
        answer.read()


def cloud(endpoint: str, *, latency: float = 0.0) -> AwsCloud:
    """AwsCloud on the moto server; with `latency`, every request first waits that long, as a round trip to AWS
    would (moto on this machine answers in about a millisecond)."""
    session = boto3.session.Session(aws_access_key_id=CREDENTIALS[0], aws_secret_access_key=CREDENTIALS[1])
    if latency:
        # Registered on the session, so every client AwsCloud makes from it (one per service and region) has it.
        session.events.register("before-send", _sleeper(latency))
    return AwsCloud(endpoint, session=session)


def _sleeper(seconds: float) -> Callable[..., None]:
    def before_send(**_: Any) -> None:
        time.sleep(seconds)

    return before_send


def make_amis(endpoint: str, regions: list[str], images: int) -> dict[str, dict[str, str]]:
    """image name -> region -> AMI ID: one RegisterImage call per AMI, the regions in parallel."""
    maker = cloud(endpoint)

    def region_amis(region: str) -> dict[str, str]:
        ec2 = maker.ec2(region)
        return {f"img-{i:03d}": ec2.register_image(Name=f"img-{i:03d}-1")["ImageId"] for i in range(images)}

    with ThreadPoolExecutor(max_workers=8) as pool:
        per_region = dict(zip(regions, pool.map(region_amis, regions), strict=True))
    return {name: {region: per_region[region][name] for region in regions} for name in per_region[regions[0]]}


def publish_catalog(root: Path, amis: dict[str, dict[str, str]], regions: list[str], share: dict[str, Any]) -> Catalog:
    """One current release per image, every image root-level and shared with `share`."""
    images = {
        name: {"source": {"filter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}}, "share": share}
        for name in amis
    }
    releases = {
        name: [
            {
                "version": 1,
                "amis": by_region,
                "built_at": "2026-11-26T12:00:00Z",
                "commit": "1a2b3c4d5e6f",
                "build_id": f"{name}-1-abcdef",
                "source": {"amis": {regions[0]: "ami-0aaaaaaaaaaaaaaaa"}},
                "verified": "passed",
                "status": "current",
            }
        ]
        for name, by_region in amis.items()
    }
    path = root / "publish-catalog.yaml"
    document = {"version": 1, "defaults": {"regions": regions}, "images": images, "releases": releases}
    path.write_text(json.dumps(document) + "\n", encoding="utf-8")
    return load_catalog(path, check_files=False)
