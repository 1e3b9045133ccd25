"""Renders every image and has Packer check it (`fmt -check`, `validate`), and checks every image's tests as far as
can be done without a host (they exist, compile, and pytest collects them); one line per problem."""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stamp.catalog import yamlsafe
from stamp.catalog.file_reading import read_text
from stamp.catalog.load import Catalog
from stamp.commands.common import catalog_of
from stamp.commands.verify import PYTEST_ENV, PYTEST_PLUGINS
from stamp.drivers import packer, proc
from stamp.drivers.hcl import HCL_FILE, PLACEHOLDER_AMI, render_image, write_render
from stamp.errors import (
    BuildError,
    CatalogError,
    ProcessError,
    YamlPath,
    YamlProblem,
)
from stamp.output import say

# `packer validate` must never reach for real credentials (a developer's profile, an instance role): these
# stand-ins are all it sees, and the metadata service is off so the SDK does not try it either.
VALIDATE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIASTAMPVALIDATE000",
    "AWS_SECRET_ACCESS_KEY": "stamp-validate-placeholder",
    "AWS_SESSION_TOKEN": "",
    "AWS_SECURITY_TOKEN": "",
    "AWS_PROFILE": "",
    "AWS_DEFAULT_PROFILE": "",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def validate_catalog(
    catalog: Catalog,
    *,
    work_dir: Path,
    packer_version: tuple[int, int, int] | None = None,
    env: Mapping[str, str] | None = None,
    jobs: int = 4,
) -> list[str]:
    """Problems with the rendered templates of every image, parents first; empty when Packer accepts them all.

    Renders into `work_dir/<image>/`; a child whose parent has no release yet gets a placeholder parent AMI.
    """
    version = packer_version or packer.detect_version(env)
    names = catalog.topo_order()
    folders: dict[str, Path] = {}
    problems: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        try:
            files = render_image(catalog, name, packer_version=version, placeholder_parent_ami=PLACEHOLDER_AMI)
        except CatalogError as exc:
            problems[name].append(f"image '{name}': {catalog.path}: {exc.message}")
            continue
        folders[name] = work_dir / name
        write_render(files, folders[name])
    check_env = {**(env or {}), **VALIDATE_ENV}
    # Scripts and file folders are checked where they are, so repo_root is the catalog's real folder.
    variables = {"repo_root": str(catalog.root)}

    def check(name: str) -> list[str]:
        folder = folders[name]
        try:
            packer.init(folder, check_env)  # Packer 1.7+ validates only with its plugins installed
        except BuildError as exc:
            return [f"image '{name}': {_display(folder)}: {exc.message}"]
        found = [
            f"image '{name}': {_display(folder / file)}: not in Packer's canonical format (`packer fmt` would "
            "rewrite it; fix the template under tools/stamp/templates)"
            for file in packer.fmt_check(folder, check_env)
        ]
        found += [
            f"image '{name}': {_display(folder / HCL_FILE)}: {problem}"
            for problem in packer.validate(folder, check_env, variables=variables)
        ]
        return found

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name, found in zip(folders, pool.map(check, folders), strict=True):
            problems[name].extend(found)
    return [line for name in names for line in problems[name]]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# What pytest collects (its default `python_files`) and the folders it does not enter (`norecursedirs`): image
# tests run with no configuration of their own (`-c /dev/null`), so these defaults are what `stamp verify` runs.
TEST_FILES = ("test_*.py", "*_test.py")
SKIPPED_FOLDERS = ("*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}", "__pycache__")
# Collecting imports every test module; one that blocks at import must not hang validate.
COLLECT_TIMEOUT = 60.0
# pytest's exit code when it found nothing to collect (pytest.ExitCode.NO_TESTS_COLLECTED).
NO_TESTS_COLLECTED = 5
# As `stamp verify` runs them: testinfra's plugin alone, nothing written into the tests folder. The tests'
# module-level code sees the same stand-in credentials as Packer.
COLLECT_ENV = {**VALIDATE_ENV, **PYTEST_ENV}
# In pytest's report of a collection error: a traceback entry (`path:line: in function`), the header of one error.
_LOCATION = re.compile(r"^(?P<path>[^\s:\x00][^:\x00]*):(?P<line>\d+): in \S")
_ERROR_HEADER = re.compile(r"^_+ ERROR collecting (?P<path>.+?) _+$")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*: ")


