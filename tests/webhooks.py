"""A webhook receiver on loopback for the notification tests: a threaded http.server that checks each body's
signature the way docs/events.md tells receivers to, and can be told to fail."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "s3cret-for-tests"  # noqa: S105 - signs the tests' bodies only
SECRET_ENV = "STAMP_WEBHOOK_SECRET"  # noqa: S105 - the variable's name, not a secret


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """What the server saw: every attempt (by its X-Stamp-Delivery), the deliveries it accepted, the ones it
    rejected for a bad signature. `down` answers 503 to everything; `fail_next` to that many attempts."""

    url: str = ""
    down: bool = False
    fail_next: int = 0
    attempts: list[str] = field(default_factory=list)
    accepted: list[Delivery] = field(default_factory=list)
    rejected: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        return [d.headers["X-Stamp-Delivery"] for d in self.accepted]

    def types(self) -> list[tuple[str, str, int]]:
        return [(d.payload["type"], d.payload["image"], d.payload["version"]) for d in self.accepted]


def verify(secret: str, body: bytes, header: str) -> bool:
    """The check docs/events.md shows: HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


@contextmanager
def receiver(secret: str = SECRET) -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            delivery = Delivery({k: v for k, v in self.headers.items()}, body)
            with state.lock:
                state.attempts.append(self.headers.get("X-Stamp-Delivery", ""))
                failing = state.down or state.fail_next > 0
                state.fail_next = max(0, state.fail_next - 1)
            if failing:
                self.send_response(503)
            elif not verify(secret, body, self.headers.get("X-Stamp-Signature", "")):
                state.rejected.append(delivery)
                self.send_response(401)
            else:
                state.accepted.append(delivery)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/stamp"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
