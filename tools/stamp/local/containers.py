"""The local cloud's containers and container images, as the engine lists them by label."""

from __future__ import annotations

import json
from collections.abc import Sequence

from stamp.errors import CloudError
from stamp.local.engine import Engine

# Every container of a local cloud carries LABEL=1 and CLOUD_LABEL=<its cloud's ID>.
LABEL = "stamp.local"
CLOUD_LABEL = "stamp.local.cloud"
IMAGE_REPO = "localhost/stamp/ami"


def container_image_for(ami_id: str) -> str:
    """The container image behind an AMI of the local cloud."""
    return f"{IMAGE_REPO}:{ami_id}"


def remove(engine: Engine, container_ids: Sequence[str]) -> None:
    if not container_ids:
        return
    args = ["rm", "--force", *(["--time=0"] if engine.name == "podman" else []), *container_ids]
    done = engine.run(args, what="removing containers", check=False)
    if done.returncode != 0 and "no such container" not in (done.stderr + done.stdout).lower():
        raise CloudError(
            f"local cloud: removing containers {', '.join(c[:12] for c in container_ids)} failed:"
            f" {done.stderr.strip()}",
            hint=f"remove them by hand with `{engine.name} rm -f …`",
        )


def container_labels(engine: Engine, cloud_label: str) -> dict[str, dict[str, str]]:
    """Container ID -> labels, for every container (running or not) of the cloud labelled `cloud_label`."""
    ids = engine.run(
        ["ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={CLOUD_LABEL}={cloud_label}"],
        what="listing instances",
        echo=False,
    ).stdout.split()
    if not ids:
        return {}
    done = engine.run(["container", "inspect", *ids], what="inspecting instances", check=False, echo=False)
    # A container removed between ps and inspect makes inspect fail for it only: keep the others.
    try:
        data = json.loads(done.stdout or "[]")
    except ValueError:
        data = []
    out: dict[str, dict[str, str]] = {}
    for item in data:
        labels = (item.get("Config") or {}).get("Labels") or {}
        out[str(item["Id"])] = {str(k): str(v) for k, v in labels.items()}
    return out


def remove_containers(engine: Engine, cloud_label: str) -> None:
    """Remove every container of the cloud labelled `cloud_label`."""
    ids = [
        container_id
        for container_id, labels in container_labels(engine, cloud_label).items()
        if labels.get(LABEL) == "1"
    ]
    remove(engine, ids)
