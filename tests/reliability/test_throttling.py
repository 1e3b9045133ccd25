"""Throttling and eventual consistency, injected with botocore before-send hooks into AwsCloud talking to moto."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HTTPHeaders

from builders import build_result, release_entry
from conftest import MakeAmi, MotoEndpoint
from scoreboard import Scoreboard
from stamp.catalog.load import Catalog, load_catalog
from stamp.catalog.results import BuildResult
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import ShareSet
from stamp.cloud.publish_policy import parameter_name
from stamp.cloud.sharing import publish
from stamp.commands.record import record
from stamp.errors import CatalogError, CloudError, PublishFailed

REGIONS = ("us-east-1", "eu-west-1")
ORG = "arn:aws:organizations::111122223333:organization/o-exampleorg1"
SHARE = ShareSet(accounts=frozenset({"111122223333", "444455556666"}), organizations=frozenset({ORG}))
MAX_ATTEMPTS = 10  # AwsCloud's default
# botocore's standard backoff before retry i (0-based) is rand(0, 1) * min(2 ** i, 20) seconds for a throttle:
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
MAX_BACKOFF = 20.0
WORST_CASE_PER_CALL = sum(min(2.0**i, MAX_BACKOFF) for i in range(MAX_ATTEMPTS - 1))  # 111 s
EC2_OPERATIONS = ("DescribeImages", "DescribeSnapshots", "DescribeImageAttribute", "ModifyImageAttribute")
SSM_OPERATIONS = ("GetParameters", "PutParameter")


class _Raw:
    """The raw body botocore reads from an AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body.read()


def _throttle_response(request: AWSPreparedRequest, service: str) -> AWSResponse:
    """What EC2 (query protocol, HTTP 503) and SSM (JSON protocol, HTTP 400) answer when they throttle."""
    if service == "ssm":
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.1"
        return AWSResponse(request.url, 400, headers, _Raw(body))
    body = (
        b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
        b"</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
    )
    return AWSResponse(request.url, 503, HTTPHeaders(), _Raw(body))


def _attempt(request: AWSPreparedRequest) -> int:
    # botocore numbers the attempts of one call in this header (`attempt=2; max=10`).
    match = re.search(r"attempt=(\d+)", str(request.headers.get("amz-sdk-request", "")))
    return int(match.group(1)) if match else 1


@dataclass
class Throttler:
    """Answers the first `burst` attempts of every matching call with a throttle (`burst` None: every attempt)."""

    burst: int | None
    injected: int = 0
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, service: str) -> Callable[..., Any]:
        def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
            with self._lock:
                self.attempts += 1
                if self.burst is not None and _attempt(request) > self.burst:
                    return None
                self.injected += 1
            return _throttle_response(request, service)

        return before_send

    def install(
        self, cloud: AwsCloud, regions: tuple[str, ...], ec2: tuple[str, ...], ssm: tuple[str, ...] = ()
    ) -> None:
        for region in regions:
            for operation in ec2:
                cloud.ec2(region).meta.events.register(f"before-send.ec2.{operation}", self.hook("ec2"))
            for operation in ssm:
                cloud.ssm(region).meta.events.register(f"before-send.ssm.{operation}", self.hook("ssm"))


