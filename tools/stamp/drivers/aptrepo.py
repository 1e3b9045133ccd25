"""Apt repositories, read the way apt reads them: a signed InRelease checked with `gpgv`, then the Packages
indexes it lists, each checked against the SHA-256 the signed text gives.

What is fetched is counted (`AptIndexes.fetched`) and kept: each index once per process, and its parsed form
on disk under the cache folder, named by the SHA-256 the signed InRelease lists, so an unchanged index is not
downloaded again. The contract: docs/inventory.md, Updates available.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path

from stamp import clock
from stamp.catalog.inventory import Inventory
from stamp.catalog.updates import (
    Index,
    Newest,
    ReleaseFile,
    Unverified,
    UpdateCheck,
    index_keys,
    packages_path,
    parse_packages,
    parse_release,
    pending,
)
from stamp.drivers import proc
from stamp.errors import ProcessError

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Far above bookworm main's 50 MB Packages: a bound on what a hostile or broken server can make stamp read.
MAX_BYTES = 256 * 1024 * 1024
TIMEOUT_SECONDS = 30.0
CACHE_FORMAT = 1
# The lines of gpgv's that say why a signature did not check (the others say when and with which key it was made).
_GPGV_VERDICTS = ("BAD signature", "public key", "no valid OpenPGP data", "Can't check signature", "expired")


def cache_dir() -> Path:
    """STAMP_CACHE_DIR, else $XDG_CACHE_HOME/stamp, else ~/.cache/stamp; indexes go in its `apt/` folder."""
    if configured := os.environ.get("STAMP_CACHE_DIR"):
        return Path(configured) / "apt"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stamp" / "apt"


class FetchFailed(Exception):
    """One URL could not be read; the message says why in a few words."""


def http_get(url: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise FetchFailed(f"{url.split(':', 1)[0]}: URIs are not read (only http and https)")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (scheme checked above)
            body: bytes = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FetchFailed(f"HTTP {exc.code} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise FetchFailed(f"{url}: {reason}") from None
    if len(body) > MAX_BYTES:
        raise FetchFailed(f"{url}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return body


def verified_text(signed: bytes, keyrings: Sequence[Path]) -> str:
    """The text an InRelease signs, once `gpgv` found a good signature by a key of `keyrings`.

    Only gpgv's output is returned, never the input: text outside the signed part is dropped, as apt drops it.
    Raises FetchFailed with gpgv's own words (`BAD signature`, `No public key`, …).
    """
    missing = [str(k) for k in keyrings if not k.is_file()]
    if missing:
        raise FetchFailed(f"keyring not found: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="stamp-gpgv-") as scratch:
        source, out = Path(scratch) / "InRelease", Path(scratch) / "Release"
        source.write_bytes(signed)
        args = ["gpgv", "--status-fd", "1", *(f"--keyring={k.resolve()}" for k in keyrings), "--output", str(out)]
        try:
            done = proc.run([*args, str(source)], check=False, echo=False, env={"GNUPGHOME": scratch}, timeout=60)
        except ProcessError as exc:
            raise FetchFailed(f"gpgv could not run: {exc}") from None
        statuses = done.stdout.splitlines()
        if done.returncode != 0 or not any(s.startswith("[GNUPG:] VALIDSIG ") for s in statuses):
            said = [line.removeprefix("gpgv: ").strip() for line in done.stderr.splitlines()]
            why = next((s for s in said if any(verdict in s for verdict in _GPGV_VERDICTS)), None)
            raise FetchFailed(why or (said[-1] if said else f"gpgv exited {done.returncode}"))
        return out.read_text(encoding="utf-8", errors="replace")


def _decompress(path: str, body: bytes) -> str:
    if path.endswith(".xz"):
        body = lzma.decompress(body)
    elif path.endswith(".gz"):
        body = gzip.decompress(body)
    return body.decode("utf-8", errors="replace")


class AptIndexes:
    """The indexes of many inventories' apt sources, each InRelease and Packages file fetched at most once."""

    def __init__(self, keyrings: Sequence[Path], *, cache: Path | None = None) -> None:
        self.keyrings = tuple(keyrings)
        self.cache = cache if cache is not None else cache_dir()
        self.fetched: list[str] = []
        self._releases: dict[tuple[str, str], ReleaseFile | Unverified] = {}
        self._indexes: dict[tuple[str, str, str, str], Index | Unverified] = {}

    def check(self, inventory: Inventory, *, security_only: bool = False) -> UpdateCheck:
        """Pending updates of `inventory` from its own apt sources (only security suites with `security_only`:
        their InRelease says so, so the other suites cost one small InRelease each, not their indexes)."""
        indexes: list[Index] = []
        unverified: dict[tuple[str, str], Unverified] = {}
        for key in index_keys(inventory.sources, {p.arch for p in inventory.packages}):
            uri, suite = key[0], key[1]
            release = self._release(uri, suite)
            if isinstance(release, Unverified):
                unverified.setdefault((uri, suite), release)
                continue
            if security_only and not release.security(suite):
                continue
            found = self._index(release, key)
            if isinstance(found, Unverified):
                unverified.setdefault((uri, suite), found)
            else:
                indexes.append(found)
        if security_only:
            # Unread, an InRelease cannot say it is a security suite: its name has to.
            unverified = {k: u for k, u in unverified.items() if "security" in u.suite.lower()}
        return pending(inventory, indexes, list(unverified.values()))

    def _release(self, uri: str, suite: str) -> ReleaseFile | Unverified:
        key = (uri, suite)
        if key not in self._releases:
            url = f"{uri}/dists/{suite}/InRelease"
            try:
                release = parse_release(verified_text(self._get(url), self.keyrings))
                self._releases[key] = _expired(uri, suite, release) or release
            except FetchFailed as exc:
                self._releases[key] = Unverified(uri, suite, str(exc))
        return self._releases[key]

    def _index(self, release: ReleaseFile, key: tuple[str, str, str, str]) -> Index | Unverified:
        if key not in self._indexes:
            self._indexes[key] = self._packages(release, *key)
        return self._indexes[key]

    def _packages(self, release: ReleaseFile, uri: str, suite: str, component: str, arch: str) -> Index | Unverified:
        listed = packages_path(release, component, arch)
        if listed is None:
            # An InRelease that lists no such index offers nothing for it: apt would say the same.
            return Index(uri, suite, component, arch, release.security(suite), {})
        cached = self.cache / f"{listed.sha256}.json"
        newest = _read_cache(cached)
        if newest is None:
            try:
                body = self._get(f"{uri}/dists/{suite}/{listed.path}")
            except FetchFailed as exc:
                return Unverified(uri, suite, str(exc))
            if len(body) != listed.size or hashlib.sha256(body).hexdigest() != listed.sha256:
                return Unverified(uri, suite, f"{listed.path} does not match the SHA-256 its signed InRelease lists")
            try:
                newest = parse_packages(_decompress(listed.path, body))
            except (lzma.LZMAError, OSError, EOFError) as exc:
                return Unverified(uri, suite, f"{listed.path} cannot be decompressed: {exc}")
            _write_cache(cached, newest)
        return Index(uri, suite, component, arch, release.security(suite), newest)

    def _get(self, url: str) -> bytes:
        self.fetched.append(url)
        return http_get(url)


def _expired(uri: str, suite: str, release: ReleaseFile) -> Unverified | None:
    """A Release past its Valid-Until may be a replayed old one, which hides newer fixes: apt refuses it too."""
    if release.valid_until is None:
        return None
    try:
        until = parsedate_to_datetime(release.valid_until)
    except (TypeError, ValueError):
        return Unverified(uri, suite, f"unreadable Valid-Until: {release.valid_until}")
    if until < clock.utc_now():
        return Unverified(uri, suite, f"expired: Valid-Until {release.valid_until}")
    return None


def _read_cache(path: Path) -> Newest | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return None
    return {(name, arch): version for name, arch, version in data["packages"]}


def _write_cache(path: Path, newest: Newest) -> None:
    """Atomically; a cache that cannot be written only costs the next run a download."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [[name, arch, version] for (name, arch), version in sorted(newest.items())]
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": CACHE_FORMAT, "packages": rows}, separators=(",", ":")), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        return
