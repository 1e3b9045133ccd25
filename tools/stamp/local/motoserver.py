"""`python -m stamp.local.motoserver --port N`: moto's server, patched where Packer needs EC2's behaviour."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

# Not moto's: stamp's own path on the server, to add vendor images to a running server (moto keeps them
# in memory, so restarting would lose every AMI built so far).
SEED_PATH = "/stamp-local/seed"

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
