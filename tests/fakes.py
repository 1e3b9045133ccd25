"""An in-memory Cloud for fast tests above the seam; counts calls under the same operation names as AWS."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from stamp.cloud.protocol import (
    ImageDetails,
    ImageSummary,
    ImageUser,
    Instance,
    KeyPair,
    KmsKey,
    Parameter,
    ParameterUpdate,
    ShareDiff,
    ShareSet,
    SnapshotDetails,
    StoredObject,
    TaggedResource,
)
from stamp.errors import CloudError, MissingResource
from stamp.tags import BUILD_ID_TAG


@dataclass
class FakeImage:
    ami_id: str
    name: str
    region: str
    owner_id: str = "123456789012"
    state: str = "available"
    state_reason: str = ""
    creation_date: str = "2026-11-01T00:00:00.000Z"
    tags: dict[str, str] = field(default_factory=dict)
    snapshot_ids: tuple[str, ...] = ()
    launch: ShareSet = field(default_factory=ShareSet)

    def details(self) -> ImageDetails:
        return ImageDetails(
            ami_id=self.ami_id,
            name=self.name,
            state=self.state,
            state_reason=self.state_reason,
            owner_id=self.owner_id,
            creation_date=self.creation_date,
            public=self.launch.public,
            tags=dict(self.tags),
            snapshot_ids=self.snapshot_ids,
        )


def _apply(current: ShareSet, diff: ShareDiff) -> ShareSet:
    return ShareSet(
        accounts=(current.accounts | diff.add.accounts) - diff.remove.accounts,
        organizations=(current.organizations | diff.add.organizations) - diff.remove.organizations,
        organizational_units=(current.organizational_units | diff.add.organizational_units)
        - diff.remove.organizational_units,
        public=(current.public or diff.add.public) and not diff.remove.public,
    )


class FakeCloud:
    """Implements `stamp.cloud.Cloud` with dicts; `fail` maps an operation name to an error it raises."""

    def __init__(self) -> None:
        self.account = "123456789012"
        self.images: dict[tuple[str, str], FakeImage] = {}
        self.snapshots: dict[tuple[str, str], ShareSet] = {}
        self.snapshot_tags: dict[tuple[str, str], dict[str, str]] = {}
        self.parameters: dict[tuple[str, str], Parameter] = {}
        self.instances: dict[tuple[str, str], tuple[Instance, dict[str, str]]] = {}
        self.key_pairs: dict[tuple[str, str], tuple[KeyPair, dict[str, str]]] = {}
        self.security_groups: dict[tuple[str, str], dict[str, str]] = {}
        # S3: bucket -> its region; (bucket, key) -> (bytes, content type).
        self.buckets: dict[str, str] = {}
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        # SNS: topic ARN -> the (message, attributes) published to it. EventBridge: (region, bus name) -> the
        # (source, detail type, detail) entries put on it; every region has the bus `default`.
        self.topics: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self.buses: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        # STS: role ARN -> the cloud of the account the role is in (a role not listed cannot be assumed).
        self.roles: dict[str, FakeCloud] = {}
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, CloudError] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _call(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1
        if operation in self.fail:
            raise self.fail[operation]

    def _id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}-{next(self._ids):017x}"

    def call_counts(self) -> dict[str, int]:
        return dict(self.calls)

    def reset_call_counts(self) -> None:
        self.calls.clear()

    def add_image(self, region: str, name: str, *, snapshots: int = 1, **kwargs: object) -> FakeImage:
        """Test set-up, not counted: an AMI with its snapshots."""
        snapshot_ids = tuple(self._id("snap") for _ in range(snapshots))
        for snapshot_id in snapshot_ids:
            self.snapshots[(region, snapshot_id)] = ShareSet()
        image = FakeImage(ami_id=self._id("ami"), name=name, region=region, snapshot_ids=snapshot_ids)
        image = replace(image, **kwargs)  # type: ignore[arg-type]
        self.images[(region, image.ami_id)] = image
        return image

    def _image(self, region: str, ami_id: str) -> FakeImage:
        image = self.images.get((region, ami_id))
        if image is None:
            raise MissingResource(f"AMI {ami_id} not found in {region}")
        return image

    def find_newest_image(self, region: str, *, name: str, owners: Sequence[str]) -> ImageSummary | None:
        import fnmatch

        self._call("DescribeImages")
        found = [
            i
            for (r, _), i in self.images.items()
            if r == region and i.state == "available" and i.owner_id in owners and fnmatch.fnmatchcase(i.name, name)
        ]
        best = max(found, key=lambda i: (i.creation_date, i.ami_id), default=None)
        return None if best is None else ImageSummary(best.ami_id, best.name, best.creation_date)

    def describe_image(self, region: str, ami_id: str) -> ImageDetails | None:
        return self.describe_images(region, [ami_id]).get(ami_id)

    def describe_images(self, region: str, ami_ids: Collection[str]) -> dict[str, ImageDetails]:
        self._call("DescribeImages")
        found = {a: self.images[(region, a)].details() for a in ami_ids if (region, a) in self.images}
        # Like AWS (unlike moto), DescribeImages says whether each snapshot is encrypted.
        keys = self.encryption.snapshot_keys
        return {
            a: replace(d, snapshot_encrypted={s: (region, s) in keys for s in d.snapshot_ids}) for a, d in found.items()
        }

    def own_images_tagged(self, region: str, key: str) -> dict[str, ImageDetails]:
        self._call("DescribeImages")
        return {
            image.ami_id: image.details()
            for (r, _), image in self.images.items()
            if r == region and key in image.tags and image.owner_id == self.account
        }

    def account_id(self) -> str:
        self._call("GetCallerIdentity")
        return self.account

    def assume_role(self, role_arn: str, *, session_name: str) -> FakeCloud:
        self._call("AssumeRole")
        if role_arn not in self.roles:
            raise CloudError(f"AssumeRole in us-east-1 for {role_arn} failed: AccessDenied: not authorized")
        return self.roles[role_arn]

    def wait_until_available(
        self, region: str, ami_id: str, *, timeout: float = 900.0, delay: float = 5.0
    ) -> ImageDetails:
        details = self.describe_image(region, ami_id)
        if details is None or details.state != "available":
            state = details.state if details else "not found"
            raise CloudError(f"AMI {ami_id} in {region} is {state}")
        return details

    def get_launch_permissions(self, region: str, ami_id: str) -> ShareSet:
        self._call("DescribeImageAttribute")
        return self._image(region, ami_id).launch

    def modify_launch_permissions(self, region: str, ami_id: str, diff: ShareDiff) -> None:
        if diff.empty:
            return
        self._call("ModifyImageAttribute")
        image = self._image(region, ami_id)
        image.launch = _apply(image.launch, diff)

    def get_snapshot_permissions(self, region: str, snapshot_id: str) -> ShareSet:
        self._call("DescribeSnapshotAttribute")
        if (region, snapshot_id) not in self.snapshots:
            raise MissingResource(f"snapshot {snapshot_id} not found in {region}")
        return self.snapshots[(region, snapshot_id)]

    def modify_snapshot_permissions(self, region: str, snapshot_id: str, diff: ShareDiff) -> None:
        for part in (diff.add, diff.remove):
            if part:
                self._call("ModifySnapshotAttribute")
        self.snapshots[(region, snapshot_id)] = _apply(self.snapshots[(region, snapshot_id)], diff)

    @property
    def encryption(self) -> FakeEncryption:
        """Snapshot KMS keys and the keys themselves; every snapshot is unencrypted until a test says otherwise."""
        state = self.__dict__.get("_encryption")
        if state is None:
            state = self.__dict__["_encryption"] = FakeEncryption()
        assert isinstance(state, FakeEncryption)
        return state

    def encrypt_snapshot(self, region: str, snapshot_id: str, key: KmsKey, *, aliases: Sequence[str] = ()) -> None:
        """Test set-up, not counted: the snapshot is encrypted with `key`, which exists in the region."""
        self.encryption.snapshot_keys[(region, snapshot_id)] = key.arn
        self.encryption.keys[(region, key.arn)] = key
        if aliases:
            self.encryption.aliases[key.arn] = tuple(aliases)

    def describe_snapshots(self, region: str, snapshot_ids: Collection[str]) -> dict[str, SnapshotDetails]:
        wanted = sorted(set(snapshot_ids))
        for _ in range(0, len(wanted), 100):
            self._call("DescribeSnapshots")
        found: dict[str, SnapshotDetails] = {}
        for snapshot_id in wanted:
            if (region, snapshot_id) in self.snapshots:
                key = self.encryption.snapshot_keys.get((region, snapshot_id))
                found[snapshot_id] = SnapshotDetails(snapshot_id, encrypted=key is not None, kms_key_id=key)
        return found

    def describe_kms_key(self, region: str, key_id: str) -> KmsKey | None:
        self._call("DescribeKey")
        for (r, arn), key in self.encryption.keys.items():
            if r == region and (key_id in (arn, key.key_id) or key_id in self.encryption.aliases.get(arn, ())):
                return key
        return None

    def create_tags(self, region: str, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        if not resource_ids or not tags:
            return
        self._call("CreateTags")
        for resource_id in resource_ids:
            if (region, resource_id) in self.images:
                self.images[(region, resource_id)].tags.update(tags)
            else:
                self.snapshot_tags.setdefault((region, resource_id), {}).update(tags)

    def delete_tags(self, region: str, resource_ids: Sequence[str], keys: Sequence[str]) -> None:
        if not resource_ids or not keys:
            return
        self._call("DeleteTags")
        for resource_id in resource_ids:
            tags = (
                self.images[(region, resource_id)].tags
                if (region, resource_id) in self.images
                else self.snapshot_tags.get((region, resource_id), {})
            )
            for key in keys:
                tags.pop(key, None)

    def get_parameters(self, region: str, names: Collection[str]) -> dict[str, Parameter]:
        wanted = sorted(set(names))
        for _ in range(0, len(wanted), 10):
            self._call("GetParameters")
        return {n: self.parameters[(region, n)] for n in wanted if (region, n) in self.parameters}

    def put_image_parameter(self, region: str, name: str, ami_id: str) -> ParameterUpdate:
        existing = self.get_parameters(region, [name]).get(name)
        if existing is not None and existing.value == ami_id:
            return ParameterUpdate(name, existing.value, ami_id, existing.version)
        self._call("PutParameter")
        version = existing.version + 1 if existing else 1
        self.parameters[(region, name)] = Parameter(name, ami_id, version)
        return ParameterUpdate(name, existing.value if existing else None, ami_id, version)

    def write_image_parameter(self, region: str, name: str, ami_id: str, *, overwrite: bool) -> int:
        self._call("PutParameter")
        existing = self.parameters.get((region, name))
        if existing is not None and not overwrite:
            raise CloudError(f"PutParameter in {region} for {name} failed: ParameterAlreadyExists")
        version = existing.version + 1 if existing else 1
        self.parameters[(region, name)] = Parameter(name, ami_id, version)
        return version

    def import_key_pair(
        self, region: str, name: str, public_key: str, *, tags: Mapping[str, str] | None = None
    ) -> KeyPair:
        self._call("ImportKeyPair")
        pair = KeyPair(key_pair_id=self._id("key"), name=name)
        self.key_pairs[(region, name)] = (pair, dict(tags or {}))
        return pair

    def run_instances(
        self,
        region: str,
        ami_id: str,
        *,
        count: int,
        instance_type: str,
        key_name: str | None = None,
        security_group_ids: Sequence[str] = (),
        user_data: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[Instance]:
        self._call("RunInstances")
        self._image(region, ami_id)
        made = [Instance(self._id("i"), ami_id, "running", private_ip=f"10.0.0.{n + 1}") for n in range(count)]
        for instance in made:
            self.instances[(region, instance.instance_id)] = (instance, dict(tags or {}))
        return made

    def describe_instances(self, region: str, instance_ids: Sequence[str]) -> list[Instance]:
        self._call("DescribeInstances")
        return [self.instances[(region, i)][0] for i in instance_ids if (region, i) in self.instances]

    def terminate_instances(self, region: str, instance_ids: Sequence[str]) -> None:
        if not instance_ids:
            return
        self._call("TerminateInstances")
        for instance_id in instance_ids:
            instance, tags = self.instances[(region, instance_id)]
            self.instances[(region, instance_id)] = (replace(instance, state="terminated"), tags)

    def list_tagged(self, region: str, key: str = BUILD_ID_TAG, value: str | None = None) -> list[TaggedResource]:
        for operation in ("DescribeInstances", "DescribeImages", "DescribeSnapshots", "DescribeKeyPairs"):
            self._call(operation)
        self._call("DescribeSecurityGroups")

        def match(tags: Mapping[str, str]) -> bool:
            return key in tags and (value is None or tags[key] == value)

        now = datetime.now(UTC)
        found: list[TaggedResource] = []
        for (r, instance_id), (instance, tags) in self.instances.items():
            if r == region and instance.state != "terminated" and match(tags):
                found.append(TaggedResource("instance", instance_id, region, tags, now, instance.state))
        for (r, ami_id), image in self.images.items():
            if r == region and match(image.tags):
                found.append(TaggedResource("image", ami_id, region, image.tags, now, image.state))
        for (r, snapshot_id), tags in self.snapshot_tags.items():
            if r == region and match(tags) and (r, snapshot_id) in self.snapshots:
                found.append(TaggedResource("snapshot", snapshot_id, region, tags, now))
        for (r, name), (_, tags) in self.key_pairs.items():
            if r == region and match(tags):
                found.append(TaggedResource("key-pair", name, region, tags, now))
        for (r, group_id), tags in self.security_groups.items():
            if r == region and match(tags):
                found.append(TaggedResource("security-group", group_id, region, tags))
        return found

    def deregister_image(self, region: str, ami_id: str) -> None:
        self._call("DeregisterImage")
        self._image(region, ami_id)
        del self.images[(region, ami_id)]

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        self._call("DeleteSnapshot")
        if any(snapshot_id in i.snapshot_ids for (r, _), i in self.images.items() if r == region):
            raise CloudError(f"snapshot {snapshot_id} in {region} is in use by an AMI")
        self.snapshots.pop((region, snapshot_id), None)
        self.snapshot_tags.pop((region, snapshot_id), None)

    def delete_key_pair(self, region: str, key_name: str) -> None:
        self._call("DeleteKeyPair")
        self.key_pairs.pop((region, key_name), None)

    def create_security_group(
        self, region: str, name: str, *, description: str, ssh_cidrs: Sequence[str], tags: Mapping[str, str]
    ) -> str:
        self._call("CreateSecurityGroup")
        group_id = self._id("sg")
        self.security_groups[(region, group_id)] = dict(tags)
        return group_id

    def delete_security_group(self, region: str, group_id: str) -> None:
        self._call("DeleteSecurityGroup")
        self.security_groups.pop((region, group_id), None)

    # -- lifecycle: deprecation, what uses an image, parameter deletion ------------------------------------

    @property
    def lifecycle(self) -> FakeLifecycle:
        """Launch templates and deprecations, kept apart so the fields above stay as other tests know them."""
        state = self.__dict__.get("_lifecycle")
        if state is None:
            state = self.__dict__["_lifecycle"] = FakeLifecycle()
        assert isinstance(state, FakeLifecycle)
        return state

    def enable_image_deprecation(self, region: str, ami_id: str, at: datetime) -> bool:
        self._call("EnableImageDeprecation")
        self._image(region, ami_id)
        if not self.lifecycle.deprecation_supported:
            return False
        self.lifecycle.deprecations[(region, ami_id)] = at
        return True

    def image_users(self, region: str, ami_ids: Collection[str]) -> list[ImageUser]:
        self._call("DescribeLaunchTemplateVersions")
        self._call("DescribeInstances")
        wanted = set(ami_ids)
        users = [u for u in self.lifecycle.launch_templates if u.region == region and u.ami_id in wanted]
        users += [
            ImageUser(region, "instance", instance.instance_id, instance.ami_id, instance.state)
            for (r, _), (instance, _) in self.instances.items()
            if r == region and instance.ami_id in wanted and instance.state in ("pending", "running", "stopped")
        ]
        return users

    def delete_parameter(self, region: str, name: str) -> bool:
        self._call("DeleteParameter")
        return self.parameters.pop((region, name), None) is not None

    def create_bucket(self, region: str, bucket: str) -> bool:
        self._call("CreateBucket")
        if bucket in self.buckets:
            return False
        self.buckets[bucket] = region
        return True

    def _bucket(self, region: str, bucket: str, key: str, operation: str) -> None:
        if bucket not in self.buckets:
            raise MissingResource(
                f"{operation} in {region} for s3://{bucket}/{key} failed: NoSuchBucket: The specified bucket does not"
                " exist"
            )

    def put_object(self, region: str, bucket: str, key: str, body: bytes, *, content_type: str) -> str:
        self._call("PutObject")
        self._bucket(region, bucket, key, "PutObject")
        self.objects[(bucket, key)] = (bytes(body), content_type)
        return hashlib.sha256(body).hexdigest()

    def head_object(self, region: str, bucket: str, key: str) -> StoredObject | None:
        self._call("HeadObject")
        found = self.objects.get((bucket, key))
        if found is None:
            return None
        return StoredObject(bucket, key, len(found[0]), hashlib.sha256(found[0]).hexdigest())

    def get_object(self, region: str, bucket: str, key: str) -> bytes:
        self._call("GetObject")
        self._bucket(region, bucket, key, "GetObject")
        found = self.objects.get((bucket, key))
        if found is None:
            raise MissingResource(f"GetObject in {region} for s3://{bucket}/{key} failed: NoSuchKey")
        return found[0]

    def add_topic(self, region: str, name: str) -> str:
        """Test set-up, not counted: an SNS topic; returns its ARN."""
        arn = f"arn:aws:sns:{region}:{self.account}:{name}"
        self.topics.setdefault(arn, [])
        return arn

    def publish_message(self, region: str, topic_arn: str, message: str, *, attributes: Mapping[str, str]) -> str:
        self._call("Publish")
        if topic_arn not in self.topics or topic_arn.split(":")[3] != region:
            raise MissingResource(f"Publish in {region} for SNS topic {topic_arn} failed: NotFound")
        self.topics[topic_arn].append((message, dict(attributes)))
        return self._id("message")

    def put_event(self, region: str, bus: str, *, source: str, detail_type: str, detail: str) -> str:
        self._call("PutEvents")
        name = bus.rsplit("event-bus/", 1)[-1]
        if name != "default" and (region, name) not in self.buses:
            raise MissingResource(f"PutEvents in {region} for event bus {bus} failed: ResourceNotFoundException")
        try:
            is_object = isinstance(json.loads(detail), dict)
        except ValueError:
            is_object = False
        if not is_object:
            # EventBridge answers 200 and counts the entry as failed: Detail must be a JSON object.
            raise CloudError(f"PutEvents in {region} for event bus {bus}: the event was refused: MalformedDetail")
        self.buses.setdefault((region, name), []).append((source, detail_type, detail))
        return self._id("event")

    def put_text_parameter(self, region: str, name: str, value: str) -> None:
        self._call("PutParameter")
        existing = self.parameters.get((region, name))
        self.parameters[(region, name)] = Parameter(name, value, existing.version + 1 if existing else 1)


@dataclass
class FakeLifecycle:
    deprecation_supported: bool = True
    deprecations: dict[tuple[str, str], datetime] = field(default_factory=dict)
    launch_templates: list[ImageUser] = field(default_factory=list)


@dataclass
class FakeEncryption:
    """KMS state for FakeCloud: which key encrypts each snapshot, the keys, and their aliases (`alias/aws/ebs`)."""

    snapshot_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    keys: dict[tuple[str, str], KmsKey] = field(default_factory=dict)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
