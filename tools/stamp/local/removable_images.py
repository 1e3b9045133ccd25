"""Which container images `stamp local down` removes: this cloud's, those of local clouds that are gone, and what
an older stamp left that no cloud of it may still use."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from stamp.local.containers import CLOUD_LABEL, LABEL, LIFE_LABEL, SEED_REPO, STATE_LABEL, StampImage
from stamp.local.engine import Engine
from stamp.local.moto_process import pid_is_moto
from stamp.local.state_file import cloud_id, read_state

# Images an older stamp made carry no state label; past this age `down` takes them as left behind.
LEGACY_IMAGE_AGE = timedelta(hours=1)


def _life_is_running(state: Path, life: str) -> bool:
    """Whether the local cloud whose state folder is `state` runs, with the moto server (pid) `life`."""
    cloud = read_state(state)
    return cloud is not None and str(cloud.moto_pid) == life and pid_is_moto(cloud.moto_pid)


def active_legacy_clouds(engine: Engine) -> set[str]:
    """Cloud IDs of containers an older stamp started (no state label): their images may still be in use."""
    ids = engine.run(
        ["ps", "--all", "--quiet", "--filter", f"label={LABEL}=1"], what="listing containers", check=False, echo=False
    ).stdout.split()
    if not ids:
        return set()
    done = engine.run(["container", "inspect", *ids], what="inspecting containers", check=False, echo=False)
    try:
        data = json.loads(done.stdout or "[]")
    except ValueError:
        data = []
    labels = [(item.get("Config") or {}).get("Labels") or {} for item in data]
    return {str(label.get(CLOUD_LABEL, "")) for label in labels if STATE_LABEL not in label}


def images_to_remove(images: Sequence[StampImage], root: Path, legacy_active: set[str], *, now: datetime) -> list[str]:
    """The names `down` removes for the local cloud in `root`: every image it made, in any of its lives; images of
    local clouds that are gone; and what an older stamp left, unless a cloud of that stamp may still use it.

    Seeded AMIs have a name per cloud (SEED_REPO/<cloud id>), so one cloud's `down` never takes another's.
    """
    this = cloud_id(root)
    doomed: list[str] = []
    for image in images:
        labels = image.labels
        owner = labels.get(CLOUD_LABEL, "")
        if image.ref.startswith(f"{SEED_REPO}/"):
            if image.ref.startswith(f"{SEED_REPO}/{this}:"):
                doomed.append(image.ref)
        elif owner == this:
            doomed.append(image.ref)
        elif STATE_LABEL in labels:
            if not _life_is_running(Path(labels[STATE_LABEL]), labels.get(LIFE_LABEL, "")):
                doomed.append(image.ref)
        elif legacy_active and (not labels or owner in legacy_active):
            continue  # an older stamp's cloud has containers: it may launch these
        elif not labels or (image.created is not None and now - image.created > LEGACY_IMAGE_AGE):
            # An older stamp's name for a seed (on its base image: no labels), or an image it committed.
            doomed.append(image.ref)
    return doomed
