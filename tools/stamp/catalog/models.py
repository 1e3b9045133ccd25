"""The catalog file's shape as pydantic models: the single source for validation and the JSON Schema."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

# Packer's amazon-ebs builder and its provisioners run every string they get through Go's text/template (the
# description and tags even twice), after HCL is done with it: `{{ pwd }}` in a description would publish the
# build machine's path, and no escape survives two renders. Text without `{{` passes through unchanged.
GO_TEMPLATE_OPEN = "{{"


def no_go_template(value: str) -> str:
    """Refuse `{{` in a string that reaches Packer (validation names the file, line and key)."""
    if GO_TEMPLATE_OPEN in value:
        raise PydanticCustomError(
            "go_template",
            "contains '{{', which Packer would run as a Go template action; remove the double brace (no escape "
            "survives Packer's rendering)",
        )
    return value


# Catalog strings that Packer receives, through the generated variables file.
PackerText = Annotated[str, AfterValidator(no_go_template)]

AccountId = Annotated[
    str,
    Field(strict=True, description="AWS account ID: a quoted string of exactly 12 digits"),
    StringConstraints(pattern=r"^[0-9]{12}$"),
]
OrganizationArn = Annotated[
    str,
    StringConstraints(pattern=r"^arn:aws:organizations::[0-9]{12}:organization/o-[a-z0-9]{10,32}$"),
]
OrganizationalUnitArn = Annotated[
    str,
    StringConstraints(
        pattern=r"^arn:aws:organizations::[0-9]{12}:ou/o-[a-z0-9]{10,32}/ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$"
    ),
]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")]
AmiId = Annotated[str, StringConstraints(pattern=r"^ami-[0-9a-f]{8,17}$")]
ImageName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
RepoPath = Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(no_go_template)]
# Only `true`/`false`: pydantic would otherwise read the strings `yes`, `on`, `NO`, `0` as booleans, the very
# YAML 1.1 surprise the loader keeps out (`public: yes` must not mean public).
Flag = Annotated[bool, Field(strict=True)]
# S3 bucket names (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html), less the
# rarer rules (no `..`, not an IP address) that S3 itself enforces when the bucket is made.
BucketName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
KeyPrefix = Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$", max_length=512)]
S3Uri = Annotated[str, StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9_./-]+$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# Owners of vendor images: account IDs, or the aliases AWS accepts (amazon, aws-marketplace, self).
Owner = Annotated[str, Field(strict=True), StringConstraints(pattern=r"^([0-9]{12}|amazon|aws-marketplace|self)$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceFilter(Model):
    name: Annotated[PackerText, StringConstraints(min_length=1, max_length=128)] = Field(
        description="AMI name pattern, as in DescribeImages' name filter (wildcards * and ?)"
    )
    owners: list[Owner] = Field(min_length=1, description="Account IDs (quoted) or amazon/aws-marketplace")


class Source(Model):
    filter: SourceFilter


UpdatePolicy = Literal["security", "all", "never"]


class Rebuild(Model):
    max_age_days: int | None = Field(default=None, ge=1, le=3650)
    on_new_source: Flag = False
    on_updates: UpdatePolicy = Field(
        default="security",
        description="Which pending package updates of the current release make `stamp plan` rebuild it"
        " (docs/inventory.md, Updates available)",
    )


class VerifyPolicy(Model):
    max_security_updates: int | None = Field(
        default=0,
        ge=0,
        description="Security updates an image may still have pending when verified; more fails verification (exit 4)."
        " null: not checked",
    )


class Retention(Model):
    keep: int = Field(default=3, ge=1, le=100, description="Releases kept launchable")
    grace_days: int = Field(default=14, ge=0, le=3650, description="Days deprecated before deregistration")


class Share(Model):
    accounts: list[AccountId] = []
    organizations: list[OrganizationArn] = []
    organizational_units: list[OrganizationalUnitArn] = []
    copy_accounts: list[AccountId] = Field(
        default=[],
        description="Accounts that copy the image into their own account; only these get snapshot permissions",
    )
    public: Flag = Field(default=False, description="Share with everyone; also needs defaults.allow_public")


class Artifacts(Model):
    """Where `stamp record` stores each release's inventory and SBOM: s3://BUCKET/PREFIX/<image>/<version>/."""

    bucket: BucketName = Field(description="An S3 bucket the account already has (created only on the local cloud)")
    prefix: KeyPrefix = Field(default="", description="Key prefix without leading or trailing slash, e.g. stamp/sbom")

    def folder(self, image: str, version: int) -> str:
        """The key prefix of one release's objects, ending in a slash."""
        return "/".join(part for part in (self.prefix, image, str(version)) if part) + "/"


