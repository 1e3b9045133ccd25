"""The janitor's EC2 calls: what stamp tagged in a region, the account's own tagged AMIs, and deleting AMIs
and snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stamp.cloud.aws_base import AwsBase
from stamp.cloud.aws_convert import as_datetime, image_details_of, tag_map
from stamp.cloud.protocol import ImageDetails, ResourceKind, TaggedResource
from stamp.tags import BUILD_ID_TAG

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef


class AwsJanitor(AwsBase):
    def own_images_tagged(self, region: str, key: str) -> dict[str, ImageDetails]:
        found: dict[str, ImageDetails] = {}
        with self._errors("DescribeImages", region, f"own AMIs tagged {key}"):
            paginator = self.ec2(region).get_paginator("describe_images")
            for page in paginator.paginate(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [key]}]):
                for image in page.get("Images", []):
                    details = image_details_of(image)
                    found[details.ami_id] = details
        return found

    def list_tagged(self, region: str, key: str = BUILD_ID_TAG, value: str | None = None) -> list[TaggedResource]:
        tag_filter: FilterTypeDef = (
            {"Name": "tag-key", "Values": [key]} if value is None else {"Name": f"tag:{key}", "Values": [value]}
        )
        what = f"resources tagged {key}" + (f"={value}" if value is not None else "")
        ec2 = self.ec2(region)
        found: list[TaggedResource] = []

        def add(kind: ResourceKind, resource_id: str, tags: Any, created: Any, state: str = "") -> None:
            found.append(
                TaggedResource(
                    kind=kind,
                    resource_id=resource_id,
                    region=region,
                    tags=tag_map(tags),
                    created_at=as_datetime(created),
                    state=state,
                )
            )

        with self._errors("DescribeInstances", region, what):
            live = {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
            for page in ec2.get_paginator("describe_instances").paginate(Filters=[tag_filter, live]):  # type: ignore[list-item]
                for reservation in page.get("Reservations", []):
                    for i in reservation.get("Instances", []):
                        add("instance", i["InstanceId"], i.get("Tags"), i.get("LaunchTime"), i["State"]["Name"])
        with self._errors("DescribeImages", region, what):
            for images in ec2.get_paginator("describe_images").paginate(Owners=["self"], Filters=[tag_filter]):
                for image in images.get("Images", []):
                    add("image", image["ImageId"], image.get("Tags"), image.get("CreationDate"), image.get("State", ""))
        with self._errors("DescribeSnapshots", region, what):
            for snaps in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=[tag_filter]):
                for snap in snaps.get("Snapshots", []):
                    add("snapshot", snap["SnapshotId"], snap.get("Tags"), snap.get("StartTime"), snap.get("State", ""))
        with self._errors("DescribeKeyPairs", region, what):
            for pair in ec2.describe_key_pairs(Filters=[tag_filter]).get("KeyPairs", []):
                add("key-pair", pair.get("KeyName", ""), pair.get("Tags"), pair.get("CreateTime"))
        with self._errors("DescribeSecurityGroups", region, what):
            for groups in ec2.get_paginator("describe_security_groups").paginate(Filters=[tag_filter]):
                for group in groups.get("SecurityGroups", []):
                    add("security-group", group["GroupId"], group.get("Tags"), None)
        return found

    def deregister_image(self, region: str, ami_id: str) -> None:
        with self._errors("DeregisterImage", region, ami_id):
            self.ec2(region).deregister_image(ImageId=ami_id)

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        with self._errors("DeleteSnapshot", region, snapshot_id):
            self.ec2(region).delete_snapshot(SnapshotId=snapshot_id)
