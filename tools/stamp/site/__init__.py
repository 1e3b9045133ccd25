"""`stamp site`: the catalog as a static web site (docs/site.md).

model.py builds the view model from the catalog, pending.py reads a saved plan, lineage.py draws the lineage,
markup.py is the escaping template helper, html.py renders the frame every page shares and the index,
image_page.py the page of each image, feeds.py index.json and feed.atom, assets.py holds the stylesheet and the
search script, assemble.py puts every file together, and folder.py writes the folder.
"""