class Consumers(Model):
    """How stamp reaches the accounts it shares with (docs/rollout.md, Consumer accounts)."""

    role: Annotated[
        str, StringConstraints(pattern=r"^arn:aws[a-z-]*:iam::\{account\}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
    ] = Field(description="The role to assume in each account, with {account} where its ID goes")


class SbomRef(Model):
    uri: S3Uri = Field(description="The SBOM's S3 URI; packages.json sits beside it")
    sha256: Sha256 = Field(description="SHA-256 of the SBOM as uploaded (hex)")


ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
UtcTime = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")]


class Channel(Model):
    """One rollout channel (docs/rollout.md): releases enter the first one when recorded, later ones by promotion."""

    after: ChannelName | None = Field(
        default=None, description="The channel a release must be in first; every channel but the first names one"
    )
    soak_days: int = Field(default=0, ge=0, le=3650, description="Days a release stays in `after` before promotion")


def check_channels(channels: dict[str, Channel] | None) -> dict[str, Channel] | None:
    """An ordered mapping: the first channel is where releases enter (no `after`); each later one comes after an
    earlier one."""
    if channels is None:
        return None
    if not channels:
        raise PydanticCustomError("channels", "name at least one channel, e.g. {candidate: {}}, or leave it out")
    names = list(channels)
    for index, (name, channel) in enumerate(channels.items()):
        if index == 0 and (channel.after is not None or channel.soak_days):
            raise PydanticCustomError(
                "channels",
                "the first channel, '{name}', is where recorded releases enter: it takes no `after` or `soak_days`",
                {"name": name},
            )
        if index > 0 and channel.after not in names[:index]:
            raise PydanticCustomError(
                "channels",
                "channel '{name}' needs `after:` naming a channel listed before it ({earlier})",
                {"name": name, "earlier": ", ".join(names[:index])},
            )
    return channels


Channels = Annotated[dict[ChannelName, Channel], AfterValidator(check_channels)]

# Notifications (docs/events.md). Standard SNS topics only: a FIFO topic would need a message group per publish.
SnsTopicArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")
]
EventBusName = Annotated[
    str,
    StringConstraints(
        pattern=r"^([A-Za-z0-9._-]{1,256}|arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/[A-Za-z0-9._/-]{1,256})$"
    ),
]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
# Loopback hosts, the only ones a webhook may reach over plain http: a signed body still travels in clear text.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def https_or_loopback(url: str) -> str:
    """A webhook URL: https, or http to this machine only (a test receiver)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        host = None
    if host and (parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS)):
        return url
    raise PydanticCustomError(
        "webhook_url", "a webhook URL must start with https:// (plain http only to 127.0.0.1 or localhost)"
    )


WebhookUrl = Annotated[
    str, StringConstraints(min_length=9, max_length=2048, pattern=r"^\S+$"), AfterValidator(https_or_loopback)
]


class EventBridge(Model):
    bus: EventBusName = Field(
        default="default",
        description="An event bus name, in the first of defaults.regions, or an event bus ARN (its own region)",
    )


class Webhook(Model):
    url: WebhookUrl = Field(description="Where events are POSTed as JSON: https (http only to loopback)")
    secret_env: EnvName = Field(
        description="The environment variable holding the HMAC-SHA256 secret that signs each body"
        " (X-Stamp-Signature); read at delivery time"
    )


class Notify(Model):
    """Where stamp announces release events (docs/events.md); every target gets every event."""

    sns: list[SnsTopicArn] = Field(default=[], description="SNS topic ARNs, each published to in its own region")
    eventbridge: EventBridge | None = Field(default=None, description="An EventBridge bus, e.g. {bus: default}")
    webhooks: list[Webhook] = Field(default=[], description="HTTP endpoints, each body signed with its secret")


class Defaults(Model):
    regions: list[Region] = Field(default=["us-east-1"], min_length=1)
    instance_type: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+\.[a-z0-9]+$")] = "t3.micro"
    ssh_username: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "admin"
    volume_size_gb: int = Field(default=8, ge=1, le=16384)
    retention: Retention = Retention()
    rebuild: Rebuild = Rebuild()
    allow_public: Flag = Field(default=False, description="Catalog-wide permission for images with public: true")
    artifacts: Artifacts | None = Field(
        default=None, description="S3 location for each release's inventory and SBOM; without it they stay in build/"
    )
    consumers: Consumers | None = Field(
        default=None,
        description="A role in each account images are shared with: publish keeps the parameters there too, usage"
        " and prune look there for users",
    )
    verify: VerifyPolicy = VerifyPolicy()
    apt_keyrings: list[RepoPath] = Field(
        default=["/usr/share/keyrings/debian-archive-keyring.gpg"],
        min_length=1,
        description="Binary OpenPGP keyrings that sign the images' apt repositories (paths from the catalog's folder)",
    )
    channels: Channels | None = Field(
        default=None,
        description="Rollout channels in order, e.g. {candidate: {}, stable: {after: candidate, soak_days: 7}}; "
        "recorded releases enter the first (docs/rollout.md)",
    )
    notify: Notify | None = Field(
        default=None,
        description="Release events to SNS topics, an EventBridge bus and webhooks, e.g. {sns: [arn:aws:sns:…]} "
        "(docs/events.md)",
    )


class ImageSpec(Model):
    description: Annotated[PackerText, StringConstraints(max_length=255)] = ""
    source: Source | None = None
    parent: ImageName | None = None
    provision: list[RepoPath] = Field(default=[], description="Shell scripts run in order, as root")
    files: RepoPath | None = Field(default=None, description="Folder uploaded to /tmp/stamp-files first")
    tests: RepoPath | None = Field(default=None, description="Folder of testinfra tests run by stamp verify")
    share: Share = Share()
    # Per-image overrides of `defaults`.
    regions: list[Region] | None = Field(default=None, min_length=1)
    instance_type: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+\.[a-z0-9]+$")] | None = None
    ssh_username: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] | None = None
    volume_size_gb: int | None = Field(default=None, ge=1, le=16384)
    retention: Retention | None = None
    rebuild: Rebuild | None = None
    verify: VerifyPolicy | None = None
    channels: Channels | None = Field(default=None, description="This image's rollout channels instead of the default")


class ReleaseSource(Model):
    image: ImageName | None = None
    version: int | None = Field(default=None, ge=1)
    amis: dict[Region, AmiId] | None = None


class Release(Model):
    version: int = Field(ge=1)
    amis: dict[Region, AmiId] = Field(min_length=1)
    built_at: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")]
    commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{6,40}$")]
    build_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,127}$")]
    source: ReleaseSource
    verified: Literal["passed"]
    status: Literal["current", "previous", "deprecated", "revoked"]
    reason: str | None = Field(default=None, description="Why a release was revoked (or restored)")
    revoke_at: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")] | None = Field(
        default=None, description="A scheduled revocation: the first `stamp publish` at or after it applies it"
    )
    dirty: Flag = Field(default=False, description="Built from uncommitted changes (local cloud only)")
    sbom: SbomRef | None = Field(default=None, description="The release's CycloneDX SBOM in defaults.artifacts")
    packages: int | None = Field(default=None, ge=0, description="Packages in the release's inventory")
    channels: dict[ChannelName, UtcTime] | None = Field(
        default=None, description="When the release entered each rollout channel (`stamp record`, `stamp promote`)"
    )
    forced: dict[ChannelName, str] | None = Field(
        default=None, description="Channels entered before their soak time, with the reason given to --force"
    )


class CatalogFile(Model):
    """The whole `catalog.yaml`."""

    version: Literal[1]
    defaults: Defaults = Defaults()
    images: dict[ImageName, ImageSpec] = Field(min_length=1)
    releases: dict[ImageName, list[Release]] = {}
