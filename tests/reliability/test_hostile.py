"""Hostile catalogs through the real CLI: each is refused with file:line (or rendered harmlessly), no side effect."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import stamp.catalog.load
import stamp.drivers.packer
from builders import build_result
from scoreboard import Scoreboard
from stamp.catalog import yamlsafe
from stamp.catalog.results import BuildResult, write_result
from stamp.cli import BUG_EXIT_CODE, main
from stamp.drivers.hcl import HCL_FILE, VARS_FILE
from test_catalog import BAD_CASES, GOOD
from test_render import FIELDS, PATH_FIELDS, PAYLOADS, _benign

ROW = "hostile inputs tried"
HERE = Path(__file__).resolve().parent
CATALOG_FIXTURE = HERE.parent / "fixtures" / "catalog"

CATALOG = """\
# A scratch catalog for hostile-input tests: a root image with a release, and a child with a files folder.
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
  instance_type: t3.micro
  ssh_username: admin
images:
  base:
    description: Base image
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/base/setup.sh]
    tests: images/base/tests
    share:
      accounts: ["111122223333"]
      organizations: ["arn:aws:organizations::111122223333:organization/o-exampleorg1"]
  web:
    description: Web image
    parent: base
    provision: [images/web/install.sh]
    files: images/web/files
    tests: images/web/tests
    share: {accounts: ["111122223333", "444455556666"]}
releases:
  base:
    - version: 1
      amis: {us-east-1: ami-0123456789abcdef0, eu-west-1: ami-0fedcba9876543210}
      built_at: "2026-11-20T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: base-1-abc123
      source: {amis: {us-east-1: ami-0aaaaaaaaaaaaaaaa}}
      verified: passed
      status: current
"""


# -- the guard every case goes through -----------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Live (not zombie) processes below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, ValueError):
            continue
        states[int(entry.name)] = fields[0]
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.add(child)
            queue.append(child)
    return {p for p in found if states.get(p) != "Z"}


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` (symlinks not followed) with its size and mtime."""
    found: dict[str, tuple[int, int]] = {}
    for current, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(current) / name
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    seconds: float
    problems: list[str] = field(default_factory=list)


@dataclass
class Guard:
    """Runs one hostile case through `stamp.cli.main` and scores it: a traceback or a side effect is bad."""

    repo: Path
    capsys: pytest.CaptureFixture[str]
    scoreboard: Scoreboard

    @property
    def catalog(self) -> Path:
        return self.repo / "catalog.yaml"

    def run(self, argv: Sequence[str], *, may_create: Sequence[str] = ()) -> Outcome:
        """`stamp ARGV` in the repository folder; `may_create` are path prefixes the command may write."""
        before = tree(self.repo)
        stat_before = _stat(self.catalog)
        procs_before = descendants(os.getpid())
        self.capsys.readouterr()
        clock = time.monotonic()
        raised: BaseException | None = None
        code = -1
        try:
            code = main(list(argv))
        except BaseException as exc:  # scored, then raised again below
            raised = exc
        seconds = time.monotonic() - clock
        captured = self.capsys.readouterr()
        problems = []
        if raised is not None or "Traceback" in captured.err or code == BUG_EXIT_CODE:
            at = captured.err.find("Traceback")
            problems.append(f"traceback: {raised!r} {captured.err[at : at + 2000] if at >= 0 else ''}")
        if _stat(self.catalog) != stat_before:
            problems.append("the catalog changed (bytes or mtime)")
        after = tree(self.repo)
        created = sorted(set(after) - set(before))
        changed = sorted(p for p in set(after) & set(before) if after[p] != before[p] and p != "catalog.yaml")
        unexpected = [p for p in created + changed if not p.startswith(tuple(may_create))]
        if unexpected:
            problems.append(f"files created or changed: {unexpected[:5]}")
        if "build" not in may_create and (self.repo / "build").exists():
            problems.append("build/ was created")
        left = _settle(procs_before)
        if left:
            problems.append(f"processes left running: {sorted(left)}")
        forged = [line for line in captured.err.splitlines() if line.startswith("::")]
        if forged:
            problems.append(f"a line that CI would read as a workflow command: {forged[0]!r}")
        self.scoreboard.add(ROW, tried=1, bad=int(bool(problems)))
        if raised is not None:
            raise raised
        return Outcome(code, captured.out, captured.err, seconds, problems)