class FakeTime:
    """A clock that moves only when AwsCloud sleeps, so minutes of backoff take no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _cloud(moto: MotoEndpoint, fake: FakeTime, mode: str = "standard") -> AwsCloud:
    # Standard mode in most tests: adaptive mode adds a client-side rate limiter after a throttle that waits in
    # real time; one test below runs the production default (adaptive) as well.
    return AwsCloud(moto.url, retry_mode=mode, sleep=fake.sleep, clock=fake.clock)  # type: ignore[arg-type]


def _catalog(tmp_path: Path, amis: dict[str, dict[str, str]]) -> Catalog:
    document = {
        "version": 1,
        "defaults": {"regions": list(REGIONS)},
        "images": {
            "base": {"source": {"filter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}}},
            "web": {
                "parent": "base",
                "share": {"accounts": sorted(SHARE.accounts), "organizations": [ORG]},
            },
        },
        "releases": {"web": [release_entry(2, amis["v2"], "current"), release_entry(1, amis["v1"], "previous")]},
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return load_catalog(path, check_files=False)


@pytest.fixture
def web_amis(make_ami: MakeAmi) -> dict[str, dict[str, str]]:
    return {f"v{v}": {region: make_ami(region, f"web-{v}") for region in REGIONS} for v in (1, 2)}


def _converged(cloud: AwsCloud, amis: dict[str, dict[str, str]]) -> int:
    """How many AMI-regions (and current parameters) differ from the catalog: 0 when publish is complete."""
    wrong = sum(cloud.get_launch_permissions(r, amis[v][r]) != SHARE for v in amis for r in REGIONS)
    for region in REGIONS:
        parameter = cloud.get_parameters(region, [parameter_name("web")]).get(parameter_name("web"))
        wrong += parameter is None or parameter.value != amis["v2"][region]
    return wrong


# -- bursts below the retry bound ------------------------------------------------------------------------


@pytest.mark.parametrize("burst", [1, 3, MAX_ATTEMPTS - 1])
def test_a_burst_of_throttles_below_the_bound_is_retried_with_backoff_and_publish_succeeds(
    tmp_path: Path, moto: MotoEndpoint, web_amis: dict[str, dict[str, str]], scoreboard: Scoreboard, burst: int
) -> None:
    fake = FakeTime()
    cloud = _cloud(moto, fake)
    throttler = Throttler(burst)
    # Every call publish makes, in both regions, is throttled `burst` times before it goes through.
    throttler.install(cloud, REGIONS, EC2_OPERATIONS, SSM_OPERATIONS)
    started = time.monotonic()
    failures = 0
    try:
        publish(_catalog(tmp_path, web_amis), cloud, None, dry_run=False)
    except CloudError:
        failures += 1
    failures += _converged(cloud, web_amis)
    scoreboard.add("throttles injected", tried=throttler.injected, bad=failures)

    assert failures == 0
    assert throttler.injected >= 10 * burst
    # Each throttle was retried once, after a backoff slept on the fake clock, capped and growing per attempt.
    assert sum(cloud.retry_counts().values()) == throttler.injected == len(fake.sleeps)
    assert all(0 <= s <= min(2.0 ** (burst - 1), MAX_BACKOFF) for s in fake.sleeps)
    assert time.monotonic() - started < 30


def test_the_production_default_adaptive_mode_retries_a_burst_too(
    moto: MotoEndpoint, make_ami: MakeAmi, scoreboard: Scoreboard
) -> None:
    ami_id = make_ami("us-east-1", "web-1")
    fake = FakeTime()
    cloud = AwsCloud(moto.url, sleep=fake.sleep, clock=fake.clock)
    throttler = Throttler(2)
    throttler.install(cloud, ("us-east-1",), ("DescribeImages",))
    details = cloud.wait_until_available("us-east-1", ami_id, timeout=0)
    scoreboard.add("throttles injected", tried=throttler.injected, bad=int(details.ami_id != ami_id))
    assert (throttler.injected, len(fake.sleeps)) == (2, 2)
    assert cloud.call_counts() == {"DescribeImages": 1}


# -- sustained throttling: a bounded, clean failure -------------------------------------------------------


def test_sustained_throttling_fails_within_a_bounded_time_naming_what_was_not_applied(
    tmp_path: Path, moto: MotoEndpoint, web_amis: dict[str, dict[str, str]], scoreboard: Scoreboard
) -> None:
    fake = FakeTime()
    cloud = _cloud(moto, fake)
    throttler = Throttler(None)
    throttler.install(cloud, ("eu-west-1",), ("ModifyImageAttribute",))
    catalog = _catalog(tmp_path, web_amis)
    started = time.monotonic()
    with pytest.raises(PublishFailed) as caught:
        publish(catalog, cloud, None, dry_run=False)
    elapsed = time.monotonic() - started
    error = caught.value

    # Bounded: each of the two calls gave up after MAX_ATTEMPTS tries and at most 111 s of (fake) backoff.
    assert throttler.attempts == 2 * MAX_ATTEMPTS
    assert sum(fake.sleeps) <= 2 * WORST_CASE_PER_CALL
    assert elapsed < 10
    # Clean: exit 5, and the message names what was and was not applied, per region.
    assert error.exit_code == 5
    for version in (1, 2):
        ami_id = web_amis[f"v{version}"]["eu-west-1"]
        assert f"web v{version} in eu-west-1 ({ami_id}): ModifyImageAttribute in eu-west-1 for {ami_id} failed: " in (
            error.message
        )
    assert "RequestLimitExceeded" in error.message
    assert "while changing the launch permissions (+ account 111122223333" in error.message
    assert "eu-west-1: 0 of 2 AMI(s) reconciled" in error.message
    assert "us-east-1: 2 of 2 AMI(s) reconciled" in error.message
    assert "run `stamp publish` again" in error.hint
    # And that is exactly the state: us-east-1 done, eu-west-1 untouched, its parameter not moved to an AMI
    # nobody may launch yet.
    for release in ("v1", "v2"):
        assert cloud.get_launch_permissions("us-east-1", web_amis[release]["us-east-1"]) == SHARE
        assert cloud.get_launch_permissions("eu-west-1", web_amis[release]["eu-west-1"]) == ShareSet()
    assert cloud.get_parameters("eu-west-1", [parameter_name("web")]) == {}
    failed = [e for e in error.report.entries if e.error]
    assert sorted((e.version, e.region) for e in failed) == [(1, "eu-west-1"), (2, "eu-west-1")]
    assert all(e.launch.empty and e.parameter is None for e in failed)

    # Idempotent: once the throttling stops, a rerun applies exactly what is missing and converges.
    rerun = AwsCloud(moto.url, retry_mode="standard")
    publish(catalog, rerun, None, dry_run=False)
    counts = rerun.call_counts()
    assert (counts["ModifyImageAttribute"], counts["PutParameter"]) == (2, 1)
    assert _converged(rerun, web_amis) == 0
    scoreboard.add("throttles injected", tried=throttler.injected, bad=0)


def test_sustained_throttling_of_a_regions_reads_changes_nothing_there(
    tmp_path: Path, moto: MotoEndpoint, web_amis: dict[str, dict[str, str]]
) -> None:
    fake = FakeTime()
    cloud = _cloud(moto, fake)
    Throttler(None).install(cloud, ("eu-west-1",), ("DescribeImages",))
    with pytest.raises(PublishFailed) as caught:
        publish(_catalog(tmp_path, web_amis), cloud, None, dry_run=False)
    assert "eu-west-1: nothing changed in this region: DescribeImages in eu-west-1" in caught.value.message
    assert "eu-west-1: 0 of 2 AMI(s) reconciled" in caught.value.message
    assert "us-east-1: 2 of 2 AMI(s) reconciled" in caught.value.message
    assert cloud.get_launch_permissions("us-east-1", web_amis["v2"]["us-east-1"]) == SHARE
    assert cloud.get_launch_permissions("eu-west-1", web_amis["v2"]["eu-west-1"]) == ShareSet()


def test_a_single_call_under_sustained_throttling_gives_up_after_the_bound(moto: MotoEndpoint) -> None:
    fake = FakeTime()
    cloud = _cloud(moto, fake)
    throttler = Throttler(None)
    throttler.install(cloud, ("us-east-1",), ("DescribeImages",))
    started = time.monotonic()
    with pytest.raises(CloudError) as caught:
        cloud.describe_images("us-east-1", ["ami-0123456789abcdef0"])
    assert time.monotonic() - started < 5
    assert throttler.attempts == MAX_ATTEMPTS
    assert len(fake.sleeps) == MAX_ATTEMPTS - 1
    assert sum(fake.sleeps) <= WORST_CASE_PER_CALL
    assert "DescribeImages in us-east-1 for ami-0123456789abcdef0 failed: RequestLimitExceeded" in caught.value.message
    assert f"still throttled after {MAX_ATTEMPTS} attempts" in caught.value.hint


# -- eventual consistency: not found or pending for a while, or failed ------------------------------------


def _forward(request: AWSPreparedRequest) -> bytes:
    """Sends the request on to moto as it is, so a hook can change a real answer rather than invent one."""
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    assert request.url.startswith("http://127.0.0.1:")
    forwarded = urllib.request.Request(  # noqa: S310 - the local moto server, checked above
        request.url, data=body, headers=dict(request.headers), method=request.method
    )
    with urllib.request.urlopen(forwarded, timeout=10) as answer:  # noqa: S310 - the local moto server
        data: bytes = answer.read()
    return data


def _edit_image(body: bytes, ami_id: str, answer: str) -> bytes:
    """moto's DescribeImages answer with `ami_id` left out ("missing") or in state `answer` (with a reason)."""
    root = ElementTree.fromstring(body)  # noqa: S314 - moto's own answer, in a test
    ns = root.tag[1:].split("}")[0]  # `{http://ec2.amazonaws.com/doc/2016-11-15}DescribeImagesResponse`
    ElementTree.register_namespace("", ns)
    images = root.find(f"{{{ns}}}imagesSet")
    assert images is not None
    for item in images.findall(f"{{{ns}}}item"):
        if item.findtext(f"{{{ns}}}imageId") != ami_id:
            continue
        if answer == "missing":
            images.remove(item)
            continue
        state = item.find(f"{{{ns}}}imageState")
        assert state is not None
        state.text = answer
        if answer == "failed":
            reason = ElementTree.SubElement(item, f"{{{ns}}}stateReason")
            ElementTree.SubElement(reason, f"{{{ns}}}code").text = "Client.InternalError"
            ElementTree.SubElement(reason, f"{{{ns}}}message").text = "Client.InternalError: snapshot copy failed"
    edited: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return edited


