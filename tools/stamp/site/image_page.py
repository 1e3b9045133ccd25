"""images/<name>.html: one image, its releases newest first, with AMIs, channels, SBOM and release notes. Every
value goes through site/markup.py, which escapes it."""

from __future__ import annotations

from collections.abc import Sequence

from stamp.site.html import badge, badges, free_text, page
from stamp.site.lineage import Node, tree_svg
from stamp.site.markup import Markup, fill, join, link
from stamp.site.model import Badge, ImageView, Notes, ReleaseView, SiteModel, Tone

# Package lines shown per list of a release's notes; index.json and `stamp notes` have every one.
NOTES_ITEMS = 60

IMAGE_HEAD = """\
<header>
<p class="meta"><a href="../index.html">All images</a></p>
<h1>{name}</h1>
<p>{description}</p>
<p>{badges}</p>
</header>
<main>
<section aria-labelledby="about">
<h2 id="about">About</h2>
<dl class="facts">
<dt>Parent</dt><dd>{parent}</dd>
<dt>Children</dt><dd>{children}</dd>
<dt>Regions</dt><dd>{regions}</dd>
<dt>Shared with</dt><dd>{share}</dd>
<dt>Channels</dt><dd>{channels}</dd>
<dt>Current release</dt><dd>{current}</dd>
<dt>Security updates</dt><dd>{pending}</dd>
</dl>
</section>
<section aria-labelledby="lineage">
<h2 id="lineage">Lineage</h2>
<div class="lineage" role="region" aria-label="Lineage of {name}" tabindex="0">
{svg}
</div>
</section>
<section aria-labelledby="releases">
<h2 id="releases">Releases ({count}, newest first)</h2>
"""

IMAGE_TAIL = """\
</section>
<section aria-labelledby="usage">
<h2 id="usage">Who uses it</h2>
<p>Usage data is not available: stamp does not yet collect which accounts launch this image.</p>
</section>
</main>
"""


def image_page(model: SiteModel, image: ImageView) -> str:
    parts = [
        fill(
            IMAGE_HEAD,
            name=image.name,
            description=free_text(image.description) if image.description else Markup("(no description)"),
            badges=badges(image.badges()),
            parent=link(f"{image.parent}.html", image.parent) if image.parent else "none: built from a vendor image",
            children=join((link(f"{c}.html", c) for c in image.children), ", ") or "none",
            regions=", ".join(image.regions),
            share=_share(image),
            channels=_channels(image),
            current=_current(image),
            pending=_pending_detail(model, image),
            svg=_own_lineage(model, image),
            count=len(image.releases),
        )
    ]
    if not image.releases:
        parts.append(Markup("<p>No release yet.</p>\n"))
    parts += [_release(model, image, release) for release in image.releases]
    parts.append(Markup(IMAGE_TAIL))
    return page(f"{image.name} · golden images", Markup("".join(parts)), root="../")


def _pending_detail(model: SiteModel, image: ImageView) -> str:
    if image.pending.detail == "not checked":  # the plan says nothing of it: say why
        return model.pending_source
    return f"{image.pending.detail} ({model.pending_source})"


def _share(image: ImageView) -> Markup:
    share = image.share
    rows = [
        (label, values)
        for label, values in (
            ("accounts", share.accounts),
            ("organizations", share.organizations),
            ("organizational units", share.organizational_units),
            ("accounts that copy it", share.copy_accounts),
        )
        if values
    ]
    items = [fill("<li>{label}: {values}</li>", label=label, values=", ".join(values)) for label, values in rows]
    if share.public:
        items.insert(0, Markup("<li>everyone (public)</li>"))
    if not items:
        return Markup("nobody")
    return fill('<ul class="plain">{items}</ul>', items=join(items))


def _channels(image: ImageView) -> Markup | str:
    if not image.channels:
        return "none (every release is current at once)"
    items = []
    for channel in image.channels:
        rule = f" (after {channel.after}, {channel.soak_days} days soak)" if channel.after else ""
        points = link(f"#v{channel.head}", f"v{channel.head}") if channel.head else Markup("no good release in it")
        items.append(fill("<li>{name}{rule}: {points}</li>", name=channel.name, rule=rule, points=points))
    return fill('<ul class="plain">{items}</ul>', items=join(items))


def _current(image: ImageView) -> Markup | str:
    current = image.current
    if current is None:
        return "none"
    limit = f", rebuilt after {image.max_age_days} days" if image.max_age_days else ""
    return fill(
        "{link}, built {built} ({age} days ago{limit})",
        link=link(f"#{current.anchor}", f"v{current.version}"),
        built=current.built_at,
        age=image.age_days,
        limit=limit,
    )


def _own_lineage(model: SiteModel, image: ImageView) -> Markup:
    chain = [model.image(name) for name in [*reversed(image.ancestors), image.name]]
    nodes = [
        Node(i.name, chain[index - 1].name if index else None, index, i.version_label, i.badges()[0].tone)
        for index, i in enumerate(chain)
    ]
    nodes += [
        Node(c.name, image.name, len(chain), c.version_label, c.badges()[0].tone)
        for c in (model.image(name) for name in image.children)
    ]
    return tree_svg(nodes, title=f"Lineage of {image.name}: its ancestors and children", focus=image.name)


STATUS_TONES: dict[str, Tone] = {"current": "ok", "previous": "muted", "deprecated": "warn", "revoked": "bad"}

RELEASE = """\
<article class="release" id="{anchor}">
<header><h3>v{version} {status}{heads}</h3>
<span class="meta">built {built} · commit <code>{commit}</code> · build <code>{build_id}</code></span></header>
<dl class="facts">
<dt>Verification</dt><dd>{verified}</dd>
<dt>Built from</dt><dd>{source}</dd>
<dt>Channels</dt><dd>{channels}</dd>
{extra}<dt>SBOM</dt><dd>{sbom}</dd>
</dl>
<h4>AMIs ({ami_count} regions)</h4>
<ul class="amis">{amis}</ul>
{notes}</article>
"""