def _stat(path: Path) -> tuple[int, int, str] | None:
    """Size, mtime and (for a file small enough to read) a digest; None when it is not a regular file."""
    try:
        if not path.is_file():
            return None
        info = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if info.st_size < 128 << 20 else "sparse"
        return info.st_size, info.st_mtime_ns, digest
    except OSError:
        return None


def _settle(before: set[int], wait: float = 3.0) -> set[int]:
    """New descendant processes still alive after a short grace period."""
    deadline = time.monotonic() + wait
    while True:
        left = descendants(os.getpid()) - before
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def make_repo(root: Path, text: str = CATALOG) -> Path:
    """The scratch repository: catalog.yaml plus every script and folder it names."""
    root.mkdir(parents=True, exist_ok=True)
    for script in ("images/base/setup.sh", "images/web/install.sh"):
        (root / script).parent.mkdir(parents=True, exist_ok=True)
        (root / script).write_text("#!/usr/bin/env bash\nset -euo pipefail\necho hi\n")
    for folder in ("images/base/tests", "images/web/tests", "images/web/files"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "keep.txt").write_text("x\n")
    (root / "catalog.yaml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def guard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scoreboard: Scoreboard, monkeypatch: pytest.MonkeyPatch
) -> Guard:
    repo = make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    return Guard(repo, capsys, scoreboard)


def assert_refused(outcome: Outcome, code: int, *fragments: str, where: str | None = r"catalog\.yaml:\d+") -> None:
    assert not outcome.problems, outcome.problems
    assert outcome.code == code, outcome.err
    for fragment in fragments:
        assert fragment in outcome.err, outcome.err
    if where is not None:
        assert re.search(where, outcome.err), outcome.err


def line_of(text: str, needle: str) -> int:
    """The first line holding `needle`; the last one for `last: needle`."""
    lines = list(enumerate(text.splitlines(), 1))
    if needle.startswith("last: "):
        needle, lines = needle.removeprefix("last: "), lines[::-1]
    return next(i for i, line in lines if needle in line)


