"""The Cloud protocol over boto3: the only module that imports it, for AWS and the local moto endpoint alike."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import boto3
import botocore.exceptions
import botocore.parsers
import botocore.retries.standard
from botocore.config import Config

from stamp.cloud.protocol import (
    ImageDetails,
    ImageSummary,
    ImageUser,
    Instance,
    KeyPair,
    KmsKey,
    Parameter,
    ParameterUpdate,
    ResourceKind,
    ShareDiff,
    ShareSet,
    SnapshotDetails,
    StoredObject,
    TaggedResource,
)
from stamp.errors import CloudError, MissingResource
from stamp.tags import BUILD_ID_TAG

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_ec2.type_defs import (
        FilterTypeDef,
        ImageTypeDef,
        InstanceTypeDef,
        LaunchPermissionModificationsTypeDef,
        LaunchPermissionTypeDef,
        TagSpecificationTypeDef,
        TagTypeDef,
    )
    from mypy_boto3_ssm.client import SSMClient

# Filter values per DescribeImages call: EC2 caps the values of one filter at 200.
_IMAGE_IDS_PER_CALL = 100
# DescribeLaunchConfigurations takes at most 50 names.
_LAUNCH_CONFIGURATIONS_PER_CALL = 50
# GetParameters accepts at most 10 names.
_PARAMETERS_PER_CALL = 10
_WAITABLE_STATES = frozenset({"pending"})
_NOT_FOUND = frozenset(
    {
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Unavailable",
        "InvalidSnapshot.NotFound",
        "InvalidInstanceID.NotFound",
        "InvalidKeyPair.NotFound",
        "InvalidGroup.NotFound",
        "ParameterNotFound",
    }
)
_DENIED = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
    }
)
_THROTTLED = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException"})
_SSM_OPERATIONS = frozenset({"GetParameter", "GetParameters", "PutParameter"})
_S3_OPERATIONS = frozenset({"CreateBucket", "PutObject", "HeadObject", "GetObject"})
# The service of each call outside EC2, SSM and S3, for the permission a refusal names.
_SERVICES = {
    "Publish": "sns",
    "PutEvents": "events",
    "AssumeRole": "sts",
    "DescribeAutoScalingGroups": "autoscaling",
    "DescribeLaunchConfigurations": "autoscaling",
}
# S3's answers for a missing bucket or key; HeadObject has no body, so only its HTTP status comes back.
_S3_NOT_FOUND = frozenset({"NoSuchBucket", "NoSuchKey", "404", "NotFound"})
# And its refusal, for the same reason: the bare status.
_S3_DENIED = frozenset({"403", "Forbidden"})
# Calls whose permission has another name: HeadObject is allowed by s3:GetObject.
_PERMISSIONS = {"HeadObject": "GetObject"}


class AwsCloud:
    """Cloud over boto3; `endpoint_url` None means AWS itself, a URL means the local cloud (moto) or a proxy.

    Clients are made on first use, one per (service, region), and shared by threads (boto3 clients are
    thread-safe, sessions are not: https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html).
    """

    def __init__(
        self,
        endpoint_url: str | None,
        *,
        max_attempts: int = 10,
        retry_mode: Literal["standard", "adaptive"] = "adaptive",
        session: boto3.session.Session | None = None,
        credentials: tuple[str, str] | None = None,
        client_keys: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        # Adaptive mode also rate-limits on the client side, which keeps a many-region publish under EC2's
        # request-rate limits instead of retrying into them (botocore's default gives up after ~1.5 s).
        # total_max_attempts counts the first try too; botocore's `max_attempts` key counts retries only:
        # https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html
        self._retry_mode = retry_mode
        self._config = Config(
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        self._session = session
        # Static keys for the local cloud, so its throwaway keys never have to sit in the environment.
        self._credentials = credentials
        # An assumed role's temporary keys, given to each client of the shared session (assume_role).
        self._client_keys = dict(client_keys or {})
        self._sleep = sleep
        self._clock = clock
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._retries: Counter[str] = Counter()

    # -- clients and the call counter ------------------------------------------------------------------

    def ec2(self, region: str) -> EC2Client:
        client: EC2Client = self._client("ec2", region)
        return client

    def ssm(self, region: str) -> SSMClient:
        client: SSMClient = self._client("ssm", region)
        return client

    def kms(self, region: str) -> Any:
        # Typed loosely: the project installs boto3 stubs for EC2 and SSM only.
        return self._client("kms", region)

    def s3(self, region: str) -> Any:
        # Typed loosely, as kms. A bucket in another region answers with a redirect that botocore follows.
        return self._client("s3", region)

    def sns(self, region: str) -> Any:
        # Typed loosely, as kms.
        return self._client("sns", region)

    def events(self, region: str) -> Any:
        # EventBridge's client; typed loosely, as kms.
        return self._client("events", region)

    def _base_session(self) -> boto3.session.Session:
        """The session every client is made from (callers hold `_lock`)."""
        if self._session is None:
            keys = self._credentials
            self._session = (
                boto3.session.Session(aws_access_key_id=keys[0], aws_secret_access_key=keys[1])
                if keys
                else boto3.session.Session()
            )
        return self._session

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._base_session().client(
                    service,  # type: ignore[call-overload]
                    region_name=region,
                    endpoint_url=self.endpoint_url,
                    config=self._config,
                    **self._client_keys,
                )
                # after-call fires once per API call, after botocore's retries, so retries are not counted.
                client.meta.events.register("after-call", self._count)
                self._route_retry_sleeps(client)
                self._clients[key] = client
        return client

    def _count(self, model: Any, **_: Any) -> None:
        with self._calls_lock:
            self._calls[model.name] += 1

    def call_counts(self) -> dict[str, int]:
        """API calls made so far, per operation name (DescribeImages, ModifyImageAttribute, PutParameter…)."""
        with self._calls_lock:
            return dict(self._calls)

    def reset_call_counts(self) -> None:
        with self._calls_lock:
            self._calls.clear()
            self._retries.clear()

    def retry_counts(self) -> dict[str, int]:
        """Retries botocore made so far (throttles and transient errors), per operation name."""
        with self._calls_lock:
            return dict(self._retries)

    def _route_retry_sleeps(self, client: Any) -> None:
        """Makes botocore's backoff between attempts sleep through `self._sleep`, and counts each retry.

        botocore computes the delay in its `needs-retry` handler and then sleeps with `time.sleep` itself. Its
        handler is swapped for one that returns the same decision but sleeps here and lets botocore sleep 0 s,
        so tests run the backoff on a fake clock. The backoff stays botocore's: capped exponential with jitter,
        at most `max_attempts` tries, and a retry quota per client that stops retrying when most calls fail:
        https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
        (The adaptive mode's client-side rate limiter still waits in real time; it only starts after a throttle.)
        """
        service = client.meta.service_model.service_id.hyphenize()
        event, unique_id = f"needs-retry.{service}", f"retry-config-{service}"
        client.meta.events.unregister(event, unique_id=unique_id)
        handler = botocore.retries.standard.register_retry_handler(client, max_attempts=self.max_attempts)
        client.meta.events.unregister(event, unique_id=unique_id)

        def needs_retry(**kwargs: Any) -> float | None:
            delay: float | None = handler.needs_retry(**kwargs)
            if delay is None:
                return None
            with self._calls_lock:
                self._retries[kwargs["operation"].name] += 1
            self._sleep(delay)
            return 0.0

        client.meta.events.register(event, needs_retry, unique_id=unique_id)

    @contextmanager
    def _errors(self, operation: str, region: str, resource: str) -> Iterator[None]:
        """Turns botocore's exceptions into a CloudError naming the operation, region and resource."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            raise self._client_error(exc, operation, region, resource) from None
        except botocore.exceptions.NoCredentialsError:
            raise CloudError(
                f"{operation} in {region} for {resource}: no AWS credentials found",
                hint="configure the standard credential chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO or an "
                "instance role), or use --cloud local",
            ) from None
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError) as exc:
            where = self.endpoint_url or "the AWS endpoint"
            raise CloudError(
                f"{operation} in {region} for {resource}: cannot reach {where}: {exc}",
                hint="start the local cloud with `stamp local up`"
                if self.endpoint_url
                else "check the network connection and the region name",
            ) from None
        except (botocore.exceptions.BotoCoreError, botocore.parsers.ResponseParserError) as exc:
            # A non-XML answer (moto's HTTP 500 page for a call it does not implement) is a parser error.
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise CloudError(
                f"{operation} in {region} for {resource} failed: {first_line}",
                hint="run the command again; if it keeps failing, check the AWS configuration",
            ) from None

    def _client_error(
        self, exc: botocore.exceptions.ClientError, operation: str, region: str, resource: str
    ) -> CloudError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        text = str(error.get("Message", "")).strip()
        message = f"{operation} in {region} for {resource} failed: {code}" + (f": {text}" if text else "")
        service = _SERVICES.get(operation) or (
            "ssm" if operation in _SSM_OPERATIONS else "s3" if operation in _S3_OPERATIONS else "ec2"
        )
        if operation in _S3_OPERATIONS and code in _S3_NOT_FOUND:
            return MissingResource(
                message,
                hint=f"check that the bucket of {resource} exists and that these credentials may use it: stamp "
                "creates no bucket on AWS (defaults.artifacts names one the account already has)",
            )
        if code in _NOT_FOUND:
            return MissingResource(
                message,
                hint=f"check that {resource} exists in {region}: it may have been deregistered or deleted, "
                "or built in another region",
            )
        if code in _DENIED or (operation in _S3_OPERATIONS and code in _S3_DENIED):
            permission = _PERMISSIONS.get(operation, operation)
            hint = f"check the credentials, and that they allow {service}:{permission} in {region}"
        elif code in _THROTTLED:
            hint = f"still throttled after {self.max_attempts} attempts: run again later, or raise the retry attempts"
        elif code in ("InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable") or code.startswith("5"):
            hint = (
                "the endpoint failed: run again; the local cloud (moto) does not implement every EC2 call"
                if self.endpoint_url
                else "AWS had an internal error: run again"
            )
        else:
            hint = f"the request was refused: check the values stamp sent for {resource} (see the AWS API reference)"
        return CloudError(message, hint=hint)

    # -- images ----------------------------------------------------------------------------------------

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
        for start in range(0, len(wanted), _IMAGE_IDS_PER_CALL):
            chunk = wanted[start : start + _IMAGE_IDS_PER_CALL]
            with self._errors("DescribeImages", region, _names(chunk)):
                answer = self.ec2(region).describe_images(Filters=[{"Name": "image-id", "Values": chunk}])
            for image in answer.get("Images", []):
                details = _image_details(image)
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
        return _share_set(answer.get("LaunchPermissions", []))

    def modify_launch_permissions(self, region: str, ami_id: str, diff: ShareDiff) -> None:
        if diff.empty:
            return
        # One call carries additions and removals, so a reconcile costs at most one modify per AMI and region.
        change: LaunchPermissionModificationsTypeDef = {}
        if diff.add:
            change["Add"] = _launch_permissions(diff.add)
        if diff.remove:
            change["Remove"] = _launch_permissions(diff.remove)
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
        for start in range(0, len(wanted), _IMAGE_IDS_PER_CALL):
            chunk = wanted[start : start + _IMAGE_IDS_PER_CALL]
            with self._errors("DescribeSnapshots", region, _names(chunk)):
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
        with self._errors("CreateTags", region, _names(resource_ids)):
            self.ec2(region).create_tags(Resources=list(resource_ids), Tags=_tags(tags))

    def delete_tags(self, region: str, resource_ids: Sequence[str], keys: Sequence[str]) -> None:
        if not resource_ids or not keys:
            return
        with self._errors("DeleteTags", region, _names(resource_ids)):
            self.ec2(region).delete_tags(Resources=list(resource_ids), Tags=[{"Key": key} for key in keys])

    # -- SSM parameters --------------------------------------------------------------------------------

    def get_parameters(self, region: str, names: Collection[str]) -> dict[str, Parameter]:
        wanted = sorted(set(names))
        found: dict[str, Parameter] = {}
        for start in range(0, len(wanted), _PARAMETERS_PER_CALL):
            chunk = wanted[start : start + _PARAMETERS_PER_CALL]
            with self._errors("GetParameters", region, _names(chunk)):
                answer = self.ssm(region).get_parameters(Names=chunk)
            for item in answer.get("Parameters", []):
                found[item["Name"]] = Parameter(name=item["Name"], value=item["Value"], version=item["Version"])
        return found

    def put_image_parameter(self, region: str, name: str, ami_id: str) -> ParameterUpdate:
        # PutParameter with an unchanged value still bumps the version (docs/facts.md, moto gaps), and consumers
        # watch the version, so read and compare first.
        existing = self.get_parameters(region, [name]).get(name)
        if existing is not None and existing.value == ami_id:
            return ParameterUpdate(name=name, previous=existing.value, value=ami_id, version=existing.version)
        version = self.write_image_parameter(region, name, ami_id, overwrite=existing is not None)
        return ParameterUpdate(name=name, previous=existing.value if existing else None, value=ami_id, version=version)

    def write_image_parameter(self, region: str, name: str, ami_id: str, *, overwrite: bool) -> int:
        # Tags together with Overwrite is a ValidationException, so the parameter carries no tags:
        # https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html
        with self._errors("PutParameter", region, name):
            answer = self.ssm(region).put_parameter(
                Name=name,
                Value=ami_id,
                Type="String",
                DataType="aws:ec2:image",
                Description="Current AMI of this stamp image; written by stamp publish",
                Overwrite=overwrite,
            )
        return answer["Version"]

    # -- instances and key pairs -----------------------------------------------------------------------

    def import_key_pair(
        self, region: str, name: str, public_key: str, *, tags: Mapping[str, str] | None = None
    ) -> KeyPair:
        specs: list[TagSpecificationTypeDef] = [{"ResourceType": "key-pair", "Tags": _tags(tags)}] if tags else []
        with self._errors("ImportKeyPair", region, f"key pair '{name}'"):
            answer = self.ec2(region).import_key_pair(
                KeyName=name, PublicKeyMaterial=public_key.encode("utf-8"), TagSpecifications=specs
            )
        return KeyPair(key_pair_id=answer.get("KeyPairId", ""), name=answer.get("KeyName", name))

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
        if count < 1:
            raise ValueError("count must be at least 1")
        params: dict[str, Any] = {}
        if key_name:
            params["KeyName"] = key_name
        if security_group_ids:
            params["SecurityGroupIds"] = list(security_group_ids)
        if user_data is not None:
            params["UserData"] = user_data  # boto3 base64-encodes it
        if tags:
            specs: list[TagSpecificationTypeDef] = [
                {"ResourceType": "instance", "Tags": _tags(tags)},
                {"ResourceType": "volume", "Tags": _tags(tags)},
            ]
            params["TagSpecifications"] = specs
        itype: InstanceTypeType = instance_type  # type: ignore[assignment]
        with self._errors("RunInstances", region, f"{count} instance(s) of {ami_id}"):
            answer = self.ec2(region).run_instances(
                ImageId=ami_id, InstanceType=itype, MinCount=count, MaxCount=count, **params
            )
        return [_instance(i) for i in answer.get("Instances", [])]

    def describe_instances(self, region: str, instance_ids: Sequence[str]) -> list[Instance]:
        if not instance_ids:
            return []
        found: list[Instance] = []
        with self._errors("DescribeInstances", region, _names(instance_ids)):
            for page in self.ec2(region).get_paginator("describe_instances").paginate(InstanceIds=list(instance_ids)):
                found.extend(_instance(i) for r in page.get("Reservations", []) for i in r.get("Instances", []))
        return found

    def terminate_instances(self, region: str, instance_ids: Sequence[str]) -> None:
        if not instance_ids:
            return
        with self._errors("TerminateInstances", region, _names(instance_ids)):
            self.ec2(region).terminate_instances(InstanceIds=list(instance_ids))

    # -- the janitor -----------------------------------------------------------------------------------

    def own_images_tagged(self, region: str, key: str) -> dict[str, ImageDetails]:
        found: dict[str, ImageDetails] = {}
        with self._errors("DescribeImages", region, f"own AMIs tagged {key}"):
            paginator = self.ec2(region).get_paginator("describe_images")
            for page in paginator.paginate(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [key]}]):
                for image in page.get("Images", []):
                    details = _image_details(image)
                    found[details.ami_id] = details
        return found

    def account_id(self) -> str:
        # STS is global; any region's endpoint answers for the same account.
        with self._errors("GetCallerIdentity", "us-east-1", "the credentials' account"):
            answer = self._client("sts", "us-east-1").get_caller_identity()
        return str(answer["Account"])

    def assume_role(self, role_arn: str, *, session_name: str) -> AwsCloud:
        with self._errors("AssumeRole", "us-east-1", role_arn):
            answer = self._client("sts", "us-east-1").assume_role(RoleArn=role_arn, RoleSessionName=session_name)
        keys = answer["Credentials"]
        with self._lock:
            session = self._base_session()
        # The same session with the role's keys on each client: a session loads the service models once (EC2's
        # takes ~50 ms of CPU per load), so ten accounts in twenty regions do not load them 200 times.
        other = AwsCloud(
            self.endpoint_url,
            max_attempts=self.max_attempts,
            retry_mode=self._retry_mode,
            session=session,
            client_keys={
                "aws_access_key_id": keys["AccessKeyId"],
                "aws_secret_access_key": keys["SecretAccessKey"],
                "aws_session_token": keys["SessionToken"],
            },
            sleep=self._sleep,
            clock=self._clock,
        )
        # One session makes the clients of both, under one lock (sessions are not thread-safe); one count for every
        # account a command reaches, which the benchmarks compare with the minimum.
        other._lock = self._lock
        other._calls, other._calls_lock = self._calls, self._calls_lock
        return other

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
                    tags=_tag_map(tags),
                    created_at=_as_datetime(created),
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

    def delete_key_pair(self, region: str, key_name: str) -> None:
        with self._errors("DeleteKeyPair", region, f"key pair '{key_name}'"):
            self.ec2(region).delete_key_pair(KeyName=key_name)

    def create_security_group(
        self, region: str, name: str, *, description: str, ssh_cidrs: Sequence[str], tags: Mapping[str, str]
    ) -> str:
        ec2 = self.ec2(region)
        specs: list[TagSpecificationTypeDef] = [{"ResourceType": "security-group", "Tags": _tags(tags)}]
        with self._errors("CreateSecurityGroup", region, f"security group '{name}'"):
            group_id = ec2.create_security_group(GroupName=name, Description=description, TagSpecifications=specs)[
                "GroupId"
            ]
        with self._errors("AuthorizeSecurityGroupIngress", region, group_id):
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": c} for c in ssh_cidrs]}
                ],
            )
        return group_id

    def delete_security_group(self, region: str, group_id: str) -> None:
        with self._errors("DeleteSecurityGroup", region, group_id):
            self.ec2(region).delete_security_group(GroupId=group_id)

    # -- lifecycle: deprecation, what uses an image, parameters ----------------------------------------

    def enable_image_deprecation(self, region: str, ami_id: str, at: datetime) -> bool:
        # EC2 rounds DeprecateAt to the minute and refuses a time in the past, so stamp asks for the next whole
        # minute: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_EnableImageDeprecation.html
        moment = at.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        # Only a non-AWS endpoint may lack the call: moto answers an HTML page with HTTP 500
        # (docs/facts.md, moto gaps), which botocore cannot parse. On AWS itself every failure is an error.
        not_implemented = frozenset({"NotImplemented", "NotImplementedError", "InvalidAction", "UnsupportedOperation"})
        with self._errors("EnableImageDeprecation", region, ami_id):
            try:
                self.ec2(region).enable_image_deprecation(ImageId=ami_id, DeprecateAt=moment)
            except botocore.parsers.ResponseParserError:
                if self.endpoint_url is None:
                    raise
                return False
            except botocore.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if self.endpoint_url is None or code not in not_implemented:
                    raise
                return False
        return True

    def image_users(self, region: str, ami_ids: Collection[str]) -> list[ImageUser]:
        wanted = sorted(set(ami_ids))
        if not wanted:
            return []
        ec2 = self.ec2(region)
        users: dict[tuple[str, str], ImageUser] = {}
        # Template ID -> version ("$Latest", "$Default" or its number) -> its AMI, for the Auto Scaling groups too.
        templates: dict[str, dict[str, str]] = {}
        # Without a template ID, the versions $Latest and $Default describe every launch template in the region:
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLaunchTemplateVersions.html
        with self._errors("DescribeLaunchTemplateVersions", region, "every launch template"):
            pages = ec2.get_paginator("describe_launch_template_versions")
            for page in pages.paginate(Versions=["$Latest", "$Default"]):
                for version in page.get("LaunchTemplateVersions", []):
                    ami_id = version.get("LaunchTemplateData", {}).get("ImageId", "")
                    template_id = version.get("LaunchTemplateId", "")
                    number = version.get("VersionNumber", 0)
                    which = "$Default" if version.get("DefaultVersion") else "$Latest"
                    known = templates.setdefault(template_id, {})
                    known[str(number)] = known[which] = ami_id
                    if ami_id not in wanted:
                        continue
                    detail = f"{version.get('LaunchTemplateName', '')} version {number}, {which}"
                    # A template whose $Latest is its $Default comes back twice.
                    key = (template_id, str(number))
                    users[key] = ImageUser(region, "launch-template", template_id, ami_id, detail)
        # Stopped instances count too: whoever stopped one may replace it from the same image when they come back.
        live = ["pending", "running", "stopping", "stopped"]
        for start in range(0, len(wanted), _IMAGE_IDS_PER_CALL):
            chunk = wanted[start : start + _IMAGE_IDS_PER_CALL]
            filters: list[FilterTypeDef] = [
                {"Name": "image-id", "Values": chunk},
                {"Name": "instance-state-name", "Values": live},
            ]
            with self._errors("DescribeInstances", region, f"instances of {_names(chunk)}"):
                for answer in ec2.get_paginator("describe_instances").paginate(Filters=filters):
                    for reservation in answer.get("Reservations", []):
                        for item in reservation.get("Instances", []):
                            instance = _instance(item)
                            users[("instance", instance.instance_id)] = ImageUser(
                                region, "instance", instance.instance_id, instance.ami_id, instance.state
                            )
        for group in self._auto_scaling_groups(region, templates):
            if group.ami_id in wanted:
                users[("auto-scaling-group", group.resource_id)] = group
        return sorted(users.values(), key=lambda u: (u.ami_id, u.kind, u.resource_id))

    def _auto_scaling_groups(self, region: str, templates: dict[str, dict[str, str]]) -> list[ImageUser]:
        """Every Auto Scaling group with the AMI it launches: from its launch template's version (the versions
        already read, else one DescribeLaunchTemplateVersions per template) or its launch configuration."""
        autoscaling = self._client("autoscaling", region)
        with self._errors("DescribeAutoScalingGroups", region, "every Auto Scaling group"):
            pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate()
            groups = [group for page in pages for group in page.get("AutoScalingGroups", [])]
        by_config = sorted({g["LaunchConfigurationName"] for g in groups if g.get("LaunchConfigurationName")})
        configs: dict[str, str] = {}
        for start in range(0, len(by_config), _LAUNCH_CONFIGURATIONS_PER_CALL):
            names = by_config[start : start + _LAUNCH_CONFIGURATIONS_PER_CALL]
            with self._errors("DescribeLaunchConfigurations", region, f"launch configurations {_names(names)}"):
                for page in autoscaling.get_paginator("describe_launch_configurations").paginate(
                    LaunchConfigurationNames=names
                ):
                    for config in page.get("LaunchConfigurations", []):
                        configs[config["LaunchConfigurationName"]] = config.get("ImageId", "")
        found = []
        for group in groups:
            name = group["AutoScalingGroupName"]
            spec = group.get("LaunchTemplate") or group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get(
                "LaunchTemplateSpecification"
            )
            if spec:
                template_id, version = self._template_id(region, spec), str(spec.get("Version") or "$Default")
                ami_id = templates.get(template_id, {}).get(version) or self._template_version_ami(
                    region, template_id, version, templates
                )
                found.append(
                    ImageUser(region, "auto-scaling-group", name, ami_id, f"launch template version {version}")
                )
            elif group.get("LaunchConfigurationName"):
                config = group["LaunchConfigurationName"]
                found.append(
                    ImageUser(
                        region, "auto-scaling-group", name, configs.get(config, ""), f"launch configuration {config}"
                    )
                )
        return found

    def _template_id(self, region: str, spec: Mapping[str, Any]) -> str:
        if spec.get("LaunchTemplateId"):
            return str(spec["LaunchTemplateId"])
        with self._errors("DescribeLaunchTemplates", region, f"launch template {spec.get('LaunchTemplateName')}"):
            answer = self.ec2(region).describe_launch_templates(LaunchTemplateNames=[spec["LaunchTemplateName"]])
        return str(answer["LaunchTemplates"][0]["LaunchTemplateId"])

    def _template_version_ami(
        self, region: str, template_id: str, version: str, templates: dict[str, dict[str, str]]
    ) -> str:
        with self._errors("DescribeLaunchTemplateVersions", region, f"launch template {template_id} version {version}"):
            answer = self.ec2(region).describe_launch_template_versions(
                LaunchTemplateId=template_id, Versions=[version]
            )
        versions = answer.get("LaunchTemplateVersions", [])
        ami_id = versions[0].get("LaunchTemplateData", {}).get("ImageId", "") if versions else ""
        templates.setdefault(template_id, {})[version] = ami_id
        return ami_id

    def delete_parameter(self, region: str, name: str) -> bool:
        try:
            with self._errors("DeleteParameter", region, name):
                self.ssm(region).delete_parameter(Name=name)
        except MissingResource:
            return False
        except CloudError as exc:
            # The shared error mapper names EC2 for every call it does not list as SSM.
            exc.hint = exc.hint.replace("ec2:DeleteParameter", "ssm:DeleteParameter")
            raise
        return True

    # -- S3: artifacts stored beside the catalog ---------------------------------------------------------

    def create_bucket(self, region: str, bucket: str) -> bool:
        # us-east-1 is S3's default location and refuses to be named as a LocationConstraint.
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            with self._errors("CreateBucket", region, f"s3://{bucket}"):
                self.s3(region).create_bucket(Bucket=bucket, **where)
        except CloudError as exc:
            if ": BucketAlreadyOwnedByYou" in exc.message:
                return False
            raise
        return True

    def put_object(self, region: str, bucket: str, key: str, body: bytes, *, content_type: str) -> str:
        digest = hashlib.sha256(body).digest()
        with self._errors("PutObject", region, f"s3://{bucket}/{key}"):
            self.s3(region).put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
            )
        return digest.hex()

    def head_object(self, region: str, bucket: str, key: str) -> StoredObject | None:
        try:
            with self._errors("HeadObject", region, f"s3://{bucket}/{key}"):
                answer = self.s3(region).head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except MissingResource:
            return None
        return StoredObject(bucket, key, int(answer.get("ContentLength", 0)), _hex(answer.get("ChecksumSHA256")))

    def get_object(self, region: str, bucket: str, key: str) -> bytes:
        with self._errors("GetObject", region, f"s3://{bucket}/{key}"):
            answer = self.s3(region).get_object(Bucket=bucket, Key=key)
            body: bytes = answer["Body"].read()
        return body

    # -- notifications (docs/events.md) ----------------------------------------------------------------------

    def publish_message(self, region: str, topic_arn: str, message: str, *, attributes: Mapping[str, str]) -> str:
        fields = {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()}
        try:
            with self._errors("Publish", region, f"SNS topic {topic_arn}"):
                answer = self.sns(region).publish(TopicArn=topic_arn, Message=message, MessageAttributes=fields)
        except CloudError as exc:
            # SNS says NotFound for a missing topic, which the shared mapper does not know.
            if ": NotFound" in exc.message:
                raise MissingResource(exc.message, hint="create the topic, or correct defaults.notify.sns") from None
            raise
        return str(answer.get("MessageId", ""))

    def put_event(self, region: str, bus: str, *, source: str, detail_type: str, detail: str) -> str:
        entry = {"Source": source, "DetailType": detail_type, "Detail": detail, "EventBusName": bus}
        try:
            with self._errors("PutEvents", region, f"event bus {bus}"):
                answer = self.events(region).put_events(Entries=[entry])
        except CloudError as exc:
            if ": ResourceNotFoundException" in exc.message:
                hint = "create the event bus, or correct defaults.notify.eventbridge"
                raise MissingResource(exc.message, hint=hint) from None
            raise
        # PutEvents answers 200 with the refused entries counted: a failure there is not an exception.
        result = (answer.get("Entries") or [{}])[0]
        if answer.get("FailedEntryCount", 0) or not result.get("EventId"):
            why = f"{result.get('ErrorCode', 'no event ID')}: {result.get('ErrorMessage', '')}".rstrip(": ")
            raise CloudError(
                f"PutEvents in {region} for event bus {bus}: the event was refused: {why}",
                hint="check the bus's permissions and quotas; the next `stamp publish` delivers it again",
            )
        return str(result["EventId"])

    def put_text_parameter(self, region: str, name: str, value: str) -> None:
        with self._errors("PutParameter", region, name):
            self.ssm(region).put_parameter(
                Name=name,
                Value=value,
                Type="String",
                Description="Release events stamp could not deliver yet; written by stamp",
                Overwrite=True,
            )


