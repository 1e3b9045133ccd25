"""The lock files are what `make` installs: they must cover pyproject.toml and match the running interpreter.

A failure here means a lock is stale (run `make lock`) or the virtual environment is (run `make setup`).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
BOOTSTRAP_LOCK = ROOT / "requirements-bootstrap.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# A pinned entry starts a line: `name==version`, then ` \` and its `--hash=` lines.
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")


def parse_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """PEP 503 name -> (version, hashes) for every entry of a pip-compile lock file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(raw)
        if match:
            current = canonicalize_name(match["name"])
            assert current not in entries, f"{path.name}: {current} is pinned twice"
            entries[current] = (match["version"], [])
        elif line.startswith("--hash="):
            assert current is not None, f"{path.name}: a hash before any pin: {line}"
            entries[current][1].append(line.removeprefix("--hash=").rstrip(" \\"))
        else:
            raise AssertionError(f"{path.name}: a line that is neither a pin nor a hash: {raw!r}")
    return entries


def direct_requirements() -> list[Requirement]:
    """The runtime dependencies and the `dev` extra, as pyproject.toml names them."""
    project = PYPROJECT["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def test_lock_parser_reads_pins_extras_and_hashes(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# header\nMoto[ec2,server]==5.2.5 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
        "    # via stamp (pyproject.toml)\ntyping_extensions==4.16.0 \\\n    --hash=sha256:cc\n",
        encoding="utf-8",
    )
    assert parse_lock(lock) == {
        "moto": ("5.2.5", ["sha256:aa", "sha256:bb"]),
        "typing-extensions": ("4.16.0", ["sha256:cc"]),
    }


def test_every_direct_dependency_is_pinned_within_its_range() -> None:
    locked = parse_lock(LOCK)
    requirements = direct_requirements()
    assert len(requirements) >= 17
    problems = []
    for req in requirements:
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req.name} is not in {LOCK.name}")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{req.name}=={locked[name][0]} in {LOCK.name} does not satisfy {req}")
    assert not problems, "stale lock, run `make lock`:\n" + "\n".join(problems)


def test_every_locked_entry_has_a_hash() -> None:
    for path in (LOCK, BOOTSTRAP_LOCK):
        entries = parse_lock(path)
        assert entries, f"{path.name} pins nothing"
        unhashed = [name for name, (_, hashes) in entries.items() if not hashes]
        assert not unhashed, f"{path.name}: `pip install --require-hashes` would refuse {unhashed}"
        assert all(h.startswith("sha256:") and len(h) == len("sha256:") + 64 for _, hs in entries.values() for h in hs)


def test_installed_direct_dependencies_are_the_locked_versions() -> None:
    locked = parse_lock(LOCK)
    mismatches = []
    for req in direct_requirements():
        name = canonicalize_name(req.name)
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        wanted = locked.get(name, ("not locked", []))[0]
        if installed != wanted:
            mismatches.append(f"{req.name}: installed {installed}, locked {wanted}")
    assert not mismatches, "the environment differs from the lock, run `make setup`:\n" + "\n".join(mismatches)


def test_installed_dependency_tree_is_locked_at_the_installed_versions() -> None:
    """Everything the direct dependencies pull in (extras included) is in the lock, at the version installed."""
    locked = parse_lock(LOCK)
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in direct_requirements()]
    seen: set[tuple[str, frozenset[str]]] = set()
    problems = []
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed")
            continue
        wanted = locked.get(name, ("not locked", []))[0]
        if wanted != dist.version:
            problems.append(f"{name}: installed {dist.version}, locked {wanted}")
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    assert len(seen) > len(direct_requirements())
    assert not problems, "the installed tree differs from the lock:\n" + "\n".join(sorted(set(problems)))


def test_bootstrap_lock_pins_pip_and_the_build_backend() -> None:
    locked = parse_lock(BOOTSTRAP_LOCK)
    build_requires = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert "pip" in locked
    for req in build_requires:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} (build-system) is not in {BOOTSTRAP_LOCK.name}, run `make lock`"
        assert req.specifier.contains(locked[name][0]), f"{req} not met by {BOOTSTRAP_LOCK.name}, run `make lock`"
    assert set(locked) == {"pip", *(canonicalize_name(r.name) for r in build_requires)}
