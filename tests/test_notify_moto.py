"""Notifications from the commands that cause them, on a real moto server over HTTP (docs/events.md): SNS to an SQS
queue subscribed to the topic, EventBridge to a rule whose target is an SQS queue, and a signed webhook on loopback;
at least once, a failed delivery never changing a command's exit code, and `stamp publish` catching up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest

from builders import build_result, with_releases
from conftest import NOW, MakeAmi, MotoEndpoint
from stamp import clock
from stamp.catalog.models import Release, ReleaseSource
from stamp.catalog.results import write_result
from stamp.cli import main
from stamp.clock import iso
from stamp.cloud.aws import AwsCloud
from stamp.drivers import webhook
from stamp.hosts import target as hosts_target
from stamp.hosts.ec2 import Ec2Target
from stamp.notify import outbox
from stamp.tags import BUILD_ID_TAG, DEPRECATED_AT_TAG, IMAGE_TAG, NOTIFIED_TAG, VERIFIED, VERIFIED_TAG
from webhooks import SECRET, SECRET_ENV, Receiver, receiver

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:stamp-releases"
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "events.schema.json").read_text(encoding="utf-8"))


def _head(hook_url: str, *, sns: bool = True, eventbridge: bool = True, regions: str = "[us-east-1, eu-west-1]") -> str:
    targets = (f'    sns: ["{TOPIC}"]\n' if sns else "") + ("    eventbridge: {bus: default}\n" if eventbridge else "")
    return f"""\
# notification test catalog
version: 1
defaults:
  regions: {regions}
  retention: {{keep: 1, grace_days: 0}}
  channels:
    candidate: {{}}
    stable: {{after: candidate}}
  notify:
{targets}    webhooks:
      - {{url: "{hook_url}", secret_env: {SECRET_ENV}}}
images:
  base:
    source: {{filter: {{name: "debian-12-amd64-*", owners: ["136693071363"]}}}}
  web:
    parent: base
    share: {{accounts: ["111122223333"]}}

releases: {{}}   # written by stamp
"""


def _release(image: str, version: int, amis: dict[str, str], status: str = "current", **changes: Any) -> Release:
    source = (
        ReleaseSource(amis={REGION: f"ami-{version:016x}a"})
        if image == "base"
        else ReleaseSource(image="base", version=1)
    )
    fields: dict[str, Any] = {
        "version": version,
        "amis": amis,
        "built_at": f"2026-11-{version:02d}T12:00:00Z",
        "commit": "1a2b3c4d5e6f",
        "build_id": f"{image}-{version}-abcdef",
        "source": source,
        "verified": "passed",
        "status": status,
        "channels": {"candidate": f"2026-11-{version:02d}T{13 if image == 'web' else 12}:30:00Z"},
    }
    return Release.model_validate(fields | changes)


def _webhook_catalog(tmp_path: Path, url: str, releases: list[Release]) -> Path:
    """A one-region catalog of `base` with these releases that notifies only the webhook at `url`."""
    path = tmp_path / "catalog.yaml"
    head = _head(url, sns=False, eventbridge=False, regions="[us-east-1]")
    path.write_text(with_releases(head, {"base": releases}), encoding="utf-8")
    return path


@dataclass
class Queues:
    """SQS queues that receive what SNS and EventBridge got: the topic's subscription (raw delivery) and the
    target of a rule matching `source: stamp` on the default bus."""

    sqs: Any
    sns_queue: str
    bus_queue: str

    @staticmethod
    def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
            messages = answer.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(message)
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def sns(self) -> list[dict[str, Any]]:
        """Payloads published to the topic, each checked for its event-type attribute."""
        payloads = []
        for message in self.drain(self.sqs, self.sns_queue):
            payload = json.loads(message["Body"])
            assert message["MessageAttributes"]["event_type"]["StringValue"] == payload["type"]
            payloads.append(payload)
        return payloads

    def bus(self) -> list[dict[str, Any]]:
        """Details put on the bus, each checked for its source and detail type."""
        details = []
        for message in self.drain(self.sqs, self.bus_queue):
            envelope = json.loads(message["Body"])
            assert (envelope["source"], envelope["detail-type"]) == ("stamp", envelope["detail"]["type"])
            details.append(envelope["detail"])
        return details


@pytest.fixture
def queues(moto: MotoEndpoint, aws: AwsCloud) -> Queues:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto.url)

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return str(url), str(arn)

    sns_url, sns_arn = queue("stamp-sns")
    assert aws.sns(REGION).create_topic(Name="stamp-releases")["TopicArn"] == TOPIC
    aws.sns(REGION).subscribe(
        TopicArn=TOPIC, Protocol="sqs", Endpoint=sns_arn, Attributes={"RawMessageDelivery": "true"}
    )
    bus_url, bus_arn = queue("stamp-bus")
    events = aws.events(REGION)
    events.put_rule(Name="stamp", EventPattern=json.dumps({"source": ["stamp"]}), EventBusName="default")
    events.put_targets(Rule="stamp", EventBusName="default", Targets=[{"Id": "queue", "Arn": bus_arn}])
    return Queues(sqs, sns_url, bus_url)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """The loopback webhook; its secret in the environment; retries that do not wait (the waits are recorded)."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setattr(webhook, "DEFAULT_RETRY", webhook.Retry(sleep=lambda _seconds: None))
    with receiver() as found:
        yield found