def _image_reads(ami_id: str, answers: list[str]) -> Callable[..., Any]:
    """A DescribeImages hook: for each call, the next of `answers` ("missing", "pending", "failed") about
    `ami_id` in moto's real answer; once they run out, moto's answer as it is."""

    def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        if not answers:
            return None
        body = _edit_image(_forward(request), ami_id, answers.pop(0))
        return AWSResponse(request.url, 200, HTTPHeaders(), _Raw(body))

    return before_send


@pytest.mark.parametrize("state", ["missing", "pending"])
def test_publish_waits_for_a_current_ami_that_reads_missing_or_pending_for_a_while(
    tmp_path: Path, moto: MotoEndpoint, web_amis: dict[str, dict[str, str]], state: str
) -> None:
    fake = FakeTime()
    cloud = _cloud(moto, fake)
    ami_id = web_amis["v2"]["eu-west-1"]
    cloud.ec2("eu-west-1").meta.events.register("before-send.ec2.DescribeImages", _image_reads(ami_id, [state] * 3))
    publish(_catalog(tmp_path, web_amis), cloud, None, dry_run=False)
    # Read three times (publish's batch, then twice while waiting 5 s between reads), then shared.
    assert fake.sleeps == [5.0, 5.0]
    assert _converged(cloud, web_amis) == 0


