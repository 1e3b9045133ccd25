"""The machine-readable side of the site: index.json (format 1, schema docs/site-index.schema.json) and
feed.atom (one entry per release, promotion and revocation). Both from the view model; docs/site.md."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from stamp.site.markup import Markup, fill, href
from stamp.site.model import ImageView, ReleaseView, SiteModel

INDEX_FORMAT = 1
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
# Entry and feed IDs are name-based UUIDs (RFC 4122 version 5) of what they describe, so they never change
# between two builds of the site.
_IDS = uuid.UUID("1b0c8a52-7c4e-5f0e-9a51-3d2f6a0b7e11")


def index_data(model: SiteModel) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "generated_at": model.generated_at,
        "security_updates_source": model.pending_source,
        "images": [_image(image) for image in model.images],
    }


def index_json(model: SiteModel) -> str:
    return json.dumps(index_data(model), ensure_ascii=False, separators=(",", ":")) + "\n"


def _image(image: ImageView) -> dict[str, Any]:
    share = image.share
    return {
        "name": image.name,
        "description": image.description,
        "page": image.page,
        "parent": image.parent,
        "children": list(image.children),
        "regions": list(image.regions),
        "share": {
            "accounts": list(share.accounts),
            "organizations": list(share.organizations),
            "organizational_units": list(share.organizational_units),
            "copy_accounts": list(share.copy_accounts),
            "public": share.public,
        },
        "channels": [
            {"name": c.name, "after": c.after, "soak_days": c.soak_days, "release": c.head} for c in image.channels
        ],
        "current": image.current.version if image.current else None,
        "age_days": image.age_days,
        "max_age_days": image.max_age_days,
        "security_updates": {
            "state": image.pending.state,
            "security": image.pending.security,
            "other": image.pending.other,
            "detail": image.pending.detail,
        },
        "status": [badge.label for badge in image.badges()],
        "releases": [_release(image, release) for release in image.releases],
    }


def _release(image: ImageView, release: ReleaseView) -> dict[str, Any]:
    return {
        "version": release.version,
        "status": release.status,
        "page": f"{image.page}#{release.anchor}",
        "built_at": release.built_at,
        "commit": release.commit,
        "build_id": release.build_id,
        "verified": release.verified,
        "amis": dict(release.amis),
        "source": {
            "image": release.source_image,
            "version": release.source_version,
            "amis": dict(release.source_amis),
        },
        "channels": dict(release.channels),
        "forced": dict(release.forced),
        "channel_heads": list(release.heads),
        "reason": release.reason,
        "revoke_at": release.revoke_at,
        "dirty": release.dirty,
        "sbom": {"uri": release.sbom_uri, "sha256": release.sbom_sha256} if release.sbom_uri else None,
        "packages": release.packages,
        "notes": release.notes.summary if release.notes else None,
    }


# -- feed.atom -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    key: str
    title: str
    updated: str
    page: str
    summary: str


def entries(model: SiteModel) -> list[Entry]:
    """Every release, promotion and revocation, newest first."""
    found: list[Entry] = []
    for image in model.images:
        for release in image.releases:
            found.extend(_entries(image, release))
    found.sort(key=lambda e: (e.updated, e.key), reverse=True)
    return found


def _entries(image: ImageView, release: ReleaseView) -> list[Entry]:
    name, version = image.name, release.version
    page = f"{image.page}#{release.anchor}"
    key = f"{name}:{version}:{release.build_id}"
    regions = ", ".join(region for region, _ in release.amis)
    built_from = (
        f"built from {release.source_image} v{release.source_version}" if release.source_image else "a root image"
    )
    found = [
        Entry(
            f"release:{key}",
            f"{name} v{version} released",
            release.recorded_at,
            page,
            f"{name} v{version} ({built_from}), build {release.build_id}, commit {release.commit}, built "
            f"{release.built_at}; AMIs in {regions}.",
        )
    ]
    forced = dict(release.forced)
    for channel, at in release.channels[1:]:
        why = f" before its soak time: {forced[channel]}" if channel in forced else ""
        found.append(
            Entry(
                f"promotion:{key}:{channel}",
                f"{name} v{version} promoted to {channel}",
                at,
                page,
                f"{name} v{version} entered channel {channel} at {at}{why}.",
            )
        )
    if release.status == "revoked":
        # The catalog keeps when a scheduled revocation was due, not when a revocation was made.
        when = release.revoke_at or max([release.built_at, *(at for _, at in release.channels)])
        known = "" if release.revoke_at else " (the catalog does not record when; the time is the release's last)"
        found.append(
            Entry(
                f"revocation:{key}",
                f"{name} v{version} revoked",
                when,
                page,
                f"{name} v{version} was revoked{known}: {release.reason or 'no reason given'}.",
            )
        )
    return found


# Characters XML 1.0 does not allow, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

FEED = """\
<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="{ns}">
<id>{id}</id>
<title>Golden images: releases, promotions and revocations</title>
<updated>{updated}</updated>
<author><name>stamp</name></author>
<link rel="self" href="feed.atom"/>
<link rel="alternate" type="text/html" href="index.html"/>
{entries}</feed>
"""

ENTRY = """\
<entry>
<id>{id}</id>
<title>{title}</title>
<updated>{updated}</updated>
<link rel="alternate" type="text/html" href="{page}"/>
<summary>{summary}</summary>
</entry>
"""


def _uuid(key: str) -> str:
    return uuid.uuid5(_IDS, key).urn


def atom(model: SiteModel) -> str:
    found = entries(model)
    roots = ",".join(sorted(image.name for image in model.images if image.parent is None))
    body = Markup(
        "".join(
            fill(
                ENTRY,
                id=_uuid(entry.key),
                title=_xml(entry.title),
                updated=entry.updated,
                page=href(entry.page),
                summary=_xml(entry.summary),
            )
            for entry in found
        )
    )
    return str(
        fill(
            FEED,
            ns=ATOM_NAMESPACE,
            id=_uuid(f"feed:{roots}"),
            updated=found[0].updated if found else model.generated_at,
            entries=body,
        )
    )


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
