"""Renders every image and has Packer check it (`fmt -check`, `validate`); one line per problem."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stamp.catalog.load import Catalog
from stamp.commands.common import catalog_of
from stamp.drivers import packer
from stamp.drivers.hcl import HCL_FILE, PLACEHOLDER_AMI, render_image, write_render
from stamp.errors import (
    BuildError,
    CatalogError,
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


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    say(f"catalog: {len(catalog.images)} images, schema and references OK")
    problems = validate_catalog(catalog, work_dir=Path(args.out))
    for problem in problems:
        say(problem)
    if problems:
        say(f"{len(problems)} problem(s)")
        return 1
    say("packer fmt and packer validate: OK for " + ", ".join(catalog.topo_order()))
    return 0
