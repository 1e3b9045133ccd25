"""The Cloud protocol over boto3, for AWS and the local moto endpoint alike: the only module that imports it.

AwsCloud is made here: its session and clients, the call and retry counters, botocore's backoff routed through
its sleep, botocore's errors turned into stamp's, and the calls that need botocore itself (assuming a role,
deprecating an image). Its other calls come from one mixin per service or job, in the aws_*.py modules.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3
import botocore.client
import botocore.exceptions
import botocore.loaders
import botocore.parsers
import botocore.retries.standard
import botocore.session
from botocore.config import Config

from stamp.cloud.aws_image_users import AwsImageUsers
from stamp.cloud.aws_images import AwsImages
from stamp.cloud.aws_instances import AwsInstances
from stamp.cloud.aws_janitor import AwsJanitor
from stamp.cloud.aws_notifications import AwsNotifications
from stamp.cloud.aws_s3 import AwsObjects
from stamp.cloud.aws_ssm import AwsParameters
from stamp.errors import CloudError, MissingResource

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


class _SearchPaths(list[str]):
    """The shared loader's search paths: boto3 adds its own data folder to the loader of every session it makes."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


# One botocore data loader (the endpoint rules and each service's model, parsed from JSON once and cached) for every
# session of the process. Each session used to load its own: a command, or a test, that makes an AwsCloud per cloud
# or per account parsed several MB of JSON each time, which was about a third of the test suite's CPU.
_LOADER = botocore.loaders.Loader(extra_search_paths=_SearchPaths())

# botocore makes every client's class anew: a method and a docstring object for each operation of the service
# (EC2 has ~700), ~18 ms of CPU, most of what a new EC2 client costs. A publish to twenty regions built twenty
# identical classes, and a command that reaches several accounts built them again for each. The sessions made here
# share one loader and register the same handlers, so they share one class per service and API version: botocore's
# own, built on first use and kept for the process. A session made elsewhere (AwsCloud's `session`) is left alone.
_SHARED_EMITTERS: weakref.WeakSet[Any] = weakref.WeakSet()
_CLIENT_CLASSES: dict[tuple[str, str], type] = {}
_CLIENT_CLASSES_LOCK = threading.Lock()
_build_client_class: Callable[[Any, str, Any], type] = botocore.client.ClientCreator._create_client_class  # type: ignore[attr-defined]


def _shared_client_class(creator: Any, service_name: str, service_model: Any) -> type:
    if creator._event_emitter not in _SHARED_EMITTERS:
        return _build_client_class(creator, service_name, service_model)
    key = (service_name, service_model.api_version)
    with _CLIENT_CLASSES_LOCK:
        if key not in _CLIENT_CLASSES:
            _CLIENT_CLASSES[key] = _build_client_class(creator, service_name, service_model)
        return _CLIENT_CLASSES[key]


botocore.client.ClientCreator._create_client_class = _shared_client_class  # type: ignore[attr-defined]


def _new_session(credentials: tuple[str, str] | None) -> boto3.session.Session:
    core = botocore.session.Session()
    if not os.environ.get("AWS_DATA_PATH"):  # models of one's own: botocore's loader for them, as before
        core.register_component("data_loader", _LOADER)
        _SHARED_EMITTERS.add(core.get_component("event_emitter"))
    if credentials is None:
        return boto3.session.Session(botocore_session=core)
    return boto3.session.Session(
        botocore_session=core, aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1]
    )


class AwsCloud(AwsImages, AwsParameters, AwsInstances, AwsJanitor, AwsImageUsers, AwsObjects, AwsNotifications):
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

    def _base_session(self) -> boto3.session.Session:
        """The session every client is made from (callers hold `_lock`)."""
        if self._session is None:
            self._session = _new_session(self._credentials)
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

    # -- credentials: the account, and another account's role ------------------------------------------

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

    # -- lifecycle: deprecation (here, not in aws_image_users.py: it reads botocore's exceptions) ------

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
