"""Who stamp's requests to the local cloud are signed as (its own keys, or the environment's), whether a cloud
started now checks them against IAM, and the environment boto3 and Packer reach it with."""

from __future__ import annotations

import os
from collections.abc import Mapping

from stamp.errors import UsageError
from stamp.local.state_file import LocalCloud

# The local cloud's own throwaway keys: what every command signs with, unless CREDENTIALS_ENV says otherwise.
BUILTIN_KEYS = ("testing", "testing")
# `env`: sign with the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead (an IAM user of the local
# cloud, to run as a role); unset or `builtin`: BUILTIN_KEYS. docs/local-cloud.md, IAM enforcement.
CREDENTIALS_ENV = "STAMP_LOCAL_CREDENTIALS"
# `enforce`: a local cloud started now checks requests against IAM (motoserver.enforce_iam); `off` or unset: it
# does not. Set, it must match a running cloud's; unset, any running cloud is reused.
IAM_ENV = "STAMP_LOCAL_IAM"


def credentials(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The access key and secret stamp signs the local cloud's requests with (CREDENTIALS_ENV)."""
    env = os.environ if environ is None else environ
    mode = env.get(CREDENTIALS_ENV, "")
    if mode in ("", "builtin"):
        return BUILTIN_KEYS
    if mode != "env":
        raise UsageError(f"{CREDENTIALS_ENV}={mode}: expected env or builtin")
    key, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if not key or not secret:
        raise UsageError(
            f"{CREDENTIALS_ENV}=env needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            hint="set them to an access key of a user in the local cloud's IAM, or unset " + CREDENTIALS_ENV,
        )
    return key, secret


def wants_iam(environ: Mapping[str, str] | None = None) -> bool | None:
    """Whether the local cloud should enforce IAM (IAM_ENV): True, False, or None when the variable is unset."""
    mode = (os.environ if environ is None else environ).get(IAM_ENV, "")
    if mode not in ("", "off", "enforce"):
        raise UsageError(f"{IAM_ENV}={mode}: expected enforce or off")
    return None if not mode else mode == "enforce"


def aws_env(cloud: LocalCloud) -> dict[str, str]:
    """Environment for boto3 and Packer to talk to the local cloud, signing with `credentials()`.

    No AWS_MAX_ATTEMPTS: Packer reads it as its waiter attempt count, not as API retries.
    """
    key, secret = credentials()
    return {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": cloud.endpoint_url,
        # Static keys are given; this stops SDKs probing an instance metadata service that is not there.
        "AWS_EC2_METADATA_DISABLED": "true",
        "STAMP_CLOUD": "local",
    }
