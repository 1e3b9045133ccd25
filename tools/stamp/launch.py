"""`stamp launch`: stamp out N identical instances from an image's current release, each with its own user-data."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from stamp import local
from stamp.catalog import Catalog
from stamp.clouds import Target
from stamp.errors import CatalogError

# Without --user-data each instance still learns who it is, the way per-instance values usually arrive.
DEFAULT_USER_DATA = """#!/bin/sh
echo "{{ hostname }}" > /etc/stamp-hostname
printf 'image=%s version=%s index=%s count=%s ami=%s\\n' \\
  "{{ image }}" "{{ version }}" "{{ index }}" "{{ count }}" "{{ ami_id }}" > /etc/stamp-instance
"""


@dataclass(frozen=True)
class Launched:
    index: int
    hostname: str
    instance_id: str
    ami_id: str
    ssh: str = ""


def render_user_data(template: str, values: Mapping[str, Any], *, source: str) -> str:
    """Render a user-data template in Jinja's sandbox; a mistake names the file and line."""
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    try:
        return env.from_string(template).render(values)
    except jinja2.TemplateSyntaxError as exc:
        raise CatalogError(f"{source}:{exc.lineno}: user-data template: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise CatalogError(
            f"{source}: user-data template: {exc.message}",
            hint="available: " + ", ".join(sorted(values)),
        ) from None


def launch_instances(
    catalog: Catalog,
    name: str,
    target: Target,
    *,
    count: int,
    region: str | None = None,
    user_data_file: Path | None = None,
) -> list[Launched]:
    """Run `count` instances of the current release; locally each is also a container reachable over SSH."""
    image = catalog.images[name]
    release = catalog.current_release(name)
    if release is None:
        raise CatalogError(f"image '{name}' has no current release", hint=f"run `stamp release {name}` first")
    region = region or image.regions[0]
    if region not in release.amis:
        raise CatalogError(
            f"{name} release {release.version} has no AMI in {region}", hint="regions: " + ", ".join(release.amis)
        )
    ami_id = release.amis[region]
    source = str(user_data_file) if user_data_file else "<default user-data>"
    try:
        template = user_data_file.read_text(encoding="utf-8") if user_data_file else DEFAULT_USER_DATA
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{source}: cannot read the user-data template: {exc}") from None
    launched: list[Launched] = []
    for index in range(1, count + 1):
        hostname = f"{name}-{release.version}-{index}"
        values = {
            "index": index,
            "count": count,
            "hostname": hostname,
            "image": name,
            "version": release.version,
            "ami_id": ami_id,
            "region": region,
        }
        user_data = render_user_data(template, values, source=source)
        tags = {"Name": hostname, "stamp:image": name, "stamp:version": str(release.version)}
        (instance,) = target.cloud.run_instances(
            region, ami_id, count=1, instance_type=image.instance_type, user_data=user_data, tags=tags
        )
        ssh = ""
        if target.local is not None:
            container = local.launch(
                target.local,
                ami_id,
                name=f"{hostname}-{instance.instance_id}",
                ssh_user=image.ssh_username,
                labels={"stamp:instance-id": instance.instance_id, "stamp:image": name},
                user_data=user_data,
            )
            ssh = f"ssh -F {target.local.ssh_config} -p {container.ssh_port} {container.ssh_user}@127.0.0.1"
        launched.append(Launched(index, hostname, instance.instance_id, ami_id, ssh))
        print(f"[{name}] launched {index}/{count}: {instance.instance_id} {hostname} {ssh}", file=sys.stderr)
    return launched
