#!/usr/bin/env python3
"""stamp-app: a tiny HTTP service built on the Python standard library only.

GET /         -> JSON describing the service
GET /healthz  -> "ok"
"""

import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APP_NAME = "stamp-app"
APP_VERSION = "1"


class Handler(BaseHTTPRequestHandler):
    server_version = APP_NAME
    sys_version = ""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/":
            payload = {
                "app": APP_NAME,
                "version": APP_VERSION,
                "status": "ok",
                "hostname": socket.gethostname(),
            }
            self._send(200, (json.dumps(payload, sort_keys=True) + "\n").encode(), "application/json")
        elif self.path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        # To stderr, which systemd sends to the journal.
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    host = os.environ.get("STAMP_APP_HOST", "0.0.0.0")  # noqa: S104 - a server, reachable by design
    port = int(os.environ.get("STAMP_APP_PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    sys.stderr.write(f"{APP_NAME} {APP_VERSION} listening on {host}:{port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
