"""The build result a `stamp build` leaves in `build/<image>/result.json`, read by verify, record and publish."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic
from pydantic import Field

from stamp.catalog.models import AmiId, Model, Region, ReleaseSource
from stamp.errors import CatalogError

RESULT_FILE = "result.json"


class BuildResult(Model):
    image: str
    build_id: str
    cloud: Literal["aws", "local"]
    amis: dict[Region, AmiId] = Field(description="Region to AMI ID, read from Packer's manifest by run UUID")
    source: ReleaseSource = Field(description="The parent release, or the vendor AMIs, the build started from")
    commit: str = Field(description="Git commit of the catalog repository the build ran from")
    started_at: str = Field(description="UTC, 2026-11-26T15:00:00Z: orders builds, so an older one never wins")
    finished_at: str
    packer_version: str
    dirty: bool = Field(default=False, description="Built from uncommitted changes to the image's inputs")
    dirty_inputs: list[str] = Field(default=[], description="What differed from the commit, when dirty")
    verified: Literal["pending", "passed", "failed"] = "pending"
    verify_report: str | None = Field(default=None, description="JUnit XML of the verification, repo-relative")
    failed_tests: list[str] = []
    timings: dict[str, float] = Field(default={}, description="Seconds per phase: build, commit, verify…")


def result_path(build_root: Path, image: str) -> Path:
    return build_root / image / RESULT_FILE


def read_result(build_root: Path, image: str) -> BuildResult:
    path = result_path(build_root, image)
    try:
        # Bytes: pydantic's JSON parser refuses invalid UTF-8 as a validation error, not a UnicodeDecodeError.
        return BuildResult.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise CatalogError(
            f"{path}: no build result for image '{image}'", hint=f"run `stamp build {image}` first"
        ) from None
    except pydantic.ValidationError as exc:
        raise CatalogError(f"{path}: not a valid build result: {exc.errors()[0]['msg']}") from None


def write_result(build_root: Path, result: BuildResult) -> Path:
    """Write atomically, so a killed stamp never leaves a truncated result behind."""
    path = result_path(build_root, result.image)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