def test_publish_gives_up_on_a_missing_current_ami_after_the_wait(
    tmp_path: Path, moto: MotoEndpoint, web_amis: dict[str, dict[str, str]]
) -> None:
    fake = FakeTime()
    cloud = _cloud(moto, fake)
    ami_id = web_amis["v2"]["eu-west-1"]
    cloud.ec2("eu-west-1").meta.events.register(
        "before-send.ec2.DescribeImages", _image_reads(ami_id, ["missing"] * 99)
    )
    with pytest.raises(PublishFailed, match=f"web v2 in eu-west-1: the current release's AMI {ami_id} does not exist"):
        publish(_catalog(tmp_path, web_amis), cloud, None, dry_run=False, wait_timeout=60)
    assert sum(fake.sleeps) == 60


def test_a_failed_ami_fails_fast_with_its_state_reason_and_the_rest_is_published(
    tmp_path: Path, moto: MotoEndpoint, web_amis: dict[str, dict[str, str]]
) -> None:
    fake = FakeTime()
    cloud = _cloud(moto, fake)
    ami_id = web_amis["v2"]["eu-west-1"]
    cloud.ec2("eu-west-1").meta.events.register("before-send.ec2.DescribeImages", _image_reads(ami_id, ["failed"] * 9))
    with pytest.raises(PublishFailed) as caught:
        publish(_catalog(tmp_path, web_amis), cloud, None, dry_run=False)
    assert (
        f"web v2 in eu-west-1: AMI {ami_id} is failed: Client.InternalError: snapshot copy failed; it cannot be shared"
        in caught.value.message
    )
    assert fake.sleeps == []
    assert cloud.get_launch_permissions("eu-west-1", ami_id) == ShareSet()
    assert cloud.get_launch_permissions("eu-west-1", web_amis["v1"]["eu-west-1"]) == SHARE
    assert cloud.get_launch_permissions("us-east-1", web_amis["v2"]["us-east-1"]) == SHARE


