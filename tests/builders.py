"""Builders of the values tests need again and again: a build result, a release entry. Tests say only what
differs from an ordinary verified build of `web` on `base` v1."""

from __future__ import annotations

from typing import Any

from stamp.catalog.results import BuildResult

AMIS = {"us-east-1": "ami-0123456789abcdef1", "eu-west-1": "ami-0fedcba987654321f"}


def build_result(image: str = "web", build_id: str = "web-20261126150000-abcdef", **changes: Any) -> BuildResult:
    """A verified result of a build of `image` from `base` v1, as `stamp verify` leaves it; `changes` override."""
    fields: dict[str, Any] = {
        "image": image,
        "build_id": build_id,
        "cloud": "aws",
        "amis": dict(AMIS),
        "source": {"image": "base", "version": 1},
        "commit": "0a1b2c3d",
        "started_at": "2026-11-26T15:00:00Z",
        "finished_at": "2026-11-26T15:09:00Z",
        "packer_version": "1.6.6",
        "verified": "passed",
    }
    return BuildResult.model_validate(fields | changes)


def release_entry(version: int, amis: dict[str, str], status: str = "current") -> dict[str, Any]:
    """A `releases:` list item of image `web`, built from `base` version 1, as catalog.yaml holds it."""
    return {
        "version": version,
        "amis": amis,
        "built_at": f"2026-11-{version:02d}T12:00:00Z",
        "commit": "1a2b3c4d5e6f",
        "build_id": f"web-{version}-abcdef",
        "source": {"image": "base", "version": 1},
        "verified": "passed",
        "status": status,
    }
