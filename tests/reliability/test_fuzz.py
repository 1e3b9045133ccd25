"""Hypothesis fuzzing of the loader and the renderer: only stamp's documented errors ever come out."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile import CATALOG, make_repo

from scoreboard import Scoreboard
from stamp.catalog import yamlsafe
from stamp.catalog.load import load_catalog
from stamp.cli import main
from stamp.drivers.hcl import PLACEHOLDER_AMI, PLUGINS_FILE, VARS_FILE, render_image
from stamp.errors import CatalogError, CatalogProblems, StampError, YamlProblem

ROW = "fuzz examples"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextlib.contextmanager
def counted(scoreboard: Scoreboard) -> Iterator[Callable[[], None]]:
    """Counts the examples a Hypothesis run tried; a failure found by it counts as one bad row entry."""
    tried = [0]

    def tick() -> None:
        tried[0] += 1

    failed = True
    try:
        yield tick
        failed = False
    finally:
        scoreboard.add(ROW, tried=tried[0], bad=int(failed))


def _plain(value: Any, depth: int = 0) -> bool:
    """Only what the loader promises: dicts with string keys, lists, str, int, float, bool and None."""
    assert depth <= yamlsafe.MAX_DEPTH + 1
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    return value is None or type(value) in (str, int, float, bool)


YAML_ALPHABET = st.sampled_from(
    list("-:[]{},&*!|>'\"#%@`? \n\t\r\\.0123456789abcyYnNoO~\ufeff\u2028\x85\x00\x1b\ud800")
)
YAML_TEXT = st.one_of(
    st.text(max_size=300),
    st.text(YAML_ALPHABET, max_size=300),
    st.lists(st.sampled_from(CATALOG.splitlines(keepends=True)), max_size=40).map("".join),
)


def test_the_yaml_loader_raises_only_yaml_problems(scoreboard: Scoreboard) -> None:
    with counted(scoreboard) as tick:

        @FUZZ
        @given(text=YAML_TEXT, path=st.lists(st.one_of(st.text(max_size=5), st.integers(0, 3)), max_size=4))
        def run(text: str, path: list[str | int]) -> None:
            tick()
            try:
                data = yamlsafe.load(text)
            except YamlProblem as problem:
                assert problem.line >= 0 and problem.column >= 0
                return
            assert _plain(data)
            line, column = yamlsafe.locate(text, tuple(path))
            assert line >= 1 and column >= 1

        run()


def test_the_catalog_loader_raises_only_catalog_problems(scoreboard: Scoreboard) -> None:
    with counted(scoreboard) as tick, tempfile.TemporaryDirectory() as scratch:
        repo = make_repo(Path(scratch))
        path = repo / "catalog.yaml"

        @FUZZ
        @given(data=st.one_of(st.binary(max_size=400), YAML_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))))
        def run(data: bytes) -> None:
            tick()
            path.write_bytes(data)
            try:
                load_catalog(path)
            except CatalogProblems as problems:
                assert problems.problems and all(
                    p.startswith(str(path)) or "catalog.yaml" in p for p in problems.problems
                )

        run()


# -- structured catalogs, mutated ----------------------------------------------------------------------------

TOKENS = [
    "&a ",
    "*a",
    "!!str ",
    "{",
    "}",
    "[",
    "]",
    ": ",
    "- ",
    "\t",
    '"',
    "'",
    "#",
    "\n",
    "  ",
    "? ",
    "|",
    ">",
    "%YAML 1.1\n---\n",
    "---\n",
    "...\n",
    "~",
    "NO",
    "0o17",
    "0x1F",
    "1e3",
    ".inf",
    "012345678901",
    "{{ pwd }}",
    "../",
    "/etc/shadow",
    "\\",
    "\u202e",
    "\x85",
    "\ufeff",
    "base",
    "web",
    "current",
    "public: true",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = CATALOG
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate line", "drop line", "swap lines"]))
        lines = text.splitlines(keepends=True)
        line = min(at * len(lines) // (len(text) + 1), len(lines) - 1)
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif kind == "replace":
            text = text[:at] + draw(st.text(max_size=3)) + text[at + 1 :]
        elif kind == "duplicate line":
            text = "".join(lines[: line + 1] + lines[line:])
        elif kind == "drop line":
            text = "".join(lines[:line] + lines[line + 1 :])
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[line], lines[other] = lines[other], lines[line]
            text = "".join(lines)
    return text


def test_mutated_catalogs_through_load_render_and_the_cli(scoreboard: Scoreboard) -> None:
    with counted(scoreboard) as tick, tempfile.TemporaryDirectory() as scratch:
        repo = make_repo(Path(scratch))
        path = repo / "catalog.yaml"

        @FUZZ
        @given(text=mutated(), via_cli=st.booleans())
        def run(text: str, via_cli: bool) -> None:
            tick()
            path.write_bytes(text.encode("utf-8", "surrogatepass"))
            if via_cli:
                sink = io.StringIO()
                with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(io.StringIO()):
                    code = main(["lookup", "base", "--catalog", str(path)])
                assert code in (0, 1), sink.getvalue()
                assert "Traceback" not in sink.getvalue()
                return
            try:
                catalog = load_catalog(path)
            except CatalogProblems:
                return
            for name in catalog.topo_order():
                with contextlib.suppress(StampError):
                    render_image(catalog, name, packer_version=(1, 6, 6), placeholder_parent_ami=PLACEHOLDER_AMI)

        run()


# -- the renderer on catalogs of generated valid values --------------------------------------------------------

REGIONS = ["us-east-1", "eu-west-1", "ap-south-1", "us-gov-west-1", "eu-central-2"]
_file_name = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="/\\\0"), min_size=1, max_size=40
).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 200)
_account = st.from_regex(r"[0-9]{12}", fullmatch=True)
_ami = st.from_regex(r"ami-[0-9a-f]{17}", fullmatch=True)


@st.composite
def catalog_data(draw: st.DrawFn) -> dict[str, Any]:
    regions = draw(st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3, unique=True))
    root = {
        "description": draw(st.text(max_size=255)),
        "source": {
            "filter": {
                "name": draw(st.text(min_size=1, max_size=128)),
                "owners": draw(
                    st.lists(st.one_of(_account, st.sampled_from(["amazon", "self"])), min_size=1, max_size=3)
                ),
            }
        },
        "provision": [f"scripts/{n}" for n in draw(st.lists(_file_name, max_size=3))],
        "regions": regions,
        "instance_type": draw(st.from_regex(r"[a-z0-9]{1,4}\.[a-z0-9]{1,8}", fullmatch=True)),
        "ssh_username": draw(st.from_regex(r"[a-z_][a-z0-9_-]{0,31}", fullmatch=True)),
        "volume_size_gb": draw(st.integers(1, 16384)),
        "share": {"accounts": draw(st.lists(_account, max_size=3, unique=True))},
    }
    if draw(st.booleans()):
        root["files"] = f"files/{draw(_file_name)}"
    child: dict[str, Any] = {
        "description": draw(st.text(max_size=255)),
        "parent": "root",
        "regions": draw(st.lists(st.sampled_from(regions), min_size=1, unique=True)),
    }
    data: dict[str, Any] = {"version": 1, "images": {"root": root, "child": child}}
    if draw(st.booleans()):
        data["releases"] = {
            "root": [
                {
                    "version": 1,
                    "amis": {region: draw(_ami) for region in regions},
                    "built_at": "2026-11-20T10:00:00Z",
                    "commit": "1a2b3c4d5e6f",
                    "build_id": "root-1-abc123",
                    "source": {"amis": {regions[0]: draw(_ami)}},
                    "verified": "passed",
                    "status": "current",
                    "reason": draw(st.one_of(st.none(), st.text(max_size=40))),
                }
            ]
        }
    return data


def _write(root: Path, data: dict[str, Any]) -> Path:
    for spec in data["images"].values():
        for script in spec.get("provision", []):
            (root / script).parent.mkdir(parents=True, exist_ok=True)
            (root / script).write_text("echo probe\n")
        if "files" in spec:
            (root / spec["files"]).mkdir(parents=True, exist_ok=True)
    path = root / "catalog.yaml"
    # JSON is YAML, nearly: a raw NEL or U+2028 in a quoted YAML string is a line break (folded to a space), raw
    # C1 controls are refused, and libyaml rejects the surrogate-pair escapes json.dumps writes for astral
    # characters. So: real characters, with only those few escaped.
    text = json.dumps(data, ensure_ascii=False, indent=1)
    path.write_text(_YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text), encoding="utf-8")
    return path


_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def _has_go_template(data: dict[str, Any]) -> bool:
    root, child = data["images"]["root"], data["images"]["child"]
    texts = [root["description"], child["description"], root["source"]["filter"]["name"], *root["provision"]]
    return any("{{" in t for t in [*texts, root.get("files", "")])


def test_the_renderer_on_generated_catalogs(scoreboard: Scoreboard) -> None:
    with counted(scoreboard) as tick, tempfile.TemporaryDirectory() as scratch:
        examples = iter(range(1_000_000))

        @settings(FUZZ, max_examples=250)
        @given(data=catalog_data(), version=st.sampled_from([(1, 6, 6), (1, 9, 4)]))
        def run(data: dict[str, Any], version: tuple[int, int, int]) -> None:
            tick()
            root = Path(scratch) / str(next(examples))
            root.mkdir()
            try:
                catalog = load_catalog(_write(root, data))
            except CatalogProblems as problems:
                assert _has_go_template(data), problems.problems
                assert all("contains '{{'" in p for p in problems.problems), problems.problems
                return
            assert not _has_go_template(data)
            for name in catalog.topo_order():
                placeholder = PLACEHOLDER_AMI if name == "child" and "releases" not in data else None
                if placeholder is not None:
                    with pytest.raises(CatalogError, match="release the parent first"):
                        render_image(catalog, name, packer_version=version)
                files = render_image(catalog, name, packer_version=version, placeholder_parent_ami=placeholder)
                again = render_image(catalog, name, packer_version=version, placeholder_parent_ami=placeholder)
                assert again == files, "rendering is deterministic"
                assert (PLUGINS_FILE in files) == (version >= (1, 7, 0))
                values = json.loads(files[VARS_FILE])
                spec = data["images"][name]
                assert (values["image_name"], values["description"]) == (name, spec["description"])
                assert [values["build_region"], *values["copy_regions"]] == spec["regions"]
                if name == "root":
                    assert values["source_ami_name"] == spec["source"]["filter"]["name"]
                    assert values["provision_scripts"] == spec["provision"]
                    assert values.get("files_dir") == spec.get("files")
                else:
                    assert values["source_ami"] == (
                        placeholder or data["releases"]["root"][0]["amis"][spec["regions"][0]]
                    )

        run()
