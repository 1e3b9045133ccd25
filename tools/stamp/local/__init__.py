"""The embedded local cloud: moto for the EC2 API, containers for instances, a Debian base image (SPEC §5)."""

from stamp.local.cloud import LocalCloud, aws_env, down, status, up
from stamp.local.containers import container_image_for
from stamp.local.instances import (
    Instance,
    commit,
    launch,
    list_instances,
    terminate,
    tie_image,
)
from stamp.local.seeds import SeedImage, seed_ami_id

__all__ = [
    "Instance",
    "LocalCloud",
    "SeedImage",
    "aws_env",
    "commit",
    "container_image_for",
    "down",
    "launch",
    "list_instances",
    "seed_ami_id",
    "status",
    "terminate",
    "tie_image",
    "up",
]