def test_wait_until_available_fails_fast_on_failed_with_the_reason(moto: MotoEndpoint, make_ami: MakeAmi) -> None:
    ami_id = make_ami("us-east-1", "web-1")
    fake = FakeTime()
    cloud = _cloud(moto, fake)
    cloud.ec2("us-east-1").meta.events.register(
        "before-send.ec2.DescribeImages", _image_reads(ami_id, ["pending", "failed"])
    )
    with pytest.raises(CloudError, match=f"AMI {ami_id} in us-east-1 is failed: Client.InternalError: snapshot"):
        cloud.wait_until_available("us-east-1", ami_id)
    assert fake.sleeps == [5.0]


# -- record: no cloud calls, no partial write ------------------------------------------------------------

CATALOG = f"""\
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
images:
  base:
    source: {{filter: {{name: "debian-12-amd64-*", owners: ["136693071363"]}}}}
  web:
    parent: base
    share: {{accounts: ["111122223333", "444455556666"], organizations: ["{ORG}"]}}
releases: {{}}
"""


def _result(
    image: str, amis: dict[str, str], *, verified: Literal["passed", "failed"] = "passed", build_id: str = ""
) -> BuildResult:
    source = {"amis": {"us-east-1": "ami-0aaaaaaaaaaaaaaaa"}} if image == "base" else {"image": "base", "version": 1}
    return build_result(
        image,
        build_id or f"{image}-1-abcdef",
        amis=amis,
        source=source,
        verified=verified,
        started_at="2026-11-26T12:00:00Z",
    )


def test_record_makes_no_cloud_calls_so_throttling_cannot_half_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG, encoding="utf-8")

    def no_clients(*_: Any, **__: Any) -> Any:
        raise AssertionError("stamp record made an AWS client")

    monkeypatch.setattr(boto3.session.Session, "client", no_clients)
    (release,) = record(
        path, [_result("base", {"us-east-1": "ami-0bbbbbbbbbbbbbbbb", "eu-west-1": "ami-0cccccccccccccccc"})]
    )
    assert release.version == 1
    assert "ami-0cccccccccccccccc" in path.read_text(encoding="utf-8")


def test_a_record_that_fails_part_way_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG, encoding="utf-8")
    amis = {"us-east-1": "ami-0bbbbbbbbbbbbbbbb", "eu-west-1": "ami-0cccccccccccccccc"}
    with pytest.raises(CatalogError, match="not verified"):
        record(path, [_result("base", amis), _result("web", amis, verified="failed")])
    assert path.read_text(encoding="utf-8") == CATALOG


def test_a_release_whose_publish_is_throttled_keeps_its_record_and_a_rerun_publishes_it(
    tmp_path: Path, moto: MotoEndpoint, make_ami: MakeAmi
) -> None:
    # `stamp release` records, then publishes. The record stands on its own (the AMI is verified); a publish
    # throttled past the bound leaves it unshared, and `stamp publish` finishes the job.
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG, encoding="utf-8")
    base = {region: make_ami(region, "base-1") for region in REGIONS}
    web = {region: make_ami(region, "web-1") for region in REGIONS}
    record(path, [_result("base", base), _result("web", web)])
    recorded = path.read_text(encoding="utf-8")

    fake = FakeTime()
    cloud = _cloud(moto, fake)
    Throttler(None).install(cloud, REGIONS, (), ("PutParameter",))
    with pytest.raises(PublishFailed) as caught:
        publish(load_catalog(path, check_files=False), cloud, None, dry_run=False)
    assert path.read_text(encoding="utf-8") == recorded
    # Launch permissions went on (they come first); the parameters did not move.
    assert "while moving the parameter /stamp/web/current" in caught.value.message
    assert cloud.get_launch_permissions("eu-west-1", web["eu-west-1"]) == SHARE
    assert cloud.get_parameters("eu-west-1", [parameter_name("web")]) == {}
    failed = {(e.image, e.region): e for e in caught.value.report.entries if e.error}
    assert len(failed) == 4
    assert failed[("web", "eu-west-1")].launch.add == SHARE

    rerun = AwsCloud(moto.url, retry_mode="standard")
    publish(load_catalog(path, check_files=False), rerun, None, dry_run=False)
    assert rerun.call_counts()["PutParameter"] == 4
    assert "ModifyImageAttribute" not in rerun.call_counts()
    assert rerun.get_parameters("eu-west-1", [parameter_name("web")])[parameter_name("web")].value == web["eu-west-1"]
