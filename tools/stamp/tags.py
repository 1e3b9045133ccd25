"""Every tag stamp writes on cloud resources, and what each one means (docs/custody.md has the table)."""

from __future__ import annotations

# On everything a build creates (Packer's run_tags, tags and snapshot_tags; stamp's own key pair and group):
# how the janitor finds what a killed build left, and how record knows an AMI is the result's.
BUILD_ID_TAG = "stamp:build-id"
# Every AMI a build registers names its image: how publish finds the AMIs of an image that left the catalog.
IMAGE_TAG = "stamp:image"
# The vendor or parent AMI Packer started from, as Packer itself resolved it.
SOURCE_AMI_TAG = "stamp:source-ami"
# The image's catalog description, on its AMIs and snapshots (Packer's `tags`): for people. Not the AMI's own
# Description, which Packer sets with ModifyImageAttribute, a call the build role may not make (iam/build.json).
DESCRIPTION_TAG = "stamp:description"
# Set by `stamp verify` on every AMI of a build whose tests passed; `stamp record` refuses AMIs without it.
VERIFIED_TAG = "stamp:verified"
VERIFIED = "passed"
# Set by `stamp revoke` on every AMI of a revoked release; `stamp publish` refuses to share an AMI that has it,
# whatever the catalog says, so reverting the catalog does not undo a revocation.
REVOKED_TAG = "stamp:revoked"
# Written on every AMI prune deprecates. It is stamp's grace clock on AWS too (one tag read from the
# DescribeImages answer prune makes anyway), and the only deprecation mark where the endpoint has no
# EnableImageDeprecation (moto answers HTTP 500).
DEPRECATED_AT_TAG = "stamp:deprecated-at"
# The release events delivered to every notification target (docs/events.md), on the release's AMI in its first
# region: event keys separated by commas (`recorded,published,promoted:stable`), added only after a delivery, so
# `stamp publish` delivers whatever is missing (at least once). A list longer than TAG_VALUE_MAX goes on in
# `stamp:notified-2`, `stamp:notified-3`, and so on.
NOTIFIED_TAG = "stamp:notified"
# EC2 tag values hold at most 256 characters.
TAG_VALUE_MAX = 256


def run_tags(image: str, build_id: str) -> dict[str, str]:
    """The tags the Packer template's `run_tags` put on what a build creates."""
    return {BUILD_ID_TAG: build_id, IMAGE_TAG: image}