def _release(model: SiteModel, image: ImageView, release: ReleaseView) -> Markup:
    extra = []
    if release.reason:
        label = "Revoked" if release.status == "revoked" else "Reason"
        extra.append(fill("<dt>{label}</dt><dd>{reason}</dd>\n", label=label, reason=free_text(release.reason)))
    if release.revoke_at and release.status != "revoked":
        extra.append(fill("<dt>Revocation scheduled</dt><dd>{at}</dd>\n", at=release.revoke_at))
    if release.dirty:
        extra.append(Markup("<dt>Dirty</dt><dd>built from uncommitted changes (local cloud)</dd>\n"))
    heads = (
        fill(' <span class="meta">· {names}</span>', names="channel " + ", ".join(release.heads))
        if release.heads
        else ""
    )
    return fill(
        RELEASE,
        anchor=release.anchor,
        version=release.version,
        status=badge(Badge(release.status, STATUS_TONES.get(release.status, "muted"))),
        heads=heads,
        built=release.built_at,
        commit=release.commit,
        build_id=release.build_id,
        verified=release.verified,
        source=_source(model, release),
        channels=_entered(release),
        extra=join(extra),
        sbom=_sbom(release),
        ami_count=len(release.amis),
        amis=join(
            fill('<li><span class="mono">{region}</span> <code>{ami}</code></li>', region=region, ami=ami)
            for region, ami in release.amis
        ),
        notes=_notes(release),
    )


def _source(model: SiteModel, release: ReleaseView) -> Markup | str:
    if release.source_image:
        parent = model.by_name.get(release.source_image)
        text = f"{release.source_image} v{release.source_version}"
        known = parent is not None and any(r.version == release.source_version for r in parent.releases)
        return link(f"{release.source_image}.html#v{release.source_version}", text) if known else text
    if release.source_amis:
        return "vendor image " + ", ".join(f"{region} {ami}" for region, ami in release.source_amis)
    return "unknown"


def _entered(release: ReleaseView) -> Markup | str:
    if not release.channels:
        return "none"
    forced = dict(release.forced)
    items = []
    for name, at in release.channels:
        why = fill(" (before its soak time: {reason})", reason=free_text(forced[name])) if name in forced else ""
        items.append(fill("{name} since {at}{why}", name=name, at=at, why=why))
    return join(items, "; ")


def _sbom(release: ReleaseView) -> Markup | str:
    if release.sbom_uri is None:
        return "not stored (recorded without defaults.artifacts)"
    # An s3:// URI is shown as text, never as a link: browsers cannot open it, and the site links only to itself.
    packages = f", {release.packages} packages" if release.packages is not None else ""
    return fill(
        "<code>{uri}</code> (sha256 <code>{sha}</code>){packages}",
        uri=release.sbom_uri,
        sha=release.sbom_sha256,
        packages=packages,
    )


def _notes(release: ReleaseView) -> Markup:
    notes = release.notes
    if notes is None:
        return fill('<p class="muted">No release notes: {why}.</p>\n', why=release.no_notes)
    return fill(
        "<details><summary>Release notes: {summary}</summary>\n{body}</details>\n",
        summary=notes.summary,
        body=_notes_body(notes),
    )


def _notes_body(notes: Notes) -> Markup:
    parts: list[Markup] = []
    kernel = (
        f"{notes.kernel_from} → {notes.kernel_to}"
        if notes.kernel_from and notes.kernel_from != notes.kernel_to
        else notes.kernel_to or "unknown"
    )
    parts.append(fill("<p>Kernel: <code>{kernel}</code></p>\n", kernel=kernel))
    if notes.upgraded:
        rows = [
            fill("<tr><td>{name}</td><td>{old}</td><td>{new}</td></tr>", name=u.name, old=u.old, new=u.new)
            for u in notes.upgraded[:NOTES_ITEMS]
        ]
        parts.append(
            fill(
                '<table><caption>Upgraded ({count})</caption><thead><tr><th scope="col">package</th>'
                '<th scope="col">from</th><th scope="col">to</th></tr></thead><tbody>{rows}</tbody></table>\n',
                count=len(notes.upgraded),
                rows=join(rows),
            )
        )
        parts.append(_more(len(notes.upgraded)))
    for title, items in (
        ("Downgraded", [f"{u.name} {u.old} → {u.new}" for u in notes.downgraded]),
        ("Added", list(notes.added) if notes.previous is not None else []),
        ("Removed", list(notes.removed)),
        ("CVEs fixed", [f"{c.id} ({c.source} {c.version})" for c in notes.cves]),
    ):
        if items:
            parts.append(_list(f"{title} ({len(items)})", items))
    if notes.unread:
        parts.append(
            fill(
                "<p>Changelogs not read back to the previous version (CVEs they fixed may be missing): {names}</p>\n",
                names=", ".join(notes.unread),
            )
        )
    return join(parts)


def _list(title: str, items: Sequence[str]) -> Markup:
    shown = join(fill("<li>{item}</li>", item=item) for item in items[:NOTES_ITEMS])
    return Markup(
        fill('<h5>{title}</h5><ul class="plain">{items}</ul>\n', title=title, items=shown) + _more(len(items))
    )


def _more(count: int) -> Markup:
    if count <= NOTES_ITEMS:
        return Markup("")
    return fill('<p class="muted">and {rest} more (see <code>stamp notes</code>)</p>\n', rest=count - NOTES_ITEMS)
