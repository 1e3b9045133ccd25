"""Where events go (`defaults.notify`): SNS topics and an EventBridge bus through the Cloud seam, webhooks through
tools/stamp/drivers/webhook.py, each signed body with its own secret (docs/events.md, Webhooks)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from stamp import __version__
from stamp.catalog.models import Notify
from stamp.cloud.protocol import Cloud
from stamp.drivers import webhook
from stamp.errors import CloudError
from stamp.notify.events import SOURCE, Message

# The SNS message attribute that carries the event type, so subscriptions can filter on it.
EVENT_ATTRIBUTE = "event_type"
SIGNATURE_HEADER = "X-Stamp-Signature"
EVENT_HEADER = "X-Stamp-Event"
DELIVERY_HEADER = "X-Stamp-Delivery"


class NotDelivered(Exception):
    """A target did not take an event; the message says why, in one line."""


class Destination(Protocol):
    @property
    def name(self) -> str:
        """How lines name the target: its ARN, or a webhook's number and host (never its path or query)."""
        ...

    def send(self, message: Message) -> None:
        """Delivers the message; NotDelivered when the target did not take it."""
        ...


@dataclass(frozen=True)
class SnsTopic:
    cloud: Cloud
    arn: str

    @property
    def name(self) -> str:
        return f"SNS topic {self.arn}"

    def send(self, message: Message) -> None:
        region = self.arn.split(":")[3]
        try:
            self.cloud.publish_message(region, self.arn, message.text, attributes={EVENT_ATTRIBUTE: message.type})
        except CloudError as exc:
            raise NotDelivered(exc.message) from None


@dataclass(frozen=True)
class EventBus:
    cloud: Cloud
    bus: str
    region: str

    @property
    def name(self) -> str:
        return f"EventBridge bus {self.bus} in {self.region}"

    def send(self, message: Message) -> None:
        try:
            self.cloud.put_event(self.region, self.bus, source=SOURCE, detail_type=message.type, detail=message.text)
        except CloudError as exc:
            raise NotDelivered(exc.message) from None


def signature(secret: str, body: bytes) -> str:
    """The X-Stamp-Signature value: `sha256=` and the hex HMAC-SHA256 of the body, keyed with the secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Webhook:
    number: int
    url: str
    secret_env: str
    environ: Mapping[str, str]

    @property
    def name(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        return f"webhook {self.number} ({host}{f':{parts.port}' if parts.port else ''})"

    def send(self, message: Message) -> None:
        # Read at delivery time, so a secret set for the publish job alone is enough.
        secret = self.environ.get(self.secret_env, "")
        if not secret:
            raise NotDelivered(f"the environment variable {self.secret_env} (its secret_env) is not set or empty")
        headers = {
            SIGNATURE_HEADER: signature(secret, message.body),
            EVENT_HEADER: message.type,
            DELIVERY_HEADER: message.id,
            "User-Agent": f"stamp/{__version__}",
        }
        try:
            webhook.post(self.url, message.body, headers)
        except webhook.WebhookFailed as exc:
            raise NotDelivered(str(exc)) from None


def destinations(notify: Notify, cloud: Cloud, first_region: str, environ: Mapping[str, str]) -> list[Destination]:
    """Every target of `defaults.notify`, in the order the catalog lists them: topics, the bus, webhooks. A bus
    named by ARN is in the ARN's region, one named by name in the catalog's first region."""
    found: list[Destination] = [SnsTopic(cloud, arn) for arn in notify.sns]
    if notify.eventbridge is not None:
        bus = notify.eventbridge.bus
        region = bus.split(":")[3] if bus.startswith("arn:") else first_region
        found.append(EventBus(cloud, bus, region))
    found += [
        Webhook(number, hook.url, hook.secret_env, environ) for number, hook in enumerate(notify.webhooks, start=1)
    ]
    return found
