"""Notifications without a cloud (docs/events.md): the catalog's `defaults.notify`, the events a release is due, event
IDs, the ledger tag's encoding, the signature, and the webhook driver against a real loopback server."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import jsonschema
import pytest

from builders import load_text, with_releases
from stamp.catalog.models import Release, ReleaseSource
from stamp.drivers import webhook
from stamp.errors import CatalogProblems
from stamp.notify import ledger
from stamp.notify.destinations import NotDelivered, Webhook, signature
from stamp.notify.events import EVENT_TYPES, Event, Message, run_link
from stamp.notify.expected import due_events
from stamp.tags import NOTIFIED_TAG, TAG_VALUE_MAX
from webhooks import SECRET, SECRET_ENV, receiver, verify

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "events.schema.json").read_text(encoding="utf-8"))

HEAD = """\
version: 1
defaults:
  regions: [us-east-1]
  channels:
    candidate: {}
    stable: {after: candidate}
  notify:
    sns: ["arn:aws:sns:us-east-1:111122223333:stamp-releases"]
    eventbridge: {bus: default}
    webhooks:
      - {url: "https://hooks.example.com/stamp", secret_env: STAMP_WEBHOOK_SECRET}
images:
  base:
    source: {filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}}

releases: {}
"""


def _release(version: int, status: str = "current", **changes: object) -> Release:
    fields: dict[str, object] = {
        "version": version,
        "amis": {"us-east-1": f"ami-{version:017x}"},
        "built_at": f"2026-11-{version:02d}T12:00:00Z",
        "commit": "1a2b3c4d5e6f",
        "build_id": f"base-{version}-abcdef",
        "source": ReleaseSource(amis={"us-east-1": f"ami-{version:016x}a"}),
        "verified": "passed",
        "status": status,
        "channels": {"candidate": f"2026-11-{version:02d}T13:00:00Z"},
    }
    return Release.model_validate(fields | changes)


def _keys(
    release: Release, delivered: list[str], *, published: bool = False, happened: tuple[str, ...] = ()
) -> list[str]:
    catalog = load_text(with_releases(HEAD, {"base": [release]}))
    return [e.key for e in due_events(catalog, "base", release, delivered, published=published, happened=happened)]


# -- the catalog -------------------------------------------------------------------------------------------


def test_the_catalog_takes_sns_eventbridge_and_webhooks() -> None:
    notify = load_text(HEAD).defaults.notify
    assert notify is not None
    assert notify.sns == ["arn:aws:sns:us-east-1:111122223333:stamp-releases"]
    assert notify.eventbridge is not None and notify.eventbridge.bus == "default"
    assert [(w.url, w.secret_env) for w in notify.webhooks] == [("https://hooks.example.com/stamp", SECRET_ENV)]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"https://hooks.example.com/stamp"', '"http://hooks.example.com/stamp"', "must start with https://"),
        ('"https://hooks.example.com/stamp"', '"http://evil.example#@127.0.0.1/"', "must start with https://"),
        ("arn:aws:sns:us-east-1:111122223333:stamp-releases", "stamp-releases", "defaults.notify.sns[0]"),
        ("secret_env: STAMP_WEBHOOK_SECRET", "secret_env: 'not a name'", "secret_env"),
        ("eventbridge: {bus: default}", "eventbridge: {bus: default, region: x}", "unknown key 'region'"),
    ],
)
def test_bad_notification_targets_are_refused_at_their_line(old: str, new: str, message: str) -> None:
    with pytest.raises(CatalogProblems, match=r"catalog\.yaml:\d+:\d+: defaults\.notify") as caught:
        load_text(HEAD.replace(old, new))
    assert message in str(caught.value)


def test_plain_http_reaches_loopback_only() -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9000/"):
        notify = load_text(HEAD.replace("https://hooks.example.com/stamp", url)).defaults.notify
        assert notify is not None and notify.webhooks[0].url == url


# -- what a release is due ---------------------------------------------------------------------------------


def test_a_release_is_due_what_the_catalog_says_happened_in_that_order() -> None:
    release = _release(
        2, "deprecated", channels={"candidate": "2026-11-02T13:00:00Z", "stable": "2026-11-09T13:00:00Z"}
    )
    assert _keys(release, [], published=True) == ["recorded", "published", "promoted:stable", "deprecated"]
    assert _keys(_release(2), [], published=True) == ["recorded", "published"]
    assert _keys(_release(2), ["recorded", "published"], published=True) == []
    # Entering the first channel is part of recording, not a promotion; `published` waits for publish.
    assert _keys(_release(2), []) == ["recorded"]


def test_a_forced_promotion_gives_its_reason() -> None:
    release = _release(
        2, channels={"candidate": "2026-11-02T13:00:00Z", "stable": "2026-11-03T13:00:00Z"}, forced={"stable": "hotfix"}
    )
    catalog = load_text(with_releases(HEAD, {"base": [release]}))
    (promoted,) = due_events(catalog, "base", release, ["recorded"], published=False)
    assert (promoted.type, promoted.channel, promoted.reasons) == ("release.promoted", "stable", ("forced: hotfix",))


def test_a_root_image_release_from_other_vendor_amis_is_a_source_update() -> None:
    old, new = _release(1, "previous"), _release(2)
    catalog = load_text(with_releases(HEAD, {"base": [old, new]}))
    events = due_events(catalog, "base", new, [], published=False)
    assert [e.type for e in events] == ["release.recorded", "source.updated"]
    change = events[1].source
    assert change is not None
    assert (change.previous_version, dict(change.old), dict(change.new)) == (1, old.source.amis, new.source.amis)
    same = new.model_copy(update={"source": old.source})
    catalog = load_text(with_releases(HEAD, {"base": [old, same]}))
    assert [e.type for e in due_events(catalog, "base", same, [], published=False)] == ["release.recorded"]


def test_revocations_and_restores_are_counted_so_each_cycle_is_a_new_event() -> None:
    revoked = _release(2, "revoked", reason="CVE-2026-0001")
    restored = _release(2, "current", reason="restored: not affected")
    assert _keys(revoked, ["recorded"]) == ["revoked"]
    assert _keys(revoked, ["recorded", "revoked"]) == []
    assert _keys(restored, ["recorded", "revoked"]) == ["restored"]
    # Neither was delivered: both are, in order.
    assert _keys(restored, ["recorded"]) == ["revoked", "restored"]
    assert _keys(restored, ["recorded", "revoked", "restored"]) == []
    # Revoked again after a restore: a new event with its own key, so its own ID.
    assert _keys(revoked, ["recorded", "revoked", "restored"]) == ["revoked#2"]
    # `stamp revoke` knows it has just revoked: the restore the ledger missed comes first.
    assert _keys(revoked, ["recorded", "revoked"], happened=("revoked",)) == ["restored", "revoked#2"]
    assert _keys(restored, ["recorded", "revoked", "restored"], happened=("restored",)) == ["revoked#2", "restored#2"]
    catalog = load_text(with_releases(HEAD, {"base": [revoked]}))
    (event,) = due_events(catalog, "base", revoked, ["recorded"], published=False)
    assert event.reasons == ("CVE-2026-0001",)


def test_event_ids_are_deterministic_per_event() -> None:
    release = _release(2)
    recorded = Event("release.recorded", "base", release, "recorded", "current")
    assert recorded.id == Event("release.recorded", "base", release, "recorded", "previous", notes="x").id
    others = {
        Event("release.revoked", "base", release, "revoked", "revoked").id,
        Event("release.revoked", "base", release, "revoked#2", "revoked").id,
        Event("release.recorded", "base", release.model_copy(update={"build_id": "base-2-fedcba"}), "recorded", "x").id,
    }
    assert recorded.id not in others and len(others) == 3


def test_every_event_type_makes_a_payload_the_schema_accepts() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert tuple(SCHEMA["properties"]["type"]["enum"]) == EVENT_TYPES
    release = _release(2)
    for kind in EVENT_TYPES:
        event = Event(
            kind,
            "base",
            release,
            kind,
            "retired" if kind == "release.retired" else "current",
            channel="stable" if kind == "release.promoted" else None,
        )
        payload = event.payload(time="2026-11-27T12:00:00Z", run=None)
        if kind == "source.updated":
            payload["source"] = {
                "previous_version": 1,
                "old": {"us-east-1": "ami-0000000a"},
                "new": {"us-east-1": "ami-0000000b"},
            }
        assert list(validator.iter_errors(payload)) == [], kind
    unnamed = Event("release.promoted", "base", release, "promoted:x", "current")
    wrong = unnamed.payload(time="2026-11-27T12:00:00Z", run=None)
    assert list(validator.iter_errors(wrong)), "a promotion without its channel must not validate"


def test_the_run_link_comes_from_the_ci_variables() -> None:
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "example-org/images", "GITHUB_RUN_ID": "42"}
    assert run_link(env) == "https://github.com/example-org/images/actions/runs/42"
    assert run_link({"GITHUB_RUN_ID": "42"}) is None


# -- the ledger tag ----------------------------------------------------------------------------------------


def test_the_ledger_goes_on_in_more_tags_past_the_tag_value_limit() -> None:
    keys = ["recorded", "published", *(f"promoted:channel-{n:02d}-{'x' * 20}" for n in range(12)), "revoked"]
    tags = ledger.tags_for(keys)
    assert list(tags) == [NOTIFIED_TAG, f"{NOTIFIED_TAG}-2", f"{NOTIFIED_TAG}-3"]
    assert all(len(value) <= TAG_VALUE_MAX for value in tags.values())
    assert tags[NOTIFIED_TAG].startswith("recorded,published,promoted:channel-00-")
    assert ledger.keys_of({**tags, "Name": "x"}) == keys
    assert ledger.tags_for(["recorded", "recorded", "published"]) == {NOTIFIED_TAG: "recorded,published"}


# -- the signature and the webhook driver ------------------------------------------------------------------


def test_the_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    body = b'{"format":1}'
    header = signature(SECRET, body)
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert verify(SECRET, body, header)
    assert not verify(SECRET, body + b" ", header)
    assert not verify("another secret", body, header)


def _message() -> Message:
    event = Event("release.recorded", "base", _release(2), "recorded", "current")
    return event.message(time="2026-11-27T12:00:00Z", run=None)


def test_a_webhook_that_fails_twice_gets_the_event_once_after_backing_off() -> None:
    sleeps: list[float] = []
    retry = webhook.Retry(sleep=sleeps.append)
    message = _message()
    with receiver() as hook:
        hook.fail_next = 2
        target = Webhook(1, hook.url, SECRET_ENV, {SECRET_ENV: SECRET})
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(webhook, "DEFAULT_RETRY", retry)
            target.send(message)
    assert sleeps == [1.0, 2.0]
    assert hook.attempts == [message.id] * 3
    (accepted,) = hook.accepted
    assert accepted.body == message.body
    assert accepted.headers["X-Stamp-Event"] == "release.recorded"
    assert accepted.headers["X-Stamp-Delivery"] == message.id
    assert accepted.headers["Content-Type"] == "application/json"
    assert target.name == f"webhook 1 (127.0.0.1:{hook.url.split(':')[2].split('/')[0]})"


def test_a_refusal_is_not_retried_and_a_dead_port_is() -> None:
    sleeps: list[float] = []
    retry = webhook.Retry(sleep=sleeps.append)
    with receiver(secret="another secret") as hook:  # noqa: S106 - a test's secret
        with pytest.raises(webhook.WebhookFailed, match=r"HTTP 401.*not retried"):
            webhook.post(hook.url, b"{}", {"X-Stamp-Signature": signature(SECRET, b"{}")}, retry=retry)
        assert len(hook.attempts) == 1 and sleeps == []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(webhook.WebhookFailed, match=r"cannot reach it.*\(3 attempts\)"):
        webhook.post(f"http://127.0.0.1:{port}/stamp", b"{}", {}, retry=retry)
    assert sleeps == [1.0, 2.0]


def test_a_missing_secret_names_its_variable() -> None:
    with receiver() as hook:
        target = Webhook(1, hook.url, SECRET_ENV, {})
        with pytest.raises(NotDelivered, match=f"the environment variable {SECRET_ENV} .* is not set"):
            target.send(_message())
        assert hook.attempts == []