def run_stamp(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`python -m stamp ARGV` in a real process, killed (with its group) if it outlives `timeout`."""
    with subprocess.Popen(
        [sys.executable, "-m", "stamp", *argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            raise
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


# -- YAML bombs, nesting, size, encodings, file kinds --------------------------------------------------------

LOL = '"lol"'
BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}' if prev else LOL] * 9)}]\n"
    for name, prev in zip("abcdefghi", ["", *"abcdefgh"], strict=True)
)
DEPTH = 100_000

TEXT_CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (catalog text, fragments the error must contain)
    "billion laughs (anchors and aliases)": (BILLION_LAUGHS, ("catalog.yaml:1:", "anchor '&a' is not allowed")),
    "alias to an anchor defined nowhere": (
        "version: 1\nimages: *all\n",
        ("catalog.yaml:2:9: images: alias '*all' is not allowed",),
    ),
    "merge key with an alias": (CATALOG.replace("    description: Web image\n", "    <<: *base\n"), ("alias",)),
    "100k-deep flow sequences": ("version: 1\nimages: " + "[" * DEPTH + "]" * DEPTH + "\n", ("nested more than",)),
    "100k-deep flow mappings": ("version: 1\nimages: " + "{a: " * DEPTH + "1" + "}" * DEPTH, ("nested more than",)),
    "2000-deep block sequences": (
        "version: 1\nimages:\n" + "".join(" " * i + "-\n" for i in range(2, 2002)),
        ("nested more than",),
    ),
    "python object tag": (
        CATALOG.replace("Base image", "!!python/object/apply:os.system [id]"),
        ("YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",),
    ),
    "custom tag directive": ("%TAG !e! tag:example.com,2000:\n---\nversion: !e!one 1\n", ("YAML tag",)),
    "two documents": (CATALOG + "---\n" + CATALOG, ("only one YAML document",)),
    "raw escape character": (CATALOG.replace("Web image", "Web \x1b[2J image"), ("U+001B",)),
    "a list at the top": ("- version: 1\n", ("must be a mapping",)),
    "a scalar at the top": ("just text\n", ("must be a mapping",)),
    "an empty file": ("", ("must be a mapping",)),
    "a complex key": ("? [a, b]\n: c\n", ("mapping keys must be plain strings",)),
    "a number as a key": ("version: 1\n12: x\n", ("mapping keys must be plain strings",)),
    "NO as a boolean": (
        CATALOG.replace('share: {accounts: ["111122223333", "444455556666"]}', "share: {public: NO}"),
        ("images.web.share.public",),
    ),
    "octal-looking owner": (
        CATALOG.replace('owners: ["136693071363"]', "owners: [0136693071363]"),
        ("must be a quoted string",),
    ),
    "a key with a newline and a workflow command": (
        CATALOG.replace("version: 1\n", 'version: 1\n"x\\n::error file=catalog.yaml::forged": 1\n', 1),
        ("unknown key 'x\\n::error", "(allowed: defaults, images, releases, version)"),
    ),
    "a right-to-left override in a key": (
        CATALOG.replace("    description: Web image\n", '    "desc\u202eription": Web image\n'),
        ("unknown key 'desc\\u202eription'",),
    ),
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_hostile_yaml_is_refused_cleanly(case: str, guard: Guard) -> None:
    text, fragments = TEXT_CASES[case]
    guard.catalog.write_text(text, encoding="utf-8")
    outcome = guard.run(["validate", "--catalog", "catalog.yaml"])
    assert_refused(outcome, 1, *fragments)
    assert outcome.seconds < 5


BYTE_CASES: dict[str, tuple[Callable[[], bytes], tuple[str, ...]]] = {
    "binary junk": (lambda: bytes(range(256)) * 64, ("NUL bytes",)),
    "junk without NUL bytes": (lambda: bytes(range(1, 256)) * 64, ("not valid UTF-8",)),
    "a NUL byte in the middle": (
        lambda: CATALOG.replace("  base:\n", "  ba\0se:\n", 1).encode(),
        (f"catalog.yaml:{line_of(CATALOG, '  base:')}: contains NUL bytes",),
    ),
    "Latin-1 text": (
        lambda: CATALOG.replace("Web image", "Café image").encode("latin-1"),
        (f"catalog.yaml:{line_of(CATALOG, 'Web image')}: not valid UTF-8",),
    ),
    "UTF-16 with a byte-order mark": (lambda: CATALOG.encode("utf-16"), ("catalog.yaml:1:1: the file is UTF-16",)),
    "UTF-16 without a byte-order mark": (lambda: CATALOG.encode("utf-16-le"), ("NUL bytes",)),
    "UTF-32 with a byte-order mark": (lambda: CATALOG.encode("utf-32"), ("the file is UTF-32",)),
    "an overlong UTF-8 sequence": (
        lambda: CATALOG.replace("Web", "W\ufffdb").encode().replace(b"\xef\xbf\xbd", b"\xc0\xaf"),
        ("not valid UTF-8",),
    ),
    "a UTF-8-encoded surrogate": (lambda: CATALOG.encode().replace(b"Web", b"W\xed\xa0\x80b"), ("not valid UTF-8",)),
}


@pytest.mark.parametrize("case", sorted(BYTE_CASES))
def test_hostile_bytes_are_refused_cleanly(case: str, guard: Guard) -> None:
    make, fragments = BYTE_CASES[case]
    guard.catalog.write_bytes(make())
    assert_refused(guard.run(["validate", "--catalog", "catalog.yaml"]), 1, *fragments, where=None)


def test_a_utf8_byte_order_mark_is_accepted_and_kept_by_record(
    guard: Guard, tmp_path: Path, trust: Callable[[BuildResult], BuildResult]
) -> None:
    guard.catalog.write_bytes(b"\xef\xbb\xbf" + CATALOG.encode())
    outcome = guard.run(["lookup", "base", "--region", "eu-west-1"])
    assert (outcome.code, outcome.out, outcome.problems) == (0, "ami-0fedcba9876543210\n", []), outcome.err
    out = tmp_path / "results"
    write_result(out, trust(_result("web", "web-bom-1")))
    assert main(["record", "--out", str(out)]) == 0
    assert guard.catalog.read_bytes().startswith(b"\xef\xbb\xbf" + CATALOG.encode())
    assert stamp.catalog.load.load_catalog(guard.catalog).current_release("web") is not None


def test_a_huge_single_line_is_refused_from_its_size_without_being_read(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    with guard.catalog.open("wb") as handle:
        handle.write(b"description: ")
        chunk = b"a" * (1 << 20)
        for _ in range(60):
            handle.write(chunk)
    opened: list[str] = []
    real_open = os.open

    def spy(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    outcome = guard.run(["validate", "--catalog", "catalog.yaml"])
    monkeypatch.undo()
    assert_refused(outcome, 1, f"bytes is more than the {yamlsafe.MAX_BYTES}-byte limit", where=None)
    assert not [p for p in opened if p.endswith("catalog.yaml")], "refused from stat, never opened"
    assert outcome.seconds < 1


def test_a_sparse_64_gib_file_is_refused_at_once(guard: Guard) -> None:
    with guard.catalog.open("wb") as handle:
        handle.truncate(64 << 30)
    outcome = guard.run(["lookup", "base"])
    assert_refused(outcome, 1, str(64 << 30), where=None)
    assert outcome.seconds < 1


def test_one_byte_over_the_limit_is_refused(guard: Guard) -> None:
    line = b"# " + b"x" * 1021 + b"\n"
    guard.catalog.write_bytes(CATALOG.encode() + line * (yamlsafe.MAX_BYTES // len(line)) + b"#" * 1024)
    assert guard.catalog.stat().st_size > yamlsafe.MAX_BYTES
    assert_refused(guard.run(["lookup", "base"]), 1, "limit", where=None)


def test_many_problems_are_capped_and_fast(guard: Guard) -> None:
    regions = ", ".join(["nowhere-1"] * 200_000)
    guard.catalog.write_text(CATALOG.replace("regions: [us-east-1, eu-west-1]", f"regions: [{regions}]"))
    outcome = guard.run(["validate", "--catalog", "catalog.yaml"])
    assert_refused(outcome, 1, "defaults.regions[0]", "and 199950 more problems not shown")
    assert len(outcome.err.splitlines()) < 60
    assert outcome.seconds < 15


def test_many_duplicate_accounts_are_fast(guard: Guard) -> None:
    accounts = ", ".join(['"111122223333"'] * 200_000)
    guard.catalog.write_text(CATALOG.replace('accounts: ["111122223333"]', f"accounts: [{accounts}]"))
    outcome = guard.run(["validate", "--catalog", "catalog.yaml"])
    assert_refused(outcome, 1, "images.base.share.accounts[1]: '111122223333' is listed twice", "more problems")
    assert outcome.seconds < 15


def test_a_long_parent_chain_is_refused_and_fast(guard: Guard) -> None:
    chain = "".join(f"  i{n}: {{parent: i{n - 1}}}\n" if n else "  i0: {parent: base}\n" for n in range(20_000))
    guard.catalog.write_text(CATALOG.replace("images:\n", "images:\n" + chain, 1))
    outcome = guard.run(["validate", "--catalog", "catalog.yaml"])
    assert_refused(outcome, 1, "images.i15.parent: 'i15' has 16 images above it")
    assert outcome.seconds < 15


FILE_KINDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "a folder": (lambda p: p.mkdir(), "is a folder"),
    "/dev/zero": (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
    "a symlink loop": (lambda p: p.symlink_to(p), "cannot read"),
    "a dangling symlink": (lambda p: p.symlink_to(p.with_name("gone.yaml")), "no such file"),
    "a socket": (lambda p: _socket(p), "not a regular file"),
}


def _socket(path: Path) -> None:
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


@pytest.mark.parametrize("case", sorted(FILE_KINDS))
def test_a_catalog_that_is_not_a_file(case: str, guard: Guard) -> None:
    # Root reads a chmod 000 file anyway, so these stand in for "unreadable": each must fail fast and clearly.
    make, fragment = FILE_KINDS[case]
    target = guard.repo / "odd.yaml"
    make(target)
    assert_refused(guard.run(["lookup", "base", "--catalog", "odd.yaml"]), 1, fragment, where=None)


def test_a_fifo_catalog_is_refused_without_hanging(guard: Guard) -> None:
    fifo = guard.repo / "fifo.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    done = run_stamp(["lookup", "base", "--catalog", "fifo.yaml"], cwd=guard.repo, timeout=20)
    hung = time.monotonic() - started > 10
    bad = done.returncode != 1 or "Traceback" in done.stderr or "not a regular file" not in done.stderr
    guard.scoreboard.add(ROW, tried=1, bad=int(bad or hung))
    assert done.returncode == 1 and "fifo.yaml: is not a regular file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_deep_nesting_in_a_real_process(guard: Guard) -> None:
    guard.catalog.write_text("version: 1\nimages: " + "[" * 1_000_000 + "]" * 1_000_000)
    done = run_stamp(["validate"], cwd=guard.repo, timeout=30)
    bad = done.returncode != 1 or "Traceback" in done.stderr or (guard.repo / "build").exists()
    guard.scoreboard.add(ROW, tried=1, bad=int(bad))
    assert done.returncode == 1 and "catalog.yaml:2:" in done.stderr and "nested more than" in done.stderr
    assert "Traceback" not in done.stderr and not (guard.repo / "build").exists()


# -- every catalog rule (docs/contract.md, Catalog format), through the CLI ----------------------------------


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_spec_rules_from_the_catalog_tests_via_the_cli(case: str, guard: Guard) -> None:
    shutil.copytree(CATALOG_FIXTURE / "images", guard.repo / "images", dirs_exist_ok=True)
    (old, new), line, key, fragment = BAD_CASES[case]
    guard.catalog.write_text(GOOD.replace(old, new, 1))
    outcome = guard.run(["validate"])
    assert_refused(outcome, 1, key, fragment, where=rf"(?m)^catalog\.yaml:{line}:\d+: ")


MORE_RULES: dict[str, tuple[tuple[str, str], str, str, str]] = {
    # name: ((old, new) in CATALOG, the line holding this text, key, message fragment)
    "version 2": (("version: 1", "version: 2"), "version: 2", "version", "Input should be 1"),
    "no images": (("images:\n", "images: {}\nold_images:\n"), "images: {}", "images", "at least 1"),
    "unknown top-level key": (("releases:\n", "releasez:\n"), "releasez:", "releasez", "did you mean 'releases'"),
    "public without allow_public": (
        ('share: {accounts: ["111122223333", "444455556666"]}', "share: {public: true}"),
        "public: true",
        "images.web.share.public",
        "allow_public",
    ),
    "allow_public: yes is not a boolean": (
        ("  ssh_username: admin\n", "  ssh_username: admin\n  allow_public: yes\n"),
        "allow_public",
        "defaults.allow_public",
        "'yes' is not a boolean: write true or false",
    ),
    "an unquoted 12-digit account": (
        ('accounts: ["111122223333"]', "accounts: [111122223333]"),
        "accounts: [111122223333]",
        "images.base.share.accounts[0]",
        "must be a quoted string",
    ),
    "an account listed twice": (
        ('"111122223333", "444455556666"', '"444455556666", "444455556666"'),
        "444455556666",
        "images.web.share.accounts[1]",
        "listed twice",
    ),
    "a region the parent does not build": (
        ("    parent: base\n", "    parent: base\n    regions: [ap-south-1]\n"),
        "regions: [ap-south-1]",
        "images.web.regions",
        "not built by parent",
    ),
    "two current releases": (
        (
            "      status: current\n",
            "      status: current\n" + CATALOG.split("  base:\n")[-1].replace("version: 1", "version: 2"),
        ),
        "last: status: current",
        "releases.base[1].status",
        "more than one release is current",
    ),
    "a cycle of three": (
        ('    source:\n      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}\n', "    parent: db\n"),
        "parent: db",
        "images.base.parent",
        "parent chain forms a cycle: base → db → web → base",
    ),
    "a Go template in a description": (("Web image", "costs {{ 2 }}"), "costs", "images.web.description", "'{{'"),
    "a Go template in a filter name": (
        ("debian-12-amd64-*", "debian-{{ pwd }}"),
        "debian-",
        "images.base.source.filter.name",
        "'{{'",
    ),
    "a malformed AMI in a release": (
        ("ami-0123456789abcdef0", "ami-XYZ"),
        "ami-XYZ",
        "releases.base[0].amis.us-east-1",
        "an AMI ID such as ami-0123456789abcdef0",
    ),
    "a bad status": (("status: current", "status: live"), "status: live", "releases.base[0].status", "'current'"),
}


@pytest.mark.parametrize("case", sorted(MORE_RULES))
def test_more_spec_rules_via_the_cli(case: str, guard: Guard) -> None:
    (old, new), needle, key, fragment = MORE_RULES[case]
    assert old in CATALOG, case
    text = CATALOG.replace(old, new, 1)
    if case == "a cycle of three":
        text = text.replace("images:\n", "images:\n  db: {parent: web}\n", 1)
    guard.catalog.write_text(text)
    outcome = guard.run(["validate"])
    assert_refused(
        outcome, 1, f": {key}: ", fragment, where=rf"catalog\.yaml:{line_of(text, needle)}:\d+: {re.escape(key)}"
    )


# -- injection payloads in every string field ----------------------------------------------------------------

MORE_PAYLOADS = {
    "go-template": "{{ pwd }}",
    "workflow-command": "x\n::error file=catalog.yaml::forged",
    "terminal-escape": "x\x1b[2Jy",
    "shell": "$(id) `id` ; rm -rf / #",
}
ALL_PAYLOADS = {**PAYLOADS, **MORE_PAYLOADS}


def _write_repo(root: Path, data: dict[str, Any]) -> None:
    """`data` as catalog.yaml (JSON is YAML) in `root`, with every script and folder it names."""
    for spec in data["images"].values():
        for script in spec.get("provision", []):
            path = root / script
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("#!/usr/bin/env bash\necho probe\n")
        for key in ("files", "tests"):
            if isinstance(spec.get(key), str):
                (root / spec[key]).mkdir(parents=True, exist_ok=True)
                (root / spec[key] / "probe.txt").write_text("probe\n")
    (root / "catalog.yaml").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


@pytest.fixture
def old_packer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render without starting Packer for its version (that has its own tests)."""
    monkeypatch.setattr(stamp.drivers.packer, "detect_version", lambda env=None: (1, 6, 6))


def _rendered(folder: Path) -> dict[str, dict[str, str]]:
    return {
        image.name: {f.name: f.read_text(encoding="utf-8") for f in sorted(image.iterdir()) if f.is_file()}
        for image in sorted(folder.iterdir())
    }


@pytest.mark.usefixtures("old_packer")
@pytest.mark.parametrize("payload_name", sorted(ALL_PAYLOADS))
def test_injection_payloads_are_refused_with_their_line_or_stay_values(
    payload_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    scoreboard: Scoreboard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    benign_repo = tmp_path / "benign"
    benign_repo.mkdir()
    _write_repo(benign_repo, _benign())
    assert main(["render", "--catalog", str(benign_repo / "catalog.yaml"), "--out", str(benign_repo / "build")]) == 0
    benign = _rendered(benign_repo / "build")
    payload = ALL_PAYLOADS[payload_name]
    for index, name in enumerate(sorted(FIELDS)):
        setter, fate = FIELDS[name]
        repo = tmp_path / f"case-{index}"
        repo.mkdir()
        data = _benign()
        value = f"{PATH_FIELDS[name]}/{payload}" if name in PATH_FIELDS else payload
        setter(data, value)
        _write_repo(repo, data)
        monkeypatch.chdir(repo)
        guard = Guard(repo, capsys, scoreboard)
        if "{{" in payload and name != "releases.base[0].reason":
            fate = "refused"
        outcome = guard.run(["render", "--out", "build"], may_create=("build",))
        assert not outcome.problems, (name, outcome.problems)
        if fate == "refused":
            assert outcome.code == 1, (name, outcome.err)
            located = [line for line in outcome.err.splitlines() if re.match(r"catalog\.yaml:\d+:\d+: ", line)]
            wanted = ": images." if name == "images.<name>" else f": {name}: "
            assert any(wanted in line for line in located), (name, outcome.err)
            assert not (repo / "build").exists()
            continue
        assert outcome.code == 0, (name, outcome.err)
        rendered = _rendered(repo / "build")
        for image, files in rendered.items():
            for file in files:
                if file.endswith(".pkr.hcl"):
                    assert files[file] == benign[image][file], (name, image, file)
            if fate == "nowhere":
                assert files == benign[image], (name, image)
        if fate == "vars":
            values = [json.loads(files[VARS_FILE]) for files in rendered.values()]
            assert any(
                value in v.values() or any(value in x for x in v.values() if isinstance(x, list)) for v in values
            )
        assert all(payload not in files[HCL_FILE] for files in rendered.values())


# -- paths leaving the repository ----------------------------------------------------------------------------


def _path_case(repo: Path, key: str, value: str, setup: Callable[[Path], None] | None = None) -> tuple[str, str]:
    """The catalog text with `key` of image web set to `value`; `setup` makes links and files first."""
    if setup:
        setup(repo)
    current = {"provision": "[images/web/install.sh]", "files": "images/web/files", "tests": "images/web/tests"}
    old = f"    {key}: {current[key]}\n"
    new = f"    {key}: [{json.dumps(value)}]\n" if key == "provision" else f"    {key}: {json.dumps(value)}\n"
    return CATALOG.replace(old, new), ("images.web.provision[0]" if key == "provision" else f"images.web.{key}")


def _link(name: str, target: str) -> Callable[[Path], None]:
    def setup(repo: Path) -> None:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).symlink_to(target)

    return setup


def _links(repo: Path, *pairs: tuple[str, str]) -> None:
    for name, target in pairs:
        _link(name, target)(repo)


PATH_CASES: dict[str, tuple[str, str, Callable[[Path], None] | None, str]] = {
    "dot-dot to /etc/shadow": ("provision", "../../etc/shadow", None, "must not leave the repository"),
    "dot-dot inside the path": ("provision", "images/../../etc/shadow", None, "must not leave the repository"),
    "absolute script": ("provision", "/etc/shadow", None, "relative to the repository root"),
    "backslashes": ("provision", "images\\web\\install.sh", None, "relative to the repository root"),
    "a script symlinked out": (
        "provision",
        "images/web/evil.sh",
        _link("images/web/evil.sh", "/etc/shadow"),
        "outside the repository",
    ),
    "a script symlinked to a symlink out": (
        "provision",
        "images/web/a.sh",
        lambda r: _links(r, ("images/web/b.sh", "/etc/passwd"), ("images/web/a.sh", "b.sh")),
        "outside the repository",
    ),
    "a script that is a folder": ("provision", "images/web/files", None, "must be a file"),
    "a script under a file": ("provision", "images/web/install.sh/x", None, "does not exist"),
    "a 300-character name": ("provision", "images/" + "x" * 300 + ".sh", None, "does not exist"),
    "a symlink loop": ("provision", "images/web/loop.sh", _link("images/web/loop.sh", "loop.sh"), "does not exist"),
    "files symlinked to /etc": ("files", "images/web/etc", _link("images/web/etc", "/etc"), "outside the repository"),
    "tests symlinked to /root": ("tests", "images/web/t", _link("images/web/t", "/root"), "outside the repository"),
    "files holding a link to /etc/shadow": (
        "files",
        "images/web/files",
        _link("images/web/files/shadow", "/etc/shadow"),
        "holds a symlink leading out of the repository or nowhere: shadow",
    ),
    "files holding a linked folder out": (
        "files",
        "images/web/files",
        _link("images/web/files/deep/etc", "/etc"),
        "holds a symlink leading out of the repository or nowhere: deep/etc",
    ),
    "tests holding a dangling link": (
        "tests",
        "images/web/tests",
        _link("images/web/tests/gone.py", "/nonexistent/x.py"),
        "leading out of the repository or nowhere",
    ),
    "files that is a file": ("files", "images/web/install.sh", None, "must be a folder"),
    "absolute tests": ("tests", "/tmp", None, "relative to the repository root"),
}


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_paths_leaving_the_repository_are_refused(case: str, guard: Guard) -> None:
    key, value, setup, fragment = PATH_CASES[case]
    text, dotted = _path_case(guard.repo, key, value, setup)
    guard.catalog.write_text(text)
    outcome = guard.run(["validate"])
    needle = "    provision:" if key == "provision" else f"    {key}: "
    line = line_of(text, "  web:") + line_of(text.split("  web:")[1], needle) - 1
    where = rf"catalog\.yaml:{line}:\d+: {re.escape(dotted)}"
    assert_refused(outcome, 1, fragment, where=where)


def test_a_link_inside_the_repository_is_fine(guard: Guard) -> None:
    _link("images/web/files/same.sh", "../install.sh")(guard.repo)
    outcome = guard.run(["lookup", "base"])
    assert (outcome.code, outcome.problems) == (0, []), outcome.err


# -- record: hostile results never touch the catalog ---------------------------------------------------------


def _result(image: str, build_id: str, **changes: Any) -> BuildResult:
    return build_result(image, build_id, **({"commit": "0a1b2c3d", "started_at": "2026-11-21T15:00:00Z"} | changes))


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch) -> Callable[[BuildResult], BuildResult]:
    """Makes the CLI's cloud one (in memory) where a result's AMIs exist, owned and tagged as `stamp verify`
    leaves them, so record's cloud checks (tests/test_custody.py) pass and the catalog edit is what is tested."""
    from fakes import FakeCloud, FakeImage
    from stamp.hosts.ec2 import Ec2Target
    from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG

    cloud = FakeCloud()
    monkeypatch.setattr("stamp.hosts.target.target_for", lambda kind, _catalog: Ec2Target(cloud))

    def trusted(result: BuildResult) -> BuildResult:
        for region, ami_id in result.amis.items():
            tags = {BUILD_ID_TAG: result.build_id, VERIFIED_TAG: VERIFIED}
            cloud.images[(region, ami_id)] = FakeImage(ami_id, result.build_id, region, tags=tags)
        return result

    return trusted


