"""Vendor source images pre-seeded into the local moto server, and the MOTO_AMIS_PATH JSON that carries them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stamp.errors import CatalogError

# moto parses creation_date with botocore's timestamp parser; the "2026-11-01 12:34:00" form broke the first
# call in a second region (docs/facts.md, Packer against moto), so only the ISO 8601 form EC2 itself returns is
# accepted.
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_OWNER_ID = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class SeedImage:
    """A vendor image the catalog's source filter expects, to pre-seed in moto."""

    name: str
    owner_id: str
    creation_date: str
    description: str = ""
    ami_id: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise CatalogError("seed image: the name is empty", hint="give the vendor image's full name")
        if not _OWNER_ID.match(self.owner_id):
            raise CatalogError(
                f"seed image {self.name}: owner_id {self.owner_id!r} is not 12 digits",
                hint="write the owner account ID as a quoted 12-digit string",
            )
        if not _ISO_8601.match(self.creation_date):
            raise CatalogError(
                f"seed image {self.name}: creation_date {self.creation_date!r} is not ISO 8601 with milliseconds",
                hint='write it like "2026-11-01T12:34:00.000Z"',
            )
        if self.ami_id is not None and not _AMI_ID.match(self.ami_id):
            raise CatalogError(
                f"seed image {self.name}: ami_id {self.ami_id!r} is not an AMI ID",
                hint="use ami- followed by 8 or 17 lowercase hex digits, or leave it out",
            )

    @property
    def resolved_ami_id(self) -> str:
        """The AMI ID moto serves this image under: the given one, or one derived from the name."""
        return self.ami_id or seed_ami_id(self.name)


def seed_ami_id(name: str) -> str:
    """A stable AMI ID for a seeded vendor image, so a restarted local cloud serves the same ID again."""
    return "ami-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:17]


def unique_seeds(seeds: Iterable[SeedImage]) -> list[SeedImage]:
    """Seeds with duplicate AMI IDs dropped (first wins), in order."""
    seen: set[str] = set()
    out: list[SeedImage] = []
    for seed in seeds:
        if seed.resolved_ami_id not in seen:
            seen.add(seed.resolved_ami_id)
            out.append(seed)
    return out


def moto_ami_entry(seed: SeedImage) -> dict[str, Any]:
    """One entry of moto's AMI list: keyword arguments of moto's `Ami` constructor."""
    return {
        "ami_id": seed.resolved_ami_id,
        "name": seed.name,
        "description": seed.description,
        "owner_id": seed.owner_id,
        "public": True,
        "virtualization_type": "hvm",
        "architecture": "x86_64",
        "state": "available",
        "creation_date": seed.creation_date,
        "platform": None,
        "image_type": "machine",
        "hypervisor": "xen",
        # Packer's amazon-ebs builder refuses a source AMI whose root device is not EBS.
        "root_device_type": "ebs",
        "root_device_name": "/dev/xvda",
        "sriov": "simple",
        "boot_mode": "uefi-preferred",
    }


def moto_amis(seeds: Sequence[SeedImage]) -> list[dict[str, Any]]:
    """The JSON document for MOTO_AMIS_PATH."""
    return [moto_ami_entry(seed) for seed in unique_seeds(seeds)]
