"""The Cloud seam: the small EC2/SSM surface every command needs, and the plain values it returns."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from stamp.tags import BUILD_ID_TAG

ResourceKind = Literal["instance", "key-pair", "security-group", "image", "snapshot"]
# Delete order for the janitor: instances hold key pairs and groups; images hold their snapshots.
RESOURCE_KINDS: tuple[ResourceKind, ...] = ("instance", "image", "snapshot", "key-pair", "security-group")


@dataclass(frozen=True)
class ShareSet:
    """Who may launch an AMI (or, with accounts and public only, create volumes from a snapshot)."""

    accounts: frozenset[str] = frozenset()
    organizations: frozenset[str] = frozenset()
    organizational_units: frozenset[str] = frozenset()
    public: bool = False

    def __bool__(self) -> bool:
        return bool(self.accounts or self.organizations or self.organizational_units or self.public)

    def __len__(self) -> int:
        return len(self.accounts) + len(self.organizations) + len(self.organizational_units) + int(self.public)

    def minus(self, other: ShareSet) -> ShareSet:
        return ShareSet(
            accounts=self.accounts - other.accounts,
            organizations=self.organizations - other.organizations,
            organizational_units=self.organizational_units - other.organizational_units,
            public=self.public and not other.public,
        )

    def entries(self) -> Iterator[tuple[str, str]]:
        """(kind, value) pairs in a stable order, for printing: account, org, ou, group."""
        yield from (("account", value) for value in sorted(self.accounts))
        yield from (("org", value) for value in sorted(self.organizations))
        yield from (("ou", value) for value in sorted(self.organizational_units))
        if self.public:
            yield ("group", "all")


@dataclass(frozen=True)
class ShareDiff:
    """What to add and remove to turn one ShareSet into another."""

    add: ShareSet = ShareSet()
    remove: ShareSet = ShareSet()

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove

    def lines(self) -> list[str]:
        """`+ account 444455556666`, `- org arn:…`: removals after additions."""
        return [f"+ {kind} {value}" for kind, value in self.add.entries()] + [
            f"- {kind} {value}" for kind, value in self.remove.entries()
        ]


@dataclass(frozen=True)
class ImageSummary:
    """An image found by name filter: enough to pick the newest."""

    ami_id: str
    name: str
    creation_date: str


@dataclass(frozen=True)
class ImageDetails:
    ami_id: str
    name: str
    state: str
    state_reason: str
    owner_id: str
    creation_date: str
    public: bool
    tags: Mapping[str, str] = field(default_factory=dict)
    snapshot_ids: tuple[str, ...] = ()
    # Snapshot ID -> `Encrypted` as DescribeImages reports it; absent when it does not (moto never does).
    snapshot_encrypted: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotDetails:
    """A snapshot's encryption: whether it can be shared at all depends on its KMS key."""

    snapshot_id: str
    encrypted: bool
    kms_key_id: str | None = None


@dataclass(frozen=True)
class KmsKey:
    """A KMS key as DescribeKey reports it; `key_manager` is AWS for AWS managed keys such as aws/ebs."""

    key_id: str
    arn: str
    key_manager: str


@dataclass(frozen=True)
class Parameter:
    name: str
    value: str
    version: int


@dataclass(frozen=True)
class ParameterUpdate:
    """The outcome of a write-on-change: `previous` is None when the parameter did not exist."""

    name: str
    previous: str | None
    value: str
    version: int

    @property
    def changed(self) -> bool:
        return self.previous != self.value


@dataclass(frozen=True)
class KeyPair:
    key_pair_id: str
    name: str


@dataclass(frozen=True)
class Instance:
    instance_id: str
    ami_id: str
    state: str
    private_ip: str | None = None
    public_ip: str | None = None


@dataclass(frozen=True)
class TaggedResource:
    """A resource found by tag, for the janitor; `resource_id` is what its delete call takes (a key pair's name)."""

    kind: ResourceKind
    resource_id: str
    region: str
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    state: str = ""