RECORD_CASES: dict[str, tuple[Callable[[Path], None], int, str]] = {
    "a result that is not JSON": (lambda out: _raw(out, b"{not json"), 1, "not a valid build result"),
    "a result of binary junk": (lambda out: _raw(out, bytes(range(256))), 1, "web/result.json"),
    "a result with an extra key": (
        lambda out: _raw(out, json.dumps({**_result("web", "web-x").model_dump(), "evil": 1}).encode()),
        1,
        "not a valid build result",
    ),
    "an unverified result": (lambda out: _put(out, verified="pending"), 1, "not verified"),
    "a failed result": (lambda out: _put(out, verified="failed", failed_tests=["t"]), 1, "not verified"),
    "a result from the future": (lambda out: _put(out, started_at="2099-01-01T00:00:00Z"), 1, "after now"),
    "a result missing a region": (
        lambda out: _put(out, amis={"us-east-1": "ami-0123456789abcdef1"}),
        1,
        "no AMI in eu-west-1",
    ),
    "a local result recorded for aws": (lambda out: _put(out, cloud="local"), 1, "local cloud"),
    "a commit that is not a hash": (lambda out: _put(out, commit="$(id)"), 1, "commit"),
}


def _raw(out: Path, data: bytes) -> None:
    (out / "web").mkdir(parents=True)
    (out / "web" / "result.json").write_bytes(data)


