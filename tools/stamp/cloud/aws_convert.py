"""Pure conversions between boto3's requests and answers and the Cloud protocol's types; no calls."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stamp.cloud.protocol import ImageDetails, Instance, ShareSet

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import (
        ImageTypeDef,
        InstanceTypeDef,
        LaunchPermissionTypeDef,
        TagTypeDef,
    )


def sha256_hex(checksum: Any) -> str | None:
    """S3's base64 ChecksumSHA256 as hex; None when absent, or when it is a checksum of parts (`…-3`)."""
    if not isinstance(checksum, str) or "-" in checksum:
        return None
    try:
        raw = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def some_ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:3])
    return shown + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")


def tag_list(tags: Mapping[str, str]) -> list[TagTypeDef]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def tag_map(tags: Any) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags or []}


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def image_details_of(image: ImageTypeDef) -> ImageDetails:
    reason = image.get("StateReason", {})
    return ImageDetails(
        ami_id=image["ImageId"],
        name=image.get("Name", ""),
        state=image.get("State", ""),
        state_reason=str(reason.get("Message") or reason.get("Code") or ""),
        owner_id=image.get("OwnerId", ""),
        creation_date=image.get("CreationDate", ""),
        public=bool(image.get("Public", False)),
        tags=tag_map(image.get("Tags")),
        snapshot_ids=tuple(
            m["Ebs"]["SnapshotId"]
            for m in image.get("BlockDeviceMappings", [])
            if "Ebs" in m and m["Ebs"].get("SnapshotId")
        ),
        snapshot_encrypted={
            m["Ebs"]["SnapshotId"]: bool(m["Ebs"]["Encrypted"])
            for m in image.get("BlockDeviceMappings", [])
            if "Ebs" in m and m["Ebs"].get("SnapshotId") and "Encrypted" in m["Ebs"]
        },
    )


def share_set_of(permissions: Sequence[LaunchPermissionTypeDef]) -> ShareSet:
    return ShareSet(
        accounts=frozenset(p["UserId"] for p in permissions if "UserId" in p),
        organizations=frozenset(p["OrganizationArn"] for p in permissions if "OrganizationArn" in p),
        organizational_units=frozenset(p["OrganizationalUnitArn"] for p in permissions if "OrganizationalUnitArn" in p),
        public=any(p.get("Group") == "all" for p in permissions),
    )


def launch_permissions_of(share: ShareSet) -> list[LaunchPermissionTypeDef]:
    out: list[LaunchPermissionTypeDef] = [{"UserId": a} for a in sorted(share.accounts)]
    out += [{"OrganizationArn": a} for a in sorted(share.organizations)]
    out += [{"OrganizationalUnitArn": a} for a in sorted(share.organizational_units)]
    if share.public:
        out.append({"Group": "all"})
    return out


def instance_of(item: InstanceTypeDef) -> Instance:
    return Instance(
        instance_id=item["InstanceId"],
        ami_id=item.get("ImageId", ""),
        state=item.get("State", {}).get("Name", ""),
        private_ip=item.get("PrivateIpAddress"),
        public_ip=item.get("PublicIpAddress"),
    )
