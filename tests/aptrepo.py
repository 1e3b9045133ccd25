"""A signed apt repository built on the spot and served over HTTP, for tests and benchmarks.

Real tools throughout: `gpg` makes a throwaway signing key and clear-signs InRelease, `dpkg-deb` builds the
packages an image installs, and a threaded HTTP server on the given address serves the files (and logs what
was asked of it, so a test can count fetches).
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

COMPONENT = "main"
ARCH = "amd64"


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    arch: str = ARCH
    source: str | None = None
    # Changelog entries, newest first: (version, text of the change). Only for packages built as .deb files.
    changelog: Sequence[tuple[str, str]] = ()


@dataclass
class AptRepo:
    """A repository under `root` (dists/, pool/), signed by a key made in `root/gnupg`."""

    root: Path
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gnupg = self.root / "gnupg"
        self.gnupg.mkdir(parents=True, exist_ok=True)
        self.gnupg.chmod(0o700)
        self._gpg("--quick-gen-key", "stamp test archive <archive@example.invalid>", "ed25519", "sign", "never")
        self.keyring = self.root / "archive-keyring.gpg"
        self.keyring.write_bytes(self._gpg("--export"))

    def close(self) -> None:
        """Stop the gpg-agent that signing started for this key's home."""
        kill = ["gpgconf", "--homedir", str(self.gnupg), "--kill", "gpg-agent"]
        subprocess.run(kill, capture_output=True, check=False)

    def _gpg(self, *args: str, stdin: bytes | None = None) -> bytes:
        done = subprocess.run(
            [
                "gpg",
                "--batch",
                "--quiet",
                "--homedir",
                str(self.gnupg),
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                *args,
            ],
            input=stdin,
            capture_output=True,
            check=True,
        )
        return done.stdout

    def publish(
        self,
        suite: str,
        packages: Sequence[Deb],
        *,
        debs: bool = False,
        label: str = "stamp-test",
        valid_until: str | None = None,
        sign: bool = True,
    ) -> Path:
        """Write dists/SUITE/ (Packages, Packages.xz, Release, InRelease); with `debs`, build each package in pool/."""
        dist = self.root / "dists" / suite
        binary = dist / COMPONENT / f"binary-{ARCH}"
        binary.mkdir(parents=True, exist_ok=True)
        stanzas = []
        for package in packages:
            stanza = {
                "Package": package.name,
                "Version": package.version,
                "Architecture": package.arch,
                "Maintainer": "stamp test <archive@example.invalid>",
                "Description": f"{package.name} for stamp's tests",
            }
            if package.source:
                stanza["Source"] = package.source
            if debs:
                deb = self._build_deb(package)
                body = deb.read_bytes()
                stanza |= {
                    "Filename": str(deb.relative_to(self.root)),
                    "Size": str(len(body)),
                    "SHA256": hashlib.sha256(body).hexdigest(),
                }
            stanzas.append("".join(f"{k}: {v}\n" for k, v in stanza.items()))
        text = "\n".join(stanzas).encode()
        (binary / "Packages").write_bytes(text)
        (binary / "Packages.xz").write_bytes(lzma.compress(text))
        lines = [f"Origin: stamp-test\nLabel: {label}\nSuite: {suite}\nCodename: {suite}\n"]
        lines.append("Date: Mon, 30 Nov 2026 10:00:00 UTC\n")
        if valid_until:
            lines.append(f"Valid-Until: {valid_until}\n")
        lines.append(f"Architectures: {ARCH}\nComponents: {COMPONENT}\nSHA256:\n")
        for name in ("Packages", "Packages.xz"):
            body = (binary / name).read_bytes()
            path = f"{COMPONENT}/binary-{ARCH}/{name}"
            lines.append(f" {hashlib.sha256(body).hexdigest()} {len(body):>8} {path}\n")
        release = "".join(lines).encode()
        (dist / "Release").write_bytes(release)
        signed = self._gpg("--clearsign", "--output", "-", stdin=release) if sign else release
        (dist / "InRelease").write_bytes(signed)
        return dist

    def _build_deb(self, package: Deb) -> Path:
        tree = self.root / "tree" / f"{package.name}-{package.version}"
        doc = tree / "usr" / "share" / "doc" / package.name
        doc.mkdir(parents=True, exist_ok=True)
        (tree / "DEBIAN").mkdir(exist_ok=True)
        (tree / "DEBIAN" / "control").write_text(
            f"Package: {package.name}\nVersion: {package.version}\nArchitecture: {package.arch}\n"
            + (f"Source: {package.source}\n" if package.source else "")
            + "Maintainer: stamp test <archive@example.invalid>\nDescription: a package for stamp's tests\n"
        )
        entries = [
            f"{package.source or package.name} ({version}) bookworm-security; urgency=high\n\n  * {change}\n\n"
            " -- stamp test <archive@example.invalid>  Mon, 30 Nov 2026 10:00:00 +0000\n"
            for version, change in package.changelog
        ]
        (doc / "changelog.Debian.gz").write_bytes(gzip.compress("\n".join(entries).encode()))
        pool = self.root / "pool" / COMPONENT
        pool.mkdir(parents=True, exist_ok=True)
        deb = pool / f"{package.name}_{package.version}_{package.arch}.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], capture_output=True, check=True
        )
        return deb

    @contextmanager
    def serve(self, address: str = "127.0.0.1") -> Iterator[str]:
        """Serve `root` on `address` (a free port); yields the repository's URI."""
        root, requests = str(self.root), self.requests

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=root, **kwargs)

            def do_GET(self) -> None:
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((address, 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://{address}:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
