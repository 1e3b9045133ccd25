"""Shared fixtures: a real moto server over HTTP for tests of the AWS seam, and an in-memory cloud above it."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakes import FakeCloud

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class MotoEndpoint:
    url: str

    def reset(self) -> None:
        # moto keeps every backend in memory; this endpoint empties them all (moto's own reset API).
        if not self.url.startswith("http://127.0.0.1:"):
            raise ValueError(f"not a local moto server: {self.url}")
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310 - checked above
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - checked above
            answer.read()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoEndpoint]:
    """One moto server for the session, on a free port of 127.0.0.1, spoken to over real HTTP."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoEndpoint(url=f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoEndpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoEndpoint]:
    """The moto server, emptied before the test, with throwaway credentials (no real ones are ever read)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    moto_server.reset()
    yield moto_server


@pytest.fixture
def fake_cloud() -> FakeCloud:
    return FakeCloud()
