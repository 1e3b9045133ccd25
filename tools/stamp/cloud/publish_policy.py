"""What the catalog asks publish to make true, before any cloud call: the SSM parameters' names, each image's
launch and copy shares (with the policy checks on them), one release AMI's wanted state in a region, and the diff
from what is there."""

from __future__ import annotations

from dataclasses import dataclass

from stamp.catalog.load import Image
from stamp.cloud.protocol import ShareDiff, ShareSet
from stamp.errors import CatalogError, PolicyError

# EC2 refuses more than 1,000 launch-permission entities per AMI and region (an org or OU counts as one):
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html
MAX_SHARE_ENTITIES = 1000

LAUNCHABLE = frozenset({"current", "previous", "deprecated"})

# The status publish gives the AMIs of an image no longer under `images:`: they lose every permission.
REMOVED = "removed"


def parameter_name(image: str) -> str:
    return f"/stamp/{image}/current"


def channel_parameter_name(image: str, channel: str) -> str:
    """The parameter consumers of one rollout channel follow (docs/rollout.md)."""
    return f"/stamp/{image}/channel/{channel}"


def desired_share(image: Image, *, allow_public: bool) -> ShareSet:
    """The launch permissions the catalog asks for; public only with both the image's and the catalog's consent."""
    share = image.share
    if share.public and not allow_public:
        raise PolicyError(
            f"image '{image.name}' asks for public sharing (share.public: true), but defaults.allow_public is not true",
            hint="public images need both settings, so the change is visible in review; remove share.public or "
            "set defaults.allow_public: true in catalog.yaml",
        )
    # Copying a shared AMI needs launch permission as well as snapshot access, so copy_accounts get both:
    # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/CopyingAMIs.html#copy-ami-permissions
    desired = ShareSet(
        accounts=frozenset(share.accounts) | frozenset(share.copy_accounts),
        organizations=frozenset(share.organizations),
        organizational_units=frozenset(share.organizational_units),
        public=share.public,
    )
    if len(desired) > MAX_SHARE_ENTITIES:
        raise CatalogError(
            f"image '{image.name}' is shared with {len(desired)} targets; EC2 allows {MAX_SHARE_ENTITIES} per AMI",
            hint="share with an organization or OU instead of listing accounts one by one",
        )
    return desired


def desired_copy_share(image: Image) -> ShareSet:
    """Snapshot createVolumePermission: only the accounts that copy the image into their own account."""
    return ShareSet(accounts=frozenset(image.share.copy_accounts))


def plan_share(current: ShareSet, desired: ShareSet) -> ShareDiff:
    return ShareDiff(add=desired.minus(current), remove=current.minus(desired))


@dataclass(frozen=True)
class ShareTarget:
    image: str
    version: int
    status: str
    region: str
    ami_id: str
    launch: ShareSet
    copy: ShareSet
    parameter: str | None
    # The channel parameters that name this release (channel_parameter_name).
    channels: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.image} v{self.version} in {self.region}"

    @property
    def shared(self) -> bool:
        """Whether anyone outside the account is to get access: only then does the snapshots' key matter."""
        return bool(self.launch or self.copy)
