"""The embedded local cloud: moto for the EC2 API, containers for instances, a Debian base image.

What it promises users is in the contract (docs/contract.md, Local cloud).
"""

from stamp.local.cloud import down, status, up
from stamp.local.containers import container_image_for
from stamp.local.credentials import aws_env
from stamp.local.instances import (
    Container,
    build_labels,
    commit,
    launch,
    list_instances,
    terminate,
    tie_image,
    user_data_kind,
)
from stamp.local.seeds import SeedImage, seed_ami_id
from stamp.local.state_file import LocalCloud

__all__ = [
    "Container",
    "LocalCloud",
    "SeedImage",
    "aws_env",
    "build_labels",
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
    "user_data_kind",
]
