"""`stamp site` for the 1,000-image benchmark catalog: load it, build the view model, one `dot` run for the
whole lineage, every page and feed, and the folder written. bench/run.py's bench_site times it against a C parse
of the catalog; `python bench/site_bench.py` measures it on its own."""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from stamp.catalog.load import load_catalog
from stamp.commands.site import notes_lookup
from stamp.site.assemble import draw_lineage, site_files
from stamp.site.folder import write_site
from stamp.site.model import build_model

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def generate(catalog_path: Path, out: Path, *, dot: str | None = "dot") -> str:
    """What `stamp site --out OUT` does, without the command line; returns how the lineage was drawn."""
    catalog = load_catalog(catalog_path)
    model = build_model(catalog, now=NOW, notes=notes_lookup(catalog, out.parent / "build"))
    drawing = draw_lineage(model, dot=dot)
    write_site(out, site_files(model, drawing))
    return drawing.how


def check(out: Path, images: int) -> int:
    """The site is all there: an index, a page per image; returns its size in bytes."""
    pages = list((out / "images").glob("*.html"))
    assert len(pages) == images, f"{len(pages)} image pages, not {images}"
    assert (out / "index.html").is_file() and (out / "index.json").is_file() and (out / "feed.atom").is_file()
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def main() -> int:
    from gen_catalog import generate_catalog
    from run import RELEASES, c_parse, interleaved

    with tempfile.TemporaryDirectory() as tmp:
        catalog_path = generate_catalog(Path(tmp) / "big", releases=RELEASES)
        out = Path(tmp) / "site"
        how = generate(catalog_path, out)
        size = check(out, 1000)
        site_s, c_parse_s = interleaved(lambda: generate(catalog_path, out), c_parse(catalog_path.read_text()))
    print(f"stamp site {site_s:.2f}s ({how}, {size / 1e6:.1f} MB), CSafeLoader parse {c_parse_s:.2f}s")
    print(f"ratio {site_s / c_parse_s:.2f} (target <= 1.0)")
    return 0 if site_s <= c_parse_s else 1


if __name__ == "__main__":
    sys.exit(main())