def tests_problems(catalog: Catalog, *, jobs: int = 4) -> list[str]:
    """What `stamp verify` would trip over in every image's tests, found before a build and without a host.

    An image without `tests` is a problem: verify refuses it, so it could be built but never recorded. Each
    distinct folder is checked once; the folders in parallel.
    """
    names = catalog.topo_order()
    folders = {name: catalog.root / tests for name in names if (tests := catalog.images[name].tests) is not None}
    distinct = sorted(set(folders.values()))
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(distinct)))) as pool:
        found = dict(zip(distinct, pool.map(check_tests_folder, distinct), strict=True))
    spots = _catalog_spots(catalog, [("images", name) for name in names if name not in folders])
    problems: list[str] = []
    for name in names:
        if name in folders:
            problems += [f"image '{name}': {line}" for line in found[folders[name]]]
        else:
            problems.append(
                f"image '{name}': {spots[('images', name)]}: images.{name}: no `tests` folder; `stamp verify` refuses "
                f"an image without tests, so it would be built but never recorded (add images/{name}/tests with "
                f"testinfra tests and set images.{name}.tests)"
            )
    return problems


def check_tests_folder(folder: Path) -> list[str]:
    """Problems of one tests folder, each `file[:line]: message`; empty when pytest collects its tests."""
    shown = _display(folder)
    if not folder.is_dir():
        return [f"{shown}: no such folder; `stamp verify` runs the image's tests from it"]
    modules = _python_files(folder)
    if not any(fnmatch.fnmatchcase(module.name, pattern) for module in modules for pattern in TEST_FILES):
        return [
            f"{shown}: no test files ({' or '.join(TEST_FILES)}); `stamp verify` would run no tests and fail the image"
        ]
    problems: list[str] = []
    broken: set[Path] = set()
    for module in modules:
        problem = _compile_problem(module)
        if problem is not None:
            problems.append(problem)
            broken.add(module.resolve())
    return problems + _collection_problems(folder, broken)


def _python_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):  # symlinked folders are listed, not entered
        dirs[:] = sorted(d for d in dirs if not any(fnmatch.fnmatchcase(d, skip) for skip in SKIPPED_FOLDERS))
        found += [Path(current) / file for file in sorted(files) if file.endswith(".py")]
    return found


def _compile_problem(module: Path) -> str | None:
    """Why `module` does not compile (`file:line:column: SyntaxError: message`), or None when it does."""
    shown = yamlsafe.show(_display(module), 200)  # a file name can hold a newline: the problem stays one line
    try:
        source = module.read_bytes()
    except OSError as exc:
        return f"{shown}: cannot read: {exc.strerror}"
    try:
        compile(source, str(module), "exec", dont_inherit=True)
    except SyntaxError as exc:
        at = (f":{exc.lineno}" + (f":{exc.offset}" if exc.offset else "")) if exc.lineno else ""
        return f"{shown}{at}: {type(exc).__name__}: {yamlsafe.show(exc.msg or '', 200)} (the file does not compile)"
    except ValueError as exc:  # NUL bytes in the source (Python 3.11)
        return f"{shown}: {yamlsafe.show(str(exc), 200)} (the file does not compile)"
    return None


