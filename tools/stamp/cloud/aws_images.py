"""AMIs and their snapshots on EC2: finding and describing them, waiting for one, who may launch or copy
them (launch and snapshot permissions), their snapshots' KMS keys, and tags."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from stamp.cloud.aws_base import IMAGE_IDS_PER_CALL, AwsBase
from stamp.cloud.aws_convert import image_details_of, launch_permissions_of, share_set_of, some_ids, tag_list
from stamp.cloud.protocol import ImageDetails, ImageSummary, KmsKey, ShareDiff, ShareSet, SnapshotDetails
from stamp.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import LaunchPermissionModificationsTypeDef

_WAITABLE_STATES = frozenset({"pending"})


class AwsImages(AwsBase):
    def find_newest_image(self, region: str, *, name: str, owners: Sequence[str]) -> ImageSummary | None:
        found: list[ImageSummary] = []
        with self._errors("DescribeImages", region, f"images named '{name}'"):
            pages = self.ec2(region).get_paginator("describe_images")
            for page in pages.paginate(
                Owners=list(owners),
                Filters=[{"Name": "name", "Values": [name]}, {"Name": "state", "Values": ["available"]}],
            ):
                found.extend(
                    ImageSummary(ami_id=i["ImageId"], name=i.get("Name", ""), creation_date=i.get("CreationDate", ""))
                    for i in page.get("Images", [])
                )
        # ISO 8601 strings in UTC sort by time; the ID breaks ties so the answer is stable.
        return max(found, key=lambda i: (i.creation_date, i.ami_id), default=None)

    def describe_image(self, region: str, ami_id: str) -> ImageDetails | None:
        return self.describe_images(region, [ami_id]).get(ami_id)

    def describe_images(self, region: str, ami_ids: Collection[str]) -> dict[str, ImageDetails]:
        # The image-id *filter* (not ImageIds) leaves out deregistered IDs instead of failing the whole call.
        wanted = sorted(set(ami_ids))
        found: dict[str, ImageDetails] = {}
        for start in range(0, len(wanted), IMAGE_IDS_PER_CALL):
            chunk = wanted[start : start + IMAGE_IDS_PER_CALL]
            with self._errors("DescribeImages", region, some_ids(chunk)):
                answer = self.ec2(region).describe_images(Filters=[{"Name": "image-id", "Values": chunk}])
            for image in answer.get("Images", []):
                details = image_details_of(image)
                found[details.ami_id] = details
        return found

    def wait_until_available(
        self, region: str, ami_id: str, *, timeout: float = 900.0, delay: float = 5.0
    ) -> ImageDetails:
        # A new AMI may not be visible to DescribeImages at once (eventual consistency), so absent is waited for:
        # https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
        deadline = self._clock() + timeout
        last = "not found"
        while True:
            details = self.describe_image(region, ami_id)
            if details is not None:
                if details.state == "available":
                    return details
                if details.state not in _WAITABLE_STATES:
                    reason = f": {details.state_reason}" if details.state_reason else ""
                    raise CloudError(
                        f"AMI {ami_id} in {region} is {details.state}{reason}",
                        hint="the image cannot become available; rebuild it (`stamp build`)",
                    )
                last = details.state
            if self._clock() + delay > deadline:
                raise CloudError(
                    f"AMI {ami_id} in {region} is still {last} after {timeout:.0f} s",
                    hint="look at the image in the EC2 console, then run again with a longer wait",
                )
            self._sleep(delay)

    def get_launch_permissions(self, region: str, ami_id: str) -> ShareSet:
        with self._errors("DescribeImageAttribute", region, ami_id):
            answer = self.ec2(region).describe_image_attribute(ImageId=ami_id, Attribute="launchPermission")
        return share_set_of(answer.get("LaunchPermissions", []))

    def modify_launch_permissions(self, region: str, ami_id: str, diff: ShareDiff) -> None:
        if diff.empty:
            return
        # One call carries additions and removals, so a reconcile costs at most one modify per AMI and region.
        change: LaunchPermissionModificationsTypeDef = {}
        if diff.add:
            change["Add"] = launch_permissions_of(diff.add)
        if diff.remove:
            change["Remove"] = launch_permissions_of(diff.remove)
        with self._errors("ModifyImageAttribute", region, ami_id):
            self.ec2(region).modify_image_attribute(ImageId=ami_id, LaunchPermission=change)

    def get_snapshot_permissions(self, region: str, snapshot_id: str) -> ShareSet:
        with self._errors("DescribeSnapshotAttribute", region, snapshot_id):
            answer = self.ec2(region).describe_snapshot_attribute(
                SnapshotId=snapshot_id, Attribute="createVolumePermission"
            )
        permissions = answer.get("CreateVolumePermissions", [])
        return ShareSet(
            accounts=frozenset(p["UserId"] for p in permissions if "UserId" in p),
            public=any(p.get("Group") == "all" for p in permissions),
        )

    def modify_snapshot_permissions(self, region: str, snapshot_id: str, diff: ShareDiff) -> None:
        for part in (diff.add, diff.remove):
            if part.organizations or part.organizational_units:
                raise ValueError("snapshots are shared with accounts only")
        # The OperationType form, one call per direction: moto ignores the CreateVolumePermission form
        # (docs/facts.md, moto gaps).
        ec2 = self.ec2(region)
        directions: tuple[tuple[Literal["add", "remove"], ShareSet], ...] = (("add", diff.add), ("remove", diff.remove))
        for operation, part in directions:
            if not part:
                continue
            params: dict[str, Any] = {}
            if part.accounts:
                params["UserIds"] = sorted(part.accounts)
            if part.public:
                params["GroupNames"] = ["all"]
            with self._errors("ModifySnapshotAttribute", region, snapshot_id):
                ec2.modify_snapshot_attribute(
                    SnapshotId=snapshot_id, Attribute="createVolumePermission", OperationType=operation, **params
                )

    def describe_snapshots(self, region: str, snapshot_ids: Collection[str]) -> dict[str, SnapshotDetails]:
        # The snapshot-id *filter*, like describe_images: a deleted ID drops out instead of failing the call.
        wanted = sorted(set(snapshot_ids))
        found: dict[str, SnapshotDetails] = {}
        for start in range(0, len(wanted), IMAGE_IDS_PER_CALL):
            chunk = wanted[start : start + IMAGE_IDS_PER_CALL]
            with self._errors("DescribeSnapshots", region, some_ids(chunk)):
                pages = self.ec2(region).get_paginator("describe_snapshots")
                for page in pages.paginate(Filters=[{"Name": "snapshot-id", "Values": chunk}]):
                    for snap in page.get("Snapshots", []):
                        found[snap["SnapshotId"]] = SnapshotDetails(
                            snapshot_id=snap["SnapshotId"],
                            encrypted=bool(snap.get("Encrypted", False)),
                            kms_key_id=snap.get("KmsKeyId") or None,
                        )
        return found

    def describe_kms_key(self, region: str, key_id: str) -> KmsKey | None:
        try:
            with self._errors("DescribeKey", region, f"KMS key {key_id}"):
                answer = self.kms(region).describe_key(KeyId=key_id)
        except CloudError as exc:
            # KMS says NotFoundException, which the shared mapper (EC2 and SSM codes) does not know.
            if ": NotFoundException" in exc.message:
                return None
            exc.hint = exc.hint.replace("ec2:DescribeKey", "kms:DescribeKey")
            raise
        meta = answer["KeyMetadata"]
        return KmsKey(key_id=meta["KeyId"], arn=meta.get("Arn", ""), key_manager=meta.get("KeyManager", ""))

    def create_tags(self, region: str, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        if not resource_ids or not tags:
            return
        with self._errors("CreateTags", region, some_ids(resource_ids)):
            self.ec2(region).create_tags(Resources=list(resource_ids), Tags=tag_list(tags))

    def delete_tags(self, region: str, resource_ids: Sequence[str], keys: Sequence[str]) -> None:
        if not resource_ids or not keys:
            return
        with self._errors("DeleteTags", region, some_ids(resource_ids)):
            self.ec2(region).delete_tags(Resources=list(resource_ids), Tags=[{"Key": key} for key in keys])
