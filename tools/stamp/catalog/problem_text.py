"""How a catalog problem is worded: the file, line, column and dotted key it is at, what is wrong there in words
a person can act on, and the key they probably meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stamp.catalog import yamlsafe
from stamp.catalog.models import CatalogFile, ImageSpec, Model, Release


def describe(err: Mapping[str, Any], spot: tuple[int, int], path: Path) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    line, col = spot
    kind = err["type"]
    value = err.get("input")
    message = str(err["msg"])
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        options = sorted(parent_model.model_fields) if parent_model else []
        message = f"unknown key '{yamlsafe.show(str(loc[-1]))}'{suggest(str(loc[-1]), options)}"
        if options and "did you mean" not in message:
            message += f" (allowed: {', '.join(options)})"
    elif kind == "string_type" and isinstance(value, int) and not isinstance(value, bool):
        message = (
            'must be a quoted string, e.g. "012345678901": unquoted digits are read as a number and lose leading zeros'
        )
    elif kind == "bool_type" and isinstance(value, str):
        message = (
            f"'{yamlsafe.show(value)}' is not a boolean: write true or false (stamp reads yes, no, on, off as text)"
        )
    elif kind == "string_pattern_mismatch":
        message = f"'{yamlsafe.show(str(value))}' is not valid: {_pattern_help(loc)}"
    elif kind == "missing":
        message = "required key is missing"
    return f"{display(path)}:{line}:{col}: {dotted(loc)}: {message}"


def _pattern_help(loc: tuple[str | int, ...]) -> str:
    keys = [k for k in loc if isinstance(k, str)]
    field = keys[-1] if keys else ""
    if len(keys) >= 2 and keys[-2] == "amis":  # the value under a region key
        field = "amis"
    helps = {
        "accounts": "an account ID is exactly 12 digits, quoted",
        "copy_accounts": "an account ID is exactly 12 digits, quoted",
        "owners": "an owner is a quoted 12-digit account ID, or amazon / aws-marketplace / self",
        "organizations": "expected arn:aws:organizations::<12 digits>:organization/o-<10-32 lowercase chars>",
        "organizational_units": (
            "expected arn:aws:organizations::<12 digits>:ou/o-<org id>/ou-<root id>-<8-32 lowercase chars>"
        ),
        "regions": "expected an AWS region name such as us-east-1",
        "images": "image names are lowercase letters, digits and dashes, starting with a letter",
        "releases": "image names are lowercase letters, digits and dashes, starting with a letter",
        "parent": "image names are lowercase letters, digits and dashes, starting with a letter",
        "amis": "expected a region name mapped to an AMI ID such as ami-0123456789abcdef0",
        "instance_type": "expected an EC2 instance type such as t3.micro",
        "ssh_username": "expected a Linux user name such as admin",
        "built_at": 'expected a UTC time such as "2026-11-26T15:00:00Z"',
        "commit": "expected a git commit hash (6 to 40 lowercase hex digits)",
        "build_id": "expected lowercase letters, digits and dashes",
    }
    return helps.get(field, "see docs/catalog.md for the expected format")


def _model_at(loc: tuple[str | int, ...]) -> type[Model] | None:
    """The pydantic model that validates the mapping at `loc` (for did-you-mean on unknown keys)."""
    from stamp.catalog import models

    current: type[Model] | None = CatalogFile
    skip_next = False
    for key in loc:
        if current is None:
            return None
        if skip_next or isinstance(key, int):
            skip_next = False
            continue
        if current is CatalogFile and key in ("images", "releases"):
            current = ImageSpec if key == "images" else Release
            skip_next = True
            continue
        field = current.model_fields.get(str(key))
        if field is None:
            return None
        current = _first_model(field.annotation, models)
    return current


def _first_model(annotation: Any, namespace: Any) -> type[Model] | None:
    if isinstance(annotation, type) and issubclass(annotation, Model):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg, namespace)
        if found is not None:
            return found
    return None


def suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{yamlsafe.show(key)}" if out else yamlsafe.show(key))
    return out


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python 3.11
        return str(path)
