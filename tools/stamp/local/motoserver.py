"""`python -m stamp.local.motoserver --port N`: moto's server, patched where Packer needs EC2's behaviour."""

from __future__ import annotations

import argparse
import html
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

# Not moto's: stamp's own path on the server, to add vendor images to a running server (moto keeps them
# in memory, so restarting would lose every AMI built so far).
SEED_PATH = "/stamp-local/seed"
# The access key of the local cloud's own credentials (cloud.BUILTIN_KEYS): with IAM enforced, what it signs is
# still allowed everything, as an account's root user is on AWS.
BUILTIN_ACCESS_KEY = "testing"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def patch_root_device_type() -> None:
    """Make images moto creates or copies EBS-backed, as on EC2.

    moto 5.2 gives them `RootDeviceType=standard`, and Packer's amazon-ebs builder then refuses them as a
    source: "The provided source AMI has an invalid root device type. Expected 'ebs', got 'standard'".
    """
    from moto.ec2.models.amis import AmiBackend

    create_image = AmiBackend.create_image
    copy_image = AmiBackend.copy_image

    def create_ebs_image(self: Any, *args: Any, **kwargs: Any) -> Any:
        ami = create_image(self, *args, **kwargs)
        ami.root_device_type = "ebs"
        return ami

    def copy_ebs_image(self: Any, *args: Any, **kwargs: Any) -> Any:
        ami = copy_image(self, *args, **kwargs)
        ami.root_device_type = "ebs"
        return ami

    AmiBackend.create_image = create_ebs_image  # type: ignore[method-assign]
    AmiBackend.copy_image = copy_ebs_image  # type: ignore[method-assign]


def patch_per_request_costs() -> None:
    """Make two of moto 5.2's costs constant: one grew with everything a local cloud keeps, one is paid per request.

    - One EC2 resource's tags: moto scans every tag in the region, matching a pattern against each, and again for
      each tag filter; DescribeImages and DescribeInstances slowed as builds piled up. They are read from the
      resource's own entry instead, in the same order and form.
    - Which service a request is for: moto lists its own package folder (about 200 `isdir` calls) every time. The
      list is taken once; it cannot change while the server runs.
    """
    from moto import backends
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    def own_tags(self: Any) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        # .get: moto's tag store is a defaultdict, and reading must not add an entry to it.
        tags = dict(self.ec2_backend.tags.get(resource_id) or {})
        return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]

    modules = tuple(backends.list_of_moto_modules())
    TaggedEC2Resource.get_tags = own_tags  # type: ignore[method-assign]
    backends.list_of_moto_modules = lambda: modules


def signing_key(headers: Any) -> str:
    """The access key a SigV4 `Authorization` header names (`Credential=KEY/date/region/service/…`), or ""."""
    authorization = str(headers.get("Authorization") or "")
    return authorization.partition("Credential=")[2].partition("/")[0]


def enforce_iam() -> None:
    """Check every request against IAM, as AWS does, except those signed with the local cloud's own keys.

    moto's own enforcement (INITIAL_NO_AUTH_ACTION_COUNT=0): a request signed with an IAM user's keys, or a role's
    from STS, is allowed only what that user's or role's policies allow; unknown keys are refused. What moto
    evaluates of a policy, and what it cannot, is in docs/local-cloud.md (IAM enforcement).
    """
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import AccessDeniedError

    check = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def checked(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if signing_key(getattr(self, "headers", {})) == BUILTIN_ACCESS_KEY:
            return
        try:
            check(self, iam_request_cls, resource)
        except AccessDeniedError as exc:
            aws_says = denial(str(getattr(self, "boto3_service_name", "")), exc.message)
            if aws_says is None:
                raise
            raise aws_says from None

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin._authenticate_and_authorize_action = checked  # type: ignore[method-assign]


def denial(service: str, message: str) -> Exception | None:
    """A refusal as the service itself words it, or None where moto's own (IAM's XML `AccessDenied`) is right: the
    query and REST-XML services. EC2's SDKs do not parse moto's: Packer reads it as a SerializationError and
    retries for ~40 s."""
    from moto.core.utils import get_service_model
    from werkzeug.exceptions import HTTPException

    protocol = get_service_model(service).metadata.get("protocol", "") if service else ""
    error = HTTPException()
    if protocol == "ec2":
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
        error.code = 403
        error.description = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>UnauthorizedOperation</Code>'
            f"<Message>You are not authorized to perform this operation. {html.escape(message)}</Message>"
            "</Error></Errors><RequestID>stamp-local-iam</RequestID></Response>"
        )
    elif protocol == "json":
        error.code = 400
        error.description = json.dumps({"__type": "AccessDeniedException", "message": message})
    else:
        return None
    return error


def add_seeds(entries: list[dict[str, Any]]) -> list[str]:
    """Add vendor images to every region moto has made so far and to those it makes later; return new IDs."""
    from moto.core.parse import default_timestamp_parser
    from moto.ec2.models import amis as moto_amis
    from moto.ec2.models import ec2_backends

    known = {entry["ami_id"] for entry in moto_amis.AMIS}
    added: list[str] = []
    for entry in entries:
        if entry["ami_id"] in known:
            continue
        known.add(entry["ami_id"])
        # Regions created from now on load the module's list (moto's _load_amis).
        moto_amis.AMIS.append(dict(entry))
        added.append(entry["ami_id"])
        for _account, _region, backend in ec2_backends.iter_backends():
            kwargs = {**entry, "owner_alias": "amazon"}
            kwargs["creation_date"] = default_timestamp_parser(entry["creation_date"])
            backend.amis[entry["ami_id"]] = moto_amis.Ami(backend, **kwargs)  # type: ignore[attr-defined]
    return added


def with_seed_endpoint(app: WsgiApp) -> WsgiApp:
    """Wrap moto's WSGI app with `POST /stamp-local/seed` (a JSON list of moto AMI entries)."""

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != SEED_PATH:
            return app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain")])
            return [b"POST a JSON list of images\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            entries = json.loads(environ["wsgi.input"].read(length))
            added = add_seeds(entries)
        except (ValueError, KeyError, TypeError) as exc:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [f"bad seed request: {exc}\n".encode()]
        body = json.dumps({"added": added}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return wrapped


def main(argv: list[str] | None = None) -> int:
    """Serve moto on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(prog="python -m stamp.local.motoserver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--enforce-iam", action="store_true", help="check requests against IAM (enforce_iam)")
    args = parser.parse_args(argv)

    if "MOTO_AMIS_PATH" not in os.environ:
        print("MOTO_AMIS_PATH is not set: the vendor source images would be missing", file=sys.stderr)
        return 2
    # Imported only now: moto reads MOTO_AMIS_PATH when its AMI module is first imported.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    patch_root_device_type()
    patch_per_request_costs()
    if args.enforce_iam:
        enforce_iam()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))

    app = DomainDispatcherApplication(create_backend_app)
    print(f"stamp local cloud: moto listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    run_simple(
        args.host,
        args.port,
        with_seed_endpoint(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
