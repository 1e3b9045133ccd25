"""Multi-region is all or nothing: a copy refused in one region fails the build, names what it left, records nothing."""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builders import commit_all
from conftest import local_target
from scoreboard import Scoreboard
from stamp import local
from stamp.catalog.load import load_catalog
from stamp.clock import utc_now
from stamp.cloud.aws import AwsCloud
from stamp.commands.build import build_image
from stamp.commands.gc import collect_garbage
from stamp.errors import BuildError
from stamp.hosts.local import LocalTarget

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
REFUSED = "eu-west-1"
CATALOG = """\
version: 1
defaults:
  regions: [us-east-1, eu-west-1, ap-southeast-2]
  instance_type: t3.micro
  ssh_username: admin
images:
  kit:
    description: a small image built in three regions
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/kit/provision.sh]
    tests: images/kit/tests
releases: {}
"""
PROVISION = "#!/usr/bin/env bash\nset -euo pipefail\necho kit > /etc/stamp-kit\n"
# The error EC2 gives when a region's AMI quota is used up: a real reason for one region's copy to fail.
REFUSAL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>ResourceLimitExceeded</Code>'
    b"<Message>You have reached your quota of AMIs in this region (injected by the test proxy)</Message>"
    b"</Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
)
# SigV4 names the region a request is for in its credential scope; Packer sends CopyImage to the destination.
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/ec2/")


class RefusingProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy in front of the moto server that refuses CopyImage into one region, as EC2 would.

    Packer reaches EC2 only through `custom_endpoint_ec2`, so this is the one place a failure can be put
    between Packer and the cloud without changing either; everything else is passed through unchanged.
    """

    def __init__(self, upstream: str, refused_region: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.refused_region = refused_region
        self.refused: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RefusingProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        if action == "CopyImage" and scope and scope.group(1) == self.server.refused_region:
            self.server.refused.append(scope.group(1))
            self._answer(400, [("Content-Type", "text/xml")], REFUSAL)
            return
        upstream = self.server.upstream
        connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        connection.request(self.command, self.path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_HEADERS]
        self._answer(answer.status, kept, data)
        connection.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _forward
    do_POST = _forward


_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "server", "date"}


@dataclass(frozen=True)
class Workspace:
    root: Path
    target: LocalTarget
    proxy: RefusingProxy

    @property
    def cloud(self) -> AwsCloud:
        assert isinstance(self.target.cloud, AwsCloud)
        return self.target.cloud


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("regions")
    (root / "catalog.yaml").write_text(CATALOG)
    (root / "images" / "kit" / "tests").mkdir(parents=True)
    (root / "images" / "kit" / "provision.sh").write_text(PROVISION)
    (root / "images" / "kit" / "tests" / "test_kit.py").write_text("def test_nothing(host):\n    pass\n")
    commit_all(root)
    target = local_target(load_catalog(root / "catalog.yaml"))
    assert target.local is not None
    proxy = RefusingProxy(target.local.endpoint_url, REFUSED)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield Workspace(root, target, proxy)
    finally:
        proxy.shutdown()
        proxy.server_close()
        local.down(root)


def _through_proxy(ws: Workspace) -> LocalTarget:
    """The same cloud, but Packer reaches EC2 through the refusing proxy (stamp's own calls go straight to moto)."""
    assert ws.target.local is not None
    return dataclasses.replace(ws.target, local=dataclasses.replace(ws.target.local, endpoint_url=ws.proxy.url))


def _own_images(ws: Workspace, region: str) -> dict[str, dict[str, str]]:
    images = ws.cloud.ec2(region).describe_images(Owners=["self"])["Images"]
    return {
        i["ImageId"]: {t["Key"]: t.get("Value", "") for t in i.get("Tags", [])} | {"Name": i["Name"]} for i in images
    }


@pytest.mark.e2e
def test_a_copy_refused_in_one_region_fails_the_build_and_names_what_it_left(
    workspace: Workspace, scoreboard: Scoreboard
) -> None:
    catalog = load_catalog(workspace.root / "catalog.yaml")
    build_root = workspace.root / "build"
    before = {region: set(_own_images(workspace, region)) for region in REGIONS}

    with pytest.raises(BuildError) as failed:
        build_image(catalog, "kit", _through_proxy(workspace), build_root=build_root)

    assert workspace.proxy.refused == [REFUSED]
    message = str(failed.value)
    build_id = re.search(r"build (kit-\d{14}-[0-9a-f]+) left", message)
    assert build_id is not None, message
    left = {
        region: {ami: tags for ami, tags in _own_images(workspace, region).items() if ami not in before[region]}
        for region in REGIONS
    }
    # Packer deregistered the AMI in the build region, but not the copy that succeeded next to the refused one;
    # it had not tagged that copy yet (1.6.6 tags after all copies), so stamp claimed it by its name.
    assert not left["us-east-1"] and not left[REFUSED]
    (copy_id, copy_tags), *more = left["ap-southeast-2"].items()
    assert not more
    assert copy_tags["stamp:build-id"] == build_id.group(1)
    assert f"ap-southeast-2: image {copy_id}, snapshot snap-" in message
    assert f"{REFUSED}: nothing" in message and "us-east-1: nothing" in message
    assert "ResourceLimitExceeded" in message and "stamp gc" in message
    # Nothing recorded, nothing shared.
    assert not (build_root / "kit" / "result.json").exists()
    assert not workspace.cloud.get_launch_permissions("ap-southeast-2", copy_id)

    report = collect_garbage(catalog, workspace.target, older_than=None, now=utc_now(), dry_run=False)
    assert {(item.kind, item.region) for item in report.removed} == {
        ("image", "ap-southeast-2"),
        ("snapshot", "ap-southeast-2"),
    }
    leftovers = [r for region in REGIONS for r in workspace.cloud.list_tagged(region, value=build_id.group(1))]
    scoreboard.add("region copies refused", tried=1, bad=len(leftovers))
    assert not leftovers
    snapshots = workspace.cloud.ec2("ap-southeast-2").describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert not [s for s in snapshots if copy_id in s.get("Description", "")]


@pytest.mark.e2e
def test_the_build_succeeds_when_no_copy_is_refused(workspace: Workspace) -> None:
    catalog = load_catalog(workspace.root / "catalog.yaml")
    result = build_image(catalog, "kit", workspace.target, build_root=workspace.root / "build")
    assert set(result.amis) == set(REGIONS)
    written = json.loads((workspace.root / "build" / "kit" / "result.json").read_text())
    assert written["amis"] == result.amis
