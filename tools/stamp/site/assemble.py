"""Every file of the site, from the view model: the pages, the feeds and the static assets."""

from __future__ import annotations

from stamp.site import assets, feeds, html, image_page
from stamp.site.lineage import Drawing, Node, lineage
from stamp.site.model import SiteModel

LINEAGE_TITLE = "Lineage of every image: parents point to their children"


def lineage_nodes(model: SiteModel) -> list[Node]:
    return [Node(i.name, i.parent, len(i.ancestors), i.version_label, i.badges()[0].tone) for i in model.images]


def draw_lineage(model: SiteModel, *, dot: str | None = "dot") -> Drawing:
    """The index's lineage: one `dot` run for the whole catalog (or stamp's own drawing)."""
    return lineage(lineage_nodes(model), title=LINEAGE_TITLE, dot=dot)


def site_files(model: SiteModel, drawing: Drawing) -> dict[str, str]:
    """Relative path → text of every file of the site."""
    files = {
        "index.html": html.index_page(model, drawing),
        "index.json": feeds.index_json(model),
        "feed.atom": feeds.atom(model),
        "site.css": assets.STYLESHEET,
        "search.js": assets.SEARCH_SCRIPT,
        "favicon.svg": assets.ICON,
    }
    for image in model.images:
        files[image.page] = image_page.image_page(model, image)
    return files