def _put(out: Path, **changes: Any) -> None:
    write_result(out, _result("web", "web-hostile-1", **changes))


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_hostile_build_results_leave_the_catalog_untouched(case: str, guard: Guard, tmp_path: Path) -> None:
    make, code, fragment = RECORD_CASES[case]
    out = tmp_path / "results"
    make(out)
    outcome = guard.run(["record", "--out", str(out)], may_create=(".catalog.yaml.lock",))
    assert_refused(outcome, code, fragment, where=None)


def test_local_results_are_refused_before_any_local_cloud_starts(
    guard: Guard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results"
    _put(out, cloud="local")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no engine, no packer: refusing must need neither
    outcome = guard.run(["record", "--cloud", "local", "--out", str(out)], may_create=(".catalog.yaml.lock",))
    assert_refused(outcome, 6, "never recorded in the repository's own catalog", where=None)
    assert not (guard.repo / ".stamp").exists()


def test_arguments_that_are_not_images(guard: Guard) -> None:
    for argv in (["lookup", "../../etc/passwd"], ["lookup", "base\n::error::x"], ["render", "nope", "--out", "build"]):
        outcome = guard.run(argv)
        assert_refused(outcome, 1, "no image named", where=None)


def test_the_guard_sees_side_effects_and_tracebacks(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    trust: Callable[[BuildResult], BuildResult],
) -> None:
    """The control: a command that does change the catalog, or raises, is scored bad (on a private scoreboard)."""
    board = Scoreboard()
    repo = make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    guard = Guard(repo, capsys, board)
    write_result(tmp_path / "out", trust(_result("web", "web-control-1")))
    assert guard.run(["record", "--out", str(tmp_path / "out")]).problems == [
        "the catalog changed (bytes or mtime)",
        "files created or changed: ['.catalog.yaml.lock']",
    ]
    monkeypatch.setattr("stamp.commands.common.load_catalog", lambda path: 1 / 0)
    crashed = guard.run(["lookup", "base"])
    assert crashed.code == BUG_EXIT_CODE
    assert crashed.problems[0].startswith("traceback:")
    assert (board.tried[ROW], board.bad[ROW]) == (2, 2)
