"""The frame every page shares, and index.html: every image in one compact table, and the lineage. Every value
goes through site/markup.py, which escapes it; site/image_page.py renders the page of each image."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from stamp.site.lineage import Drawing
from stamp.site.markup import Markup, fill, join, link
from stamp.site.model import Badge, ImageView, SiteModel

# No request leaves the site: scripts, styles and images from the site itself only, nothing inline but the
# SVG drawings (which need no CSP source), no plugins, no <base>, no form submissions (docs/site.md, Security).
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"
# What an empty cell shows.
DASH = "\N{EN DASH}"
# Regions and lists shown in a table cell before "and N more"; the image page lists every one.
CELL_ITEMS = 3

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<link rel="stylesheet" href="{root}site.css">
<link rel="icon" href="{root}favicon.svg" type="image/svg+xml">
<link rel="alternate" href="{root}feed.atom" type="application/atom+xml" title="Releases, promotions and revocations">
{scripts}</head>
<body>
{body}
</body>
</html>
"""


def page(title: str, body: Markup, *, root: str = "", script: bool = False) -> str:
    scripts = fill('<script src="{src}" defer></script>\n', src=root + "search.js") if script else Markup("")
    return str(fill(PAGE, csp=CSP, title=title, root=root, scripts=scripts, body=body))


def badge(item: Badge) -> Markup:
    return fill('<span class="badge tone-{tone}">{label}</span>', tone=item.tone, label=item.label)


def badges(items: Iterable[Badge]) -> Markup:
    return join((badge(item) for item in items), " ")


def _some(items: Sequence[str], shown: int = CELL_ITEMS) -> str:
    if len(items) <= shown:
        return ", ".join(items) or DASH
    return f"{', '.join(items[:shown])} and {len(items) - shown} more"


def free_text(value: str) -> Markup:
    """Free text from the catalog (a description, a reason): isolated, so right-to-left text cannot reorder
    what is around it."""
    return fill('<bdi dir="auto">{value}</bdi>', value=value)


# -- index.html ----------------------------------------------------------------------------------------------------

INDEX_HEAD = """\
<header>
<h1>Golden images</h1>
<p class="meta">{images} images · {releases} releases · generated {generated} UTC</p>
<p class="meta"><a href="index.json">index.json</a> · <a href="feed.atom">feed.atom</a></p>
</header>
<main>
<div id="search" class="search" hidden>
<label for="search-field">Find an image by name</label>
<input id="search-field" type="search" autocomplete="off" spellcheck="false">
<span id="search-count" class="muted" role="status"></span>
</div>
<div class="table-wrap" role="region" aria-label="Images" tabindex="0">
<table class="images">
<thead><tr><th scope="col">Image</th><th scope="col">Description</th><th scope="col">Parent</th>\
<th scope="col">Current</th><th scope="col">Channels</th><th scope="col" class="num">Age (days / max)</th>\
<th scope="col">Security updates</th><th scope="col">Regions</th><th scope="col">Shared with</th>\
<th scope="col">Status</th></tr></thead>
<tbody>
"""

INDEX_ROW = (
    '<tr data-image="{name}" class="depth-{depth}"><td class="name">{link}</td><td class="desc">{description}</td>'
    '<td>{parent}</td><td>{current}</td><td>{channels}</td><td class="num">{age}</td><td>{pending}</td>'
    "<td>{regions}</td><td>{share}</td><td>{status}</td></tr>\n"
)

INDEX_TAIL = """\
</tbody>
</table>
</div>
<section aria-labelledby="lineage">
<h2 id="lineage">Lineage</h2>
<p class="meta">Parents point to their children; {how}.</p>
<div class="lineage" role="region" aria-label="Lineage graph" tabindex="0">
{svg}
</div>
</section>
<section aria-labelledby="about-data">
<h2 id="about-data">About this page</h2>
<p>Security updates: {pending}. Age counts whole days since the current release was built, against
rebuild.max_age_days. Made by <code>stamp site</code> from catalog.yaml; it asks no other host for anything.</p>
</section>
</main>
"""


def index_page(model: SiteModel, drawing: Drawing) -> str:
    parts = [
        fill(
            INDEX_HEAD,
            images=len(model.images),
            releases=model.release_count,
            generated=model.generated_at.replace("T", " ").removesuffix("Z"),
        )
    ]
    parts += [_index_row(image) for image in model.images]
    parts.append(fill(INDEX_TAIL, how=drawing.how, svg=drawing.svg, pending=model.pending_source))
    return page("Golden images", Markup("".join(parts)), script=True)


def _index_row(image: ImageView) -> Markup:
    current = image.current
    return fill(
        INDEX_ROW,
        name=image.name,
        depth=min(len(image.ancestors), 3),
        link=link(image.page, image.name),
        description=free_text(image.description),
        parent=link(f"images/{image.parent}.html", image.parent) if image.parent else DASH,
        current=link(f"{image.page}#{current.anchor}", f"v{current.version}") if current else Markup("none"),
        channels=_channels_cell(image),
        age=_age(image),
        pending=_pending_cell(image),
        regions=_some(image.regions),
        share=image.share.summary(),
        status=badges(image.badges()),
    )


def _channels_cell(image: ImageView) -> str:
    if not image.channels:
        return DASH
    return ", ".join(f"{c.name} v{c.head}" if c.head else f"{c.name} {DASH}" for c in image.channels)


def _age(image: ImageView) -> str:
    if image.age_days is None:
        return DASH
    return f"{image.age_days} / {image.max_age_days}" if image.max_age_days else str(image.age_days)


def _pending_cell(image: ImageView) -> Markup:
    pending = image.pending
    if pending.state == "pending":
        return badge(Badge(f"{pending.security} security", "bad"))
    if pending.state == "none":
        return fill('<span class="muted">{text}</span>', text="none found")
    return fill('<span class="muted">{text}</span>', text="not checked")