def _hex(checksum: Any) -> str | None:
    """S3's base64 ChecksumSHA256 as hex; None when absent, or when it is a checksum of parts (`…-3`)."""
    if not isinstance(checksum, str) or "-" in checksum:
        return None
    try:
        raw = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _names(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:3])
    return shown + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")


def _tags(tags: Mapping[str, str]) -> list[TagTypeDef]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _tag_map(tags: Any) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags or []}


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _image_details(image: ImageTypeDef) -> ImageDetails:
    reason = image.get("StateReason", {})
    return ImageDetails(
        ami_id=image["ImageId"],
        name=image.get("Name", ""),
        state=image.get("State", ""),
        state_reason=str(reason.get("Message") or reason.get("Code") or ""),
        owner_id=image.get("OwnerId", ""),
        creation_date=image.get("CreationDate", ""),
        public=bool(image.get("Public", False)),
        tags=_tag_map(image.get("Tags")),
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


def _share_set(permissions: Sequence[LaunchPermissionTypeDef]) -> ShareSet:
    return ShareSet(
        accounts=frozenset(p["UserId"] for p in permissions if "UserId" in p),
        organizations=frozenset(p["OrganizationArn"] for p in permissions if "OrganizationArn" in p),
        organizational_units=frozenset(p["OrganizationalUnitArn"] for p in permissions if "OrganizationalUnitArn" in p),
        public=any(p.get("Group") == "all" for p in permissions),
    )


def _launch_permissions(share: ShareSet) -> list[LaunchPermissionTypeDef]:
    out: list[LaunchPermissionTypeDef] = [{"UserId": a} for a in sorted(share.accounts)]
    out += [{"OrganizationArn": a} for a in sorted(share.organizations)]
    out += [{"OrganizationalUnitArn": a} for a in sorted(share.organizational_units)]
    if share.public:
        out.append({"Group": "all"})
    return out


def _instance(item: InstanceTypeDef) -> Instance:
    return Instance(
        instance_id=item["InstanceId"],
        ami_id=item.get("ImageId", ""),
        state=item.get("State", {}).get("Name", ""),
        private_ip=item.get("PrivateIpAddress"),
        public_ip=item.get("PublicIpAddress"),
    )
