"""The local cloud's containers and container images, as the engine lists them by label."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stamp.errors import CloudError
from stamp.local.engine import Engine

# Every container of a local cloud carries LABEL=1 and CLOUD_LABEL=<its cloud's ID>. STATE_LABEL (the cloud's
# state folder) and LIFE_LABEL (its moto server's pid) say which life of which cloud made it: moto keeps AMIs in
# memory, so an image committed in an earlier life stands behind no AMI any more. A committed image keeps its
# container's labels, which is how `down` tells the images a cloud made.
LABEL = "stamp.local"
CLOUD_LABEL = "stamp.local.cloud"
STATE_LABEL = "stamp.local.state"
LIFE_LABEL = "stamp.local.moto-pid"
IMAGE_REPO = "localhost/stamp/ami"
# What the local cloud makes besides IMAGE_REPO: commits tied to no AMI, and each cloud's names for its seeds.
COMMIT_REPO = "localhost/stamp/commit"
SEED_REPO = "localhost/stamp/seed"


def container_image_for(ami_id: str) -> str:
    """The container image behind an AMI of the local cloud."""
    return f"{IMAGE_REPO}:{ami_id}"


def seed_image_for(cloud_label: str, ami_id: str) -> str:
    """The name one local cloud gives its base image for a seeded vendor AMI (no other cloud uses it)."""
    return f"{SEED_REPO}/{cloud_label}:{ami_id}"


@dataclass(frozen=True)
class StampImage:
    """One name (repository:tag) the local cloud made, and what the image behind it says about its maker."""

    ref: str
    image_id: str
    labels: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None


def _created(text: str) -> datetime | None:
    """An engine's creation time (RFC 3339, nanoseconds), to the microsecond; None when unreadable."""
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", text or "")
    if found is None:
        return None
    fraction = (found.group(2) or ".0")[:7]
    return datetime.fromisoformat(found.group(1) + fraction).replace(tzinfo=UTC)


def stamp_images(engine: Engine, prefixes: Iterable[str] = (IMAGE_REPO, COMMIT_REPO, SEED_REPO)) -> list[StampImage]:
    """Every image name under `prefixes` (repository names), with its image's labels and creation time."""
    wanted = tuple(f"{prefix}{sep}" for prefix in prefixes for sep in (":", "/"))
    refs = sorted({ref for ref in _image_names(engine) if ref.startswith(wanted)})
    if not refs:
        return []
    done = engine.run(["image", "inspect", *refs], what="inspecting images", check=False, echo=False)
    # An image removed between the listing and inspect fails inspect for it alone: keep the others.
    try:
        data = json.loads(done.stdout or "[]")
    except ValueError:
        data = []
    found: dict[str, StampImage] = {}
    for item in data:
        labels = (item.get("Config") or {}).get("Labels") or {}
        for ref in item.get("RepoTags") or []:
            if ref in refs:
                found[ref] = StampImage(
                    ref,
                    str(item.get("Id", "")),
                    {str(k): str(v) for k, v in labels.items()},
                    _created(str(item.get("Created", ""))),
                )
    return [found[ref] for ref in refs if ref in found]


def _image_names(engine: Engine) -> list[str]:
    """Every `repository:tag` the engine has. A failed listing is retried, then raised: read as "no images", it
    made `stamp local down` remove none of its own."""
    listed = engine.read(["images", "--format", "{{.Repository}}:{{.Tag}}"], what="listing the engine's images")
    return listed.stdout.split()


def remove_images(engine: Engine, refs: Sequence[str]) -> list[str]:
    """Untag `refs` (the image goes with its last name); returns those removed. An image a container still
    runs from keeps its name: the engine refuses, and the next `down` tries again."""
    if not refs:
        return []
    engine.run(["rmi", *refs], what="removing images", check=False, echo=False)
    left = {image.ref for image in stamp_images(engine)}
    return [ref for ref in refs if ref not in left]


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