@dataclass(frozen=True)
class StoredObject:
    """An S3 object as HeadObject reports it; `sha256` (hex) only when S3 kept the checksum sent with the upload."""

    bucket: str
    key: str
    size: int
    sha256: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Cloud(Protocol):
    """Every call names its region: stamp works in many regions at once and never relies on a default."""

    def find_newest_image(self, region: str, *, name: str, owners: Sequence[str]) -> ImageSummary | None:
        """The newest available image whose name matches the DescribeImages wildcard `name`."""
        ...

    def describe_image(self, region: str, ami_id: str) -> ImageDetails | None:
        """None when the AMI does not exist (or was deregistered)."""
        ...

    def describe_images(self, region: str, ami_ids: Collection[str]) -> dict[str, ImageDetails]:
        """Many AMIs in few calls; IDs that do not exist are absent from the answer."""
        ...

    def own_images_tagged(self, region: str, key: str) -> dict[str, ImageDetails]:
        """The account's own AMIs that carry the tag `key`, whatever its value."""
        ...

    def account_id(self) -> str:
        """The account the credentials act in (STS GetCallerIdentity, which needs no permission)."""
        ...

    def assume_role(self, role_arn: str, *, session_name: str) -> Cloud:
        """The same cloud, acting as the role `role_arn` (another account's, usually): STS AssumeRole.

        CloudError when the role cannot be assumed (it does not exist, or does not trust these credentials).
        """
        ...

    def wait_until_available(
        self, region: str, ami_id: str, *, timeout: float = 900.0, delay: float = 5.0
    ) -> ImageDetails:
        """Waits while the AMI is pending or not yet visible; raises CloudError on `failed` or timeout."""
        ...

    def get_launch_permissions(self, region: str, ami_id: str) -> ShareSet: ...

    def modify_launch_permissions(self, region: str, ami_id: str, diff: ShareDiff) -> None:
        """Applies additions and removals in one call."""
        ...

    def get_snapshot_permissions(self, region: str, snapshot_id: str) -> ShareSet:
        """createVolumePermission: accounts and public only."""
        ...

    def modify_snapshot_permissions(self, region: str, snapshot_id: str, diff: ShareDiff) -> None: ...

    def describe_snapshots(self, region: str, snapshot_ids: Collection[str]) -> dict[str, SnapshotDetails]:
        """Many snapshots in few calls; IDs that do not exist are absent from the answer."""
        ...

    def describe_kms_key(self, region: str, key_id: str) -> KmsKey | None:
        """A key by ID, ARN or alias (`alias/aws/ebs`); None when no such key or alias exists."""
        ...

    def create_tags(self, region: str, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None: ...

    def delete_tags(self, region: str, resource_ids: Sequence[str], keys: Sequence[str]) -> None: ...

    def get_parameters(self, region: str, names: Collection[str]) -> dict[str, Parameter]:
        """SSM parameters by name; names that do not exist are absent."""
        ...

    def put_image_parameter(self, region: str, name: str, ami_id: str) -> ParameterUpdate:
        """Writes an `aws:ec2:image` parameter only when its value differs, so its version means a change."""
        ...

    def write_image_parameter(self, region: str, name: str, ami_id: str, *, overwrite: bool) -> int:
        """PutParameter with no read first, for a caller that has just read it; returns the new version.

        With `overwrite` False it fails if the parameter appeared meanwhile, so a concurrent writer is not lost.
        """
        ...

    def import_key_pair(
        self, region: str, name: str, public_key: str, *, tags: Mapping[str, str] | None = None
    ) -> KeyPair: ...

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
    ) -> list[Instance]: ...

    def describe_instances(self, region: str, instance_ids: Sequence[str]) -> list[Instance]: ...

    def terminate_instances(self, region: str, instance_ids: Sequence[str]) -> None: ...

    def list_tagged(self, region: str, key: str = BUILD_ID_TAG, value: str | None = None) -> list[TaggedResource]:
        """Instances (not terminated), key pairs, security groups, own AMIs and own snapshots carrying the tag."""
        ...

    def deregister_image(self, region: str, ami_id: str) -> None: ...

    def delete_snapshot(self, region: str, snapshot_id: str) -> None: ...

    def delete_key_pair(self, region: str, key_name: str) -> None: ...

    def create_security_group(
        self, region: str, name: str, *, description: str, ssh_cidrs: Sequence[str], tags: Mapping[str, str]
    ) -> str:
        """A security group in the default VPC, tagged as it is created, admitting SSH from `ssh_cidrs`."""
        ...

    def delete_security_group(self, region: str, group_id: str) -> None: ...

    def enable_image_deprecation(self, region: str, ami_id: str, at: datetime) -> bool:
        """Deprecates the AMI at `at` (EnableImageDeprecation); False when the endpoint does not implement it."""
        ...

    def image_users(self, region: str, ami_ids: Collection[str]) -> list[ImageUser]:
        """Launch templates ($Latest and $Default versions) and live instances that use any of the AMIs."""
        ...

    def delete_parameter(self, region: str, name: str) -> bool:
        """Deletes an SSM parameter; False when it did not exist."""
        ...

    # -- S3, for the artifacts stored beside the catalog (docs/inventory.md) --------------------------------------

    def create_bucket(self, region: str, bucket: str) -> bool:
        """Creates the bucket in `region`; False when this account has it already."""
        ...

    def put_object(self, region: str, bucket: str, key: str, body: bytes, *, content_type: str) -> str:
        """Uploads `body` with its SHA-256 checksum (S3 refuses a body that arrived different); returns it, hex.

        MissingResource when the bucket does not exist.
        """
        ...

    def head_object(self, region: str, bucket: str, key: str) -> StoredObject | None:
        """The object's size (and checksum, when kept); None when there is no such object."""
        ...

    def get_object(self, region: str, bucket: str, key: str) -> bytes:
        """The object's bytes; MissingResource when the bucket or the key does not exist."""
        ...

    # -- notifications: SNS, EventBridge, and the parameter that keeps undelivered events (docs/events.md) ----------

    def publish_message(self, region: str, topic_arn: str, message: str, *, attributes: Mapping[str, str]) -> str:
        """SNS Publish of `message` with String message attributes; returns the message ID.

        MissingResource when the topic does not exist.
        """
        ...

    def put_event(self, region: str, bus: str, *, source: str, detail_type: str, detail: str) -> str:
        """EventBridge PutEvents of one entry on `bus` (a name or an ARN); returns the event ID.

        CloudError when the entry was refused (FailedEntryCount), MissingResource when the bus does not exist.
        """
        ...

    def put_text_parameter(self, region: str, name: str, value: str) -> None:
        """Writes a plain String parameter, over the one there may be."""
        ...


@dataclass(frozen=True)
class ImageUser:
    """Something that still launches from an AMI: a launch template version, or an instance that can restart."""

    region: str
    kind: Literal["launch-template", "instance", "auto-scaling-group"]
    resource_id: str
    ami_id: str
    detail: str = ""
    # Set for a user in a consumer account (docs/rollout.md, Consumer accounts); empty in the account asked.
    account: str = ""

    def line(self) -> str:
        where = f" in {self.region}" + (f" of account {self.account}" if self.account else "")
        return f"{self.kind} {self.resource_id}" + (f" ({self.detail})" if self.detail else "") + where
