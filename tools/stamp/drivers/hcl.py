"""Renders one catalog image into a static Packer HCL folder plus the variables file that carries its values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from stamp.catalog.load import Catalog, Image
from stamp.errors import CatalogError

TEMPLATES = Path(__file__).parent.parent / "templates"
HCL_FILE = "image.pkr.hcl"
VARS_FILE = "stamp.auto.pkrvars.json"
FINALIZE_FILE = "finalize.sh"
PLUGINS_FILE = "plugins.pkr.hcl"
MANIFEST_FILE = "manifest.json"
# Packer 1.6.6 rejects `packer { required_plugins }`; from 1.7 on the amazon builder is a plugin.
PLUGINS_SINCE = (1, 7, 0)
# Validate's stand-in for a parent that has no release yet: well-formed, and owned by nobody.
PLACEHOLDER_AMI = "ami-00000000000000000"

# Values only a build knows, with defaults in the template: the build step sets them with -var NAME=VALUE.
BUILD_VARIABLES = (
    "repo_root",
    "build_id",
    "ec2_endpoint",
    "ssh_host",
    "ssh_port",
    "ssh_private_key_file",
    "ssh_keypair_name",
    "security_group_id",
    "poll_delay_seconds",
    "poll_max_attempts",
)


@dataclass(frozen=True)
class Shape:
    """The only input the HCL template gets: which structural variant to emit. Never a catalog string."""

    root: bool
    files: bool
    scripts: bool


def render_image(
    catalog: Catalog,
    name: str,
    *,
    packer_version: tuple[int, int, int],
    placeholder_parent_ami: str | None = None,
) -> dict[str, str]:
    """File name → text for `build/<name>/`; the same catalog always gives byte-identical files.

    A child whose parent has no current release is an error, unless `placeholder_parent_ami` is given
    (`stamp validate` checks templates before any parent is built).
    """
    image = catalog.images.get(name)
    if image is None:
        known = ", ".join(sorted(catalog.images)) or "none"
        raise CatalogError(f"no image named '{name}' in {catalog.path}", hint=f"images: {known}")
    # Catalog strings with `{{` never get here: validation refuses them (models.no_go_template), naming the line.
    values = image_variables(catalog, image, placeholder_parent_ami=placeholder_parent_ami)
    shape = Shape(root=image.parent is None, files=image.files is not None, scripts=bool(image.provision))
    files = {
        HCL_FILE: _template("image.pkr.hcl.j2").render(**asdict(shape)),
        VARS_FILE: json.dumps(values, indent=2, sort_keys=True, ensure_ascii=True) + "\n",
        FINALIZE_FILE: _finalize_script(),
    }
    if packer_version >= PLUGINS_SINCE:
        files[PLUGINS_FILE] = _template("plugins.pkr.hcl.j2").render()
    return dict(sorted(files.items()))


def image_variables(catalog: Catalog, image: Image, *, placeholder_parent_ami: str | None = None) -> dict[str, Any]:
    """Every catalog value the template declares, keyed by its Packer variable name."""
    build_region, *copy_regions = image.regions
    values: dict[str, Any] = {
        "image_name": image.name,
        "description": image.description,
        "build_region": build_region,
        "copy_regions": copy_regions,
        "instance_type": image.instance_type,
        "ssh_username": image.ssh_username,
        "volume_size_gb": image.volume_size_gb,
        "provision_scripts": list(image.provision),
    }
    if image.parent is None:
        if image.source is None:
            raise CatalogError(f"image '{image.name}': a root image needs `source.filter`")
        values["source_ami_name"] = image.source.filter.name
        values["source_ami_owners"] = list(image.source.filter.owners)
    else:
        values["source_ami"] = _parent_ami(catalog, image, build_region, placeholder_parent_ami)
    if image.files is not None:
        values["files_dir"] = image.files
    return values


def write_render(files: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Write a render into `out_dir`, removing Packer inputs a previous render left there (build outputs stay)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out_dir.iterdir()):
        if stale.name not in files and (stale.name.endswith((".pkr.hcl", ".pkrvars.json", ".pkrvars.hcl"))):
            stale.unlink()
    written: list[Path] = []
    for name, text in sorted(files.items()):
        path = out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        # Bytes, not text mode: the file must be exactly what render_image returned, on every platform.
        tmp.write_bytes(text.encode("utf-8"))
        tmp.chmod(0o755 if name.endswith(".sh") else 0o644)
        tmp.replace(path)
        written.append(path)
    return written


def _parent_ami(catalog: Catalog, image: Image, region: str, placeholder: str | None) -> str:
    parent = image.parent
    assert parent is not None
    release = catalog.current_release(parent)
    if release is None:
        if placeholder is not None:
            return placeholder
        raise CatalogError(
            f"image '{image.name}': its parent '{parent}' has no current release to build from; "
            "release the parent first",
            hint=f"run `stamp release {parent}` (or `stamp release {parent} {image.name}`)",
        )
    ami = release.amis.get(region)
    if ami is None:
        raise CatalogError(
            f"image '{image.name}': parent '{parent}' release {release.version} has no AMI in {region}, "
            f"where '{image.name}' is built; release the parent first",
            hint=f"run `stamp release {parent}` so its current release covers {region}",
        )
    return ami


@cache
def template_environment() -> jinja2.Environment:
    # The templates only choose structure ({% if %}); print delimiters that HCL never contains keep Packer's
    # own `{{ .Path }}` literal, and autoescape stays off because it escapes for HTML, not HCL.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        variable_start_string="<%=",
        variable_end_string="%>",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - output is HCL with no values in it, not HTML
    )


def _template(name: str) -> jinja2.Template:
    return template_environment().get_template(name)


@cache
def _finalize_script() -> str:
    try:
        return (TEMPLATES / FINALIZE_FILE).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CatalogError(
            f"stamp's {FINALIZE_FILE} is missing from {TEMPLATES.name}/", hint="reinstall stamp"
        ) from None