def _collection_problems(folder: Path, broken: set[Path]) -> list[str]:
    """pytest's collection errors, one line each, except for the files in `broken` (already reported)."""
    shown = _display(folder)
    # As `stamp verify` runs them (commands/verify.py, pytest_args), minus the hosts: testinfra's `host` fixture
    # is resolved only when a test runs.
    args = [sys.executable, "-m", "pytest", "--collect-only", "-q", *PYTEST_PLUGINS, "-p", "no:cacheprovider"]
    args += ["-c", os.devnull, f"--rootdir={folder}", "--color=no", str(folder)]
    try:
        done = proc.run(args, env=COLLECT_ENV, check=False, timeout=COLLECT_TIMEOUT)
    except ProcessError as exc:
        if exc.timed_out:
            return [
                f"{shown}: pytest did not collect the tests within {COLLECT_TIMEOUT:g} s (does a module block at "
                "import?); it was stopped"
            ]
        return [f"{shown}: pytest could not run: {yamlsafe.show(exc.stderr.strip(), 200)}"]
    if done.returncode == 0:
        return []
    sections = _error_sections(done.stdout)
    if sections:
        return [
            _describe_error(folder, folder / header, lines)
            for header, lines in sections
            if (folder / header).resolve() not in broken
        ]
    if done.returncode == NO_TESTS_COLLECTED:
        return [f"{shown}: pytest collects no tests from it; `stamp verify` fails an image whose tests check nothing"]
    # An error before collection (a conftest.py that fails to import): on stderr, with no per-file header.
    return [_describe_error(folder, folder, (done.stdout + "\n" + done.stderr).splitlines())]


def _error_sections(output: str) -> list[tuple[str, list[str]]]:
    """pytest's `ERROR collecting PATH` sections: PATH (relative to the rootdir) and the lines below it."""
    sections: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in output.splitlines():
        header = _ERROR_HEADER.match(line)
        if header:
            current = []
            sections.append((header["path"], current))
        elif line.startswith("=") and line.endswith("="):  # the end of the errors: the summary follows
            current = None
        elif current is not None:
            current.append(line)
    return sections


def _describe_error(folder: Path, file: Path, lines: Sequence[str]) -> str:
    """One line for one collection error: the deepest traceback entry in `folder` (else `file`) and the exception."""
    where, after = _display(file), 0
    root = folder.resolve()
    for index, line in enumerate(lines):
        entry = _LOCATION.match(line)
        # Relative paths are relative to the working folder, which pytest shares with stamp.
        if entry and Path(entry["path"]).resolve().is_relative_to(root):
            where, after = f"{_display(Path(entry['path']))}:{entry['line']}", index + 1
    errors = [line[1:].strip() for line in lines[after:] if line.startswith("E ")]
    last = next((line.strip() for line in reversed(lines) if line.strip()), "collection failed")
    message = next((error for error in errors if _EXCEPTION.match(error)), errors[0] if errors else last)
    return f"{yamlsafe.show(where, 200)}: {yamlsafe.show(message, 200)} (pytest cannot collect it)"


def _catalog_spots(catalog: Catalog, keys: Sequence[YamlPath]) -> dict[YamlPath, str]:
    """`catalog.yaml:line:column` of each key, or the file alone if it cannot be read again."""
    shown = _display(catalog.path)
    if not keys:
        return {}
    try:
        spots = yamlsafe.locate_all(read_text(catalog.path), keys)
    except (CatalogError, YamlProblem):  # changed since it was loaded
        return dict.fromkeys(keys, shown)
    return {key: f"{shown}:{line}:{column}" for key, (line, column) in spots.items()}


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    say(f"catalog: {len(catalog.images)} images, schema and references OK")
    # Packer first: without it validate stops with exit 3 (README, Exit codes) before anything else runs.
    version = packer.detect_version()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The tests are collected while Packer checks the templates: validate takes the longer of the two.
        tested = pool.submit(tests_problems, catalog)
        problems = validate_catalog(catalog, work_dir=Path(args.out), packer_version=version)
        problems += tested.result()
    for problem in problems:
        say(problem)
    if problems:
        say(f"{len(problems)} problem(s)")
        return 1
    images = ", ".join(catalog.topo_order())
    say(f"packer fmt and packer validate: OK for {images}")
    say(f"tests compile and pytest collects them: OK for {images}")
    return 0