def _amis(
    make_ami: MakeAmi, image: str, version: int, regions: tuple[str, ...] = (REGION, "eu-west-1")
) -> dict[str, str]:
    return {region: make_ami(region, f"{image}-{version}") for region in regions}


def _run(path: Path, *args: str) -> int:
    return main([*args, "--catalog", str(path), "--cloud", "aws"])


def _notified(aws: AwsCloud, ami_id: str, region: str = REGION) -> str:
    details = aws.describe_image(region, ami_id)
    assert details is not None
    return details.tags.get(NOTIFIED_TAG, "")


def _valid(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for payload in payloads:
        assert list(validator.iter_errors(payload)) == [], payload
    return payloads


def _built(build_root: Path, aws: AwsCloud, image: str, build_id: str, amis: dict[str, str]) -> None:
    """A verified build of a root image from other vendor AMIs than its first release, as verify leaves it."""
    for region, ami_id in amis.items():
        aws.create_tags(region, [ami_id], {BUILD_ID_TAG: build_id, IMAGE_TAG: image, VERIFIED_TAG: VERIFIED})
    source = {"amis": {REGION: "ami-0000000000000bbb2"}}
    result = build_result(image=image, build_id=build_id, amis=amis, source=source, started_at="2026-11-27T11:00:00Z")
    write_result(build_root, result)


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_each_command_announces_what_it_caused_to_every_target_once(
    tmp_path: Path,
    moto: MotoEndpoint,
    aws: AwsCloud,
    make_ami: MakeAmi,
    queues: Queues,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI's AWS target names no endpoint, so it takes moto's HTTP 500 for EnableImageDeprecation as AWS's own
    # failure; told the endpoint, it falls back to the deprecation tag as on the local cloud (docs/lifecycle.md).
    monkeypatch.setattr(hosts_target, "target_for", lambda _kind, _catalog: Ec2Target(AwsCloud(moto.url)))
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "example-org/images")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    base1, web1, base2 = _amis(make_ami, "base", 1), _amis(make_ami, "web", 1), _amis(make_ami, "base", 2)
    path = tmp_path / "catalog.yaml"
    releases = {"base": [_release("base", 1, base1)], "web": [_release("web", 1, web1)]}
    path.write_text(with_releases(_head(hook.url), releases), encoding="utf-8")
    seen: list[dict[str, Any]] = []

    def step(*args: str) -> list[tuple[str, str, int, str | None]]:
        """Runs a command (exit 0), and returns what it announced, the same on all three targets."""
        before = len(hook.accepted)
        assert _run(path, *args) == 0, capsys.readouterr().err
        payloads = _valid([d.payload for d in hook.accepted[before:]])
        for delivery in hook.accepted[before:]:
            assert delivery.headers["X-Stamp-Event"] == delivery.payload["type"]
            assert delivery.headers["X-Stamp-Delivery"] == delivery.payload["id"]
        ids = [p["id"] for p in payloads]
        assert sorted(p["id"] for p in _valid(queues.sns())) == sorted(ids)
        assert sorted(p["id"] for p in _valid(queues.bus())) == sorted(ids)
        seen.extend(payloads)
        return [(p["type"], p["image"], p["version"], p["channel"]) for p in payloads]

    # The first publish with notify configured announces what the catalog holds, oldest first.
    assert step("publish") == [
        ("release.recorded", "base", 1, None),
        ("release.recorded", "web", 1, None),
        ("release.published", "base", 1, None),
        ("release.published", "web", 1, None),
    ]
    _built(tmp_path / "build", aws, "base", "base-20261127110000-abcdef", base2)
    assert step("record", "base", "--out", str(tmp_path / "build")) == [
        ("release.recorded", "base", 2, None),
        ("source.updated", "base", 2, None),
    ]
    assert seen[-1]["source"] == {
        "previous_version": 1,
        "old": {REGION: f"ami-{1:016x}a"},
        "new": {REGION: "ami-0000000000000bbb2"},
    }
    assert step("publish") == [("release.published", "base", 2, None)]
    assert step("promote", "base", "--to", "stable", "--version", "2") == [("release.promoted", "base", 2, "stable")]
    assert step("revoke", "web", "1", "--reason", "CVE-2026-0001 in nginx", "--yes") == [
        ("release.revoked", "web", 1, None)
    ]
    assert step("restore", "web", "1", "--reason", "not affected") == [("release.restored", "web", 1, None)]
    assert step("prune") == [("release.deprecated", "base", 1, None)]
    assert step("prune") == [("release.retired", "base", 1, None)]
    # Everything was delivered: a publish announces nothing again.
    assert step("publish") == []

    by_type = {p["type"]: p for p in seen}
    assert by_type["release.revoked"]["reasons"] == ["CVE-2026-0001 in nginx"]
    assert by_type["release.restored"]["reasons"] == ["not affected"]
    assert by_type["release.deprecated"]["reasons"] == ["beyond retention.keep"]
    assert by_type["release.retired"]["status"] == "retired"
    assert by_type["release.retired"]["amis"] == base1
    assert by_type["release.published"]["run"] == "https://github.com/example-org/images/actions/runs/42"
    assert len({p["id"] for p in seen}) == len(seen), "no event went out twice"
    assert hook.rejected == []
    # The ledger on each release's AMI in its first region.
    assert _notified(aws, web1[REGION]) == "recorded,published,revoked,restored"
    assert _notified(aws, base2[REGION]) == "recorded,source,published,promoted:stable"
    assert _notified(aws, base2["eu-west-1"], "eu-west-1") == "", "the ledger is in the first region only"


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_a_flaky_webhook_gets_each_event_exactly_once(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    sleeps: list[float] = []
    monkeypatch.setattr(webhook, "DEFAULT_RETRY", webhook.Retry(sleep=sleeps.append))
    base1 = _amis(make_ami, "base", 1, (REGION,))
    with receiver() as hook:
        path = _webhook_catalog(tmp_path, hook.url, [_release("base", 1, base1)])
        hook.fail_next = 2
        assert _run(path, "publish") == 0
    assert hook.types() == [("release.recorded", "base", 1), ("release.published", "base", 1)]
    assert len(hook.attempts) == 4 and sleeps == [1.0, 2.0]
    assert _notified(aws, base1[REGION]) == "recorded,published"


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_a_webhook_that_stays_down_fails_nothing_and_the_next_publish_delivers(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, hook: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    base1 = _amis(make_ami, "base", 1, (REGION,))
    path = _webhook_catalog(tmp_path, hook.url, [_release("base", 1, base1)])
    hook.down = True
    assert _run(path, "promote", "base", "--to", "stable") == 0
    err = capsys.readouterr().err
    port = hook.url.split(":")[2].split("/")[0]
    line = f"notify: release.promoted base v1 to stable not delivered to webhook 1 (127.0.0.1:{port}): HTTP 503"
    assert line in err
    assert "the next `stamp publish` delivers them again" in err
    assert "stable:" in path.read_text()  # the promotion itself stands
    assert _notified(aws, base1[REGION]) == ""
    missed = set(hook.attempts)

    hook.down = False
    assert _run(path, "publish") == 0
    assert hook.types() == [
        ("release.recorded", "base", 1),
        ("release.promoted", "base", 1),
        ("release.published", "base", 1),
    ]
    assert missed <= set(hook.ids()), "the event that failed is delivered with the same ID"
    assert _notified(aws, base1[REGION]) == "recorded,promoted:stable,published"


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_a_missing_secret_or_topic_is_reported_and_nothing_is_marked_delivered(
    tmp_path: Path,
    aws: AwsCloud,
    make_ami: MakeAmi,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base1 = _amis(make_ami, "base", 1, (REGION,))
    path = tmp_path / "catalog.yaml"
    head = _head(hook.url, eventbridge=False, regions="[us-east-1]")  # the topic does not exist
    path.write_text(with_releases(head, {"base": [_release("base", 1, base1)]}), encoding="utf-8")
    monkeypatch.delenv(SECRET_ENV)
    assert _run(path, "publish") == 0
    err = capsys.readouterr().err
    assert f"the environment variable {SECRET_ENV} (its secret_env) is not set or empty" in err
    assert f"release.recorded base v1 not delivered to SNS topic {TOPIC}: Publish in {REGION}" in err
    assert "NotFound" in err
    assert hook.attempts == []
    assert _notified(aws, base1[REGION]) == ""

    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert _run(path, "publish") == 0
    assert len(hook.accepted) == 2  # the webhook took both; the topic still fails, so both stay due
    assert _notified(aws, base1[REGION]) == ""


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_publish_dry_run_lists_what_it_would_deliver_and_delivers_nothing(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, hook: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    base1 = _amis(make_ami, "base", 1, (REGION,))
    path = _webhook_catalog(tmp_path, hook.url, [_release("base", 1, base1)])
    assert _run(path, "publish", "--dry-run") == 0
    err = capsys.readouterr().err
    assert "notify: would deliver release.recorded base v1\nnotify: would deliver release.published base v1\n" in err
    assert hook.attempts == []
    assert _notified(aws, base1[REGION]) == ""


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_a_retirement_that_reaches_no_one_waits_in_a_parameter_for_publish(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, hook: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    base1, base2 = _amis(make_ami, "base", 1, (REGION,)), _amis(make_ami, "base", 2, (REGION,))
    aws.create_tags(REGION, [base1[REGION]], {DEPRECATED_AT_TAG: iso(NOW - timedelta(days=1))})
    releases = {"base": [_release("base", 1, base1, "deprecated"), _release("base", 2, base2)]}
    aws.create_tags(REGION, [base1[REGION]], {NOTIFIED_TAG: "recorded,published,deprecated"})
    aws.create_tags(REGION, [base2[REGION]], {NOTIFIED_TAG: "recorded,source,published"})
    path = _webhook_catalog(tmp_path, hook.url, releases["base"])
    hook.down = True
    assert _run(path, "prune") == 0
    err = capsys.readouterr().err
    assert "retired base v1" in err
    kept = f"notify: kept in {outbox.parameter_name('base')} in {REGION} until `stamp publish` delivers: "
    assert f"{kept}release.retired base v1" in err
    assert aws.describe_image(REGION, base1[REGION]) is None
    waiting = aws.get_parameters(REGION, [outbox.parameter_name("base")])
    assert json.loads(waiting[outbox.parameter_name("base")].value)[0]["type"] == "release.retired"

    hook.down = False
    assert _run(path, "publish") == 0
    assert hook.types() == [("release.retired", "base", 1)]
    assert hook.accepted[0].payload["id"] in hook.attempts[:1]
    assert aws.get_parameters(REGION, [outbox.parameter_name("base")]) == {}
    assert _run(path, "publish") == 0
    assert len(hook.accepted) == 1


@pytest.mark.integration
@pytest.mark.usefixtures("cli_aws")
def test_a_scheduled_revocation_is_announced_by_the_publish_that_applies_it(
    tmp_path: Path, aws: AwsCloud, make_ami: MakeAmi, hook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    base1 = _amis(make_ami, "base", 1, (REGION,))
    aws.create_tags(REGION, [base1[REGION]], {NOTIFIED_TAG: "recorded,published"})
    path = _webhook_catalog(tmp_path, hook.url, [_release("base", 1, base1)])
    at = iso(NOW + timedelta(hours=1))
    assert _run(path, "revoke", "base", "1", "--reason", "CVE-2026-0002", "--at", at, "--yes") == 0
    assert hook.attempts == [], "a schedule changes nothing yet"
    monkeypatch.setattr(clock, "utc_now", lambda: NOW + timedelta(hours=2))
    assert _run(path, "publish") == 0
    assert hook.types() == [("release.revoked", "base", 1)]
    assert hook.accepted[0].payload["reasons"] == ["CVE-2026-0002"]
    assert _notified(aws, base1[REGION]) == "recorded,published,revoked"
