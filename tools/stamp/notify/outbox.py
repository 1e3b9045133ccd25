"""Events no ledger can keep. A retired release has left the catalog and its AMIs are deregistered, so when its
`release.retired` reaches not every target, the event waits, whole, in an SSM parameter of its image in the image's
first region, until `stamp publish` delivers it (docs/events.md, Delivery)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from stamp.cloud.protocol import Cloud
from stamp.notify.events import Message

# SSM's standard tier holds 4 KB per value; the oldest events give way when more wait.
VALUE_MAX = 4096


def parameter_name(image: str) -> str:
    return f"/stamp/{image}/undelivered-events"


def read(cloud: Cloud, region: str, images: Sequence[str]) -> dict[str, list[Message]]:
    """The waiting messages of each image that has any, oldest first (one GetParameters per 10 images)."""
    names = {parameter_name(image): image for image in images}
    found: dict[str, list[Message]] = {}
    for name, parameter in cloud.get_parameters(region, names).items():
        try:
            payloads = json.loads(parameter.value)
            found[names[name]] = [Message.of(payload) for payload in payloads]
        except (ValueError, TypeError, KeyError):
            continue  # not stamp's: left alone rather than overwritten
    return found


def write(cloud: Cloud, region: str, image: str, messages: Sequence[Message]) -> list[Message]:
    """Keeps `messages` (oldest first; each ID once), deleting the parameter when none is left; returns the ones
    that did not fit, oldest first."""
    kept = list({m.id: m for m in messages}.values())
    dropped: list[Message] = []
    while kept and len(_value(kept).encode("utf-8")) > VALUE_MAX:
        dropped.append(kept.pop(0))
    if kept:
        cloud.put_text_parameter(region, parameter_name(image), _value(kept))
    else:
        cloud.delete_parameter(region, parameter_name(image))
    return dropped


def _value(messages: Sequence[Message]) -> str:
    return "[" + ",".join(m.text for m in messages) + "]"
