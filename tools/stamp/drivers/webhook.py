"""Webhooks: the only code that POSTs to one (docs/events.md), with urllib, retried with exponential backoff."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import IO


@dataclass(frozen=True)
class Retry:
    """`attempts` tries in all; after a failed one, `first_delay` seconds of waiting, twice as long each time."""

    attempts: int = 3
    first_delay: float = 1.0
    sleep: Callable[[float], None] = time.sleep


# What `post` uses when it is given no Retry; tests replace it, so that nothing waits.
DEFAULT_RETRY = Retry()
# Seconds one attempt may take, connecting and answering: a hung receiver must not hang a release.
TIMEOUT = 10.0
# Enough of an answer to let the receiver finish; stamp reads nothing from it.
_ANSWER_BYTES = 64 * 1024


class WebhookFailed(Exception):
    """The POST did not succeed; the message says how the last attempt failed and how many were made."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect fails the delivery: urllib would turn the POST into a GET without the body."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> urllib.request.Request | None:
        return None


def post(
    url: str, body: bytes, headers: Mapping[str, str], *, retry: Retry | None = None, timeout: float = TIMEOUT
) -> int:
    """POSTs `body` as JSON until the endpoint answers 2xx, and returns that status.

    Retried: connection failures, timeouts, HTTP 429 and 5xx. Not retried: any other answer (a 4xx does not change
    by itself, and a redirect is refused). WebhookFailed when no attempt succeeded.
    """
    if not url.startswith(("https://", "http://")):
        raise WebhookFailed(f"not an http(s) URL: {url.split(':', 1)[0]}:…")
    policy = retry or DEFAULT_RETRY
    opener = urllib.request.build_opener(_NoRedirects)
    last = ""
    for attempt in range(1, policy.attempts + 1):
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST"
        )
        try:
            with opener.open(request, timeout=timeout) as answer:
                answer.read(_ANSWER_BYTES)
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            last = f"HTTP {exc.code}" + (f" {exc.reason}" if exc.reason else "")
            if 300 <= exc.code < 400:
                raise WebhookFailed(
                    f"{last}: a redirect, which stamp does not follow (configure the final URL)"
                ) from None
            if exc.code != 429 and exc.code < 500:
                raise WebhookFailed(f"{last} (not retried: the receiver refused the request)") from None
        except urllib.error.URLError as exc:
            last = f"cannot reach it: {exc.reason}"
        except (OSError, http.client.HTTPException) as exc:
            last = f"cannot reach it: {exc or type(exc).__name__}"
        if attempt < policy.attempts:
            policy.sleep(policy.first_delay * 2 ** (attempt - 1))
    raise WebhookFailed(f"{last} ({policy.attempts} attempts)")
