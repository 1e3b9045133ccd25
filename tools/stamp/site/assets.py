"""The site's static files: the stylesheet, the search script and the icon, all served from the site itself."""

from __future__ import annotations

STYLESHEET = """\
:root { --ink: #111827; --muted: #4b5563; --line: #d1d5db; --head: #f3f4f6; --link: #1d4ed8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: #fff; }
header, main, footer { padding: 0.6rem 1.2rem; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.4rem 1.5rem;
  border-bottom: 1px solid var(--line); }
h1 { font-size: 1.35rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 0.4rem; }
h3 { font-size: 1rem; margin: 0; }
a { color: var(--link); }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.92em; }
.muted { color: var(--muted); }
.meta { color: var(--muted); font-size: 0.9rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.22rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
.images td { white-space: nowrap; }
.images td.desc { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 22rem; }
.images td.name { font-weight: 600; }
.depth-1 td.name { padding-left: 1.5rem; }
.depth-2 td.name { padding-left: 2.5rem; }
.depth-3 td.name { padding-left: 3.5rem; }
.badge { display: inline-block; padding: 0 0.45rem; border-radius: 0.7rem; font-size: 0.85rem; font-weight: 600;
  border: 1px solid currentColor; margin-right: 0.2rem; }
.tone-ok { background: #dcfce7; color: #14532d; }
.tone-warn { background: #fef3c7; color: #78350f; }
.tone-bad { background: #fee2e2; color: #7f1d1d; }
.tone-muted { background: #e5e7eb; color: #1f2937; }
.search { margin: 0.5rem 0; }
.search input { font: inherit; padding: 0.25rem 0.5rem; width: 18rem; border: 1px solid var(--muted);
  border-radius: 0.3rem; }
.lineage { overflow: auto; max-height: 80vh; border: 1px solid var(--line); padding: 0.5rem; }
.lineage svg { max-width: 100%; height: auto; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; margin: 0.5rem 0; }
.facts dt { font-weight: 600; }
.facts dd { margin: 0; }
.release { border: 1px solid var(--line); border-radius: 0.4rem; padding: 0.6rem 0.9rem; margin: 0.8rem 0; }
.release > header { padding: 0 0 0.3rem; border: 0; }
.amis { display: grid; grid-template-columns: repeat(auto-fill, minmax(19rem, 1fr)); gap: 0 1rem; margin: 0.3rem 0;
  padding: 0; list-style: none; }
ul.plain { margin: 0.2rem 0; padding-left: 1.2rem; }
"""

# Filters the images table by name as one types; the field stays hidden without JavaScript, and the table is
# complete either way.
SEARCH_SCRIPT = """\
"use strict";
(function () {
  var box = document.getElementById("search");
  var field = document.getElementById("search-field");
  var count = document.getElementById("search-count");
  if (!box || !field || !count) { return; }
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-image]"));
  box.hidden = false;
  field.addEventListener("input", function () {
    var wanted = field.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var hit = row.getAttribute("data-image").indexOf(wanted) !== -1;
      row.hidden = !hit;
      if (hit) { shown += 1; }
    });
    count.textContent = wanted ? shown + " of " + rows.length + " images" : "";
  });
}());
"""

ICON = """\
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1e3a8a"/>\
<path d="M4 11h8M4 8h8M4 5h8" stroke="#fff" stroke-width="1.6"/></svg>
"""
