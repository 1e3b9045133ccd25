"""The base of AwsCloud's per-service mixins: the typed clients and the error translation they call.

aws.py implements `_client` and `_errors` and sets the attributes declared here; the mixins (aws_images.py,
aws_ssm.py, …) import no boto3, as aws.py is the only module that does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ssm.client import SSMClient

# Filter values per DescribeImages call: EC2 caps the values of one filter at 200.
IMAGE_IDS_PER_CALL = 100


class AwsBase:
    """What the mixins may use of AwsCloud: its endpoint, its sleep and clock, its clients and `_errors`."""

    endpoint_url: str | None
    _sleep: Callable[[float], None]
    _clock: Callable[[], float]

    def _client(self, service: str, region: str) -> Any:
        """The client of `service` in `region`, made on first use and then shared (AwsCloud)."""
        raise NotImplementedError

    def _errors(self, operation: str, region: str, resource: str) -> AbstractContextManager[None]:
        """Turns botocore's exceptions into a CloudError naming the operation, region and resource (AwsCloud)."""
        raise NotImplementedError

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
