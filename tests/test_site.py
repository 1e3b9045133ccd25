"""`stamp site`: the catalog as a static web site (docs/site.md), from the repository's catalog with releases
added and from a hostile one. Every value escaped, index.json valid against docs/site-index.schema.json,
feed.atom valid Atom, no address of another host, every relative link resolving to a file of the site."""

from __future__ import annotations

import html
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from builders import AMIS, release_entry, with_releases
from stamp import clock
from stamp.catalog import inventory as inv
from stamp.catalog.models import Release
from stamp.cli import main
from stamp.site.folder import MARKER
from stamp.site.html import DASH
from stamp.site.lineage import Node, lineage, sanitize
from stamp.site.markup import esc, href, link
from test_inventory import OPENSSL_CHANGELOG, inventory

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "docs" / "site-index.schema.json"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CHANNELS = "  channels:\n    candidate: {}\n    stable: {after: candidate, soak_days: 7}\n"
SBOM = {"uri": "s3://example-stamp-artifacts/golden-images/base/2/sbom.cdx.json", "sha256": "ab" * 32}
ATOM = "{http://www.w3.org/2005/Atom}"


def release(image: str, version: int, status: str, **changes: Any) -> Release:
    """A release of `image` as `stamp record` writes it; `changes` override (built_at, channels, source…)."""
    entry = release_entry(version, dict(AMIS), status) | {"build_id": f"{image}-{version}-abcdef"}
    if image == "base":
        entry["source"] = {"amis": {"us-east-1": "ami-0aaaaaaaaaaaaaaaa"}}
    return Release.model_validate(entry | changes)


def catalog_with_releases(head: str, releases: dict[str, list[Release]]) -> str:
    """`head` with rollout channels under defaults and these releases."""
    return with_releases(head.replace("defaults:", "defaults:\n" + CHANNELS.rstrip("\n"), 1), releases)


def repository_catalog() -> str:
    """The repository's catalog.yaml with channels and releases: base v2 current (v1 stable), web v3 current
    (forced into stable, v2 revoked), app v1 current and older than rebuild.max_age_days."""
    return catalog_with_releases(
        (REPO / "catalog.yaml").read_text(encoding="utf-8"),
        {
            "base": [
                release(
                    "base",
                    1,
                    "previous",
                    channels={"candidate": "2026-11-01T13:00:00Z", "stable": "2026-11-08T13:00:00Z"},
                ),
                release("base", 2, "current", channels={"candidate": "2026-11-02T13:00:00Z"}, sbom=SBOM, packages=7),
            ],
            "web": [
                release(
                    "web",
                    1,
                    "previous",
                    channels={"candidate": "2026-11-01T14:00:00Z", "stable": "2026-11-09T09:00:00Z"},
                ),
                release(
                    "web", 2, "revoked", reason="CVE-2026-0001 in nginx", channels={"candidate": "2026-11-02T14:00:00Z"}
                ),
                release(
                    "web",
                    3,
                    "current",
                    source={"image": "base", "version": 2},
                    channels={"candidate": "2026-11-03T14:00:00Z", "stable": "2026-11-04T10:00:00Z"},
                    forced={"stable": "hotfix, soak skipped"},
                ),
            ],
            "app": [
                release(
                    "app", 1, "current", built_at="2026-10-01T12:00:00Z", channels={"candidate": "2026-10-01T13:00:00Z"}
                ),
            ],
        },
    )


# What an attacker with a pull request could put into free text: markup, attribute breakouts, a script URL,
# right-to-left overrides and emoji. The browser test checks none of it runs.
PAYLOADS = {
    "base": "<script>window.__pwned = 1; alert(1)</script> base",
    "web": '"><img src=x onerror="window.__pwned = 2; alert(2)">',
    "app": "javascript:alert(3)",
    "rtl": "\u202eשלום עולם — مرحبا 🚀🧪 ' onmouseover='alert(4)",  # noqa: RUF001 - right-to-left on purpose
    "closer": "</title></textarea></style><svg onload=alert(5)>",
}
HOSTILE_REASON = "<script>window.__pwned = 6</script> revoked & gone"
HOSTILE_FORCED = "\"><a href='javascript:alert(7)'>click</a>"
HOSTILE_PACKAGE = "<img src=x onerror=alert(8)>"


def hostile_catalog() -> str:
    text = (REPO / "catalog.yaml").read_text(encoding="utf-8")
    for name in ("base", "web", "app"):
        start = text.index(f"\n  {name}:\n    description: ") + len(f"\n  {name}:\n    description: ")
        text = text[:start] + json.dumps(PAYLOADS[name]) + text[text.index("\n", start) :]
    extra = "".join(
        f"  {name}:\n    description: {json.dumps(PAYLOADS[name], ensure_ascii=False)}\n    parent: web\n"
        "    provision: [images/web/scripts/10-nginx.sh]\n"
        for name in ("rtl", "closer")
    )
    text = text.replace("\nreleases: {}", "\n" + extra + "\nreleases: {}")
    return catalog_with_releases(
        text,
        {
            "base": [release("base", 1, "previous"), release("base", 2, "current")],
            "web": [
                release("web", 1, "revoked", reason=HOSTILE_REASON),
                release(
                    "web",
                    2,
                    "current",
                    channels={"candidate": "2026-11-02T12:00:00Z", "stable": "2026-11-03T12:00:00Z"},
                    forced={"stable": HOSTILE_FORCED},
                ),
            ],
            "rtl": [release("rtl", 1, "current", source={"image": "web", "version": 2})],
        },
    )


def keep_inventories(build: Path, *, hostile: bool = False) -> None:
    """Inventories of base v1 and v2, as verification keeps them: v2 upgraded openssl and fixed two CVEs."""
    extra = f"ii \t{HOSTILE_PACKAGE}\t1.0\tamd64\tevil\t1.0\n" if hostile else ""
    kept = {1: inventory("3.0.15-1~deb12u1"), 2: inventory("3.0.16-1~deb12u1", extra=extra, openssl=OPENSSL_CHANGELOG)}
    for version, found in kept.items():
        build_id = f"base-{version}-abcdef"
        path = inv.history_path(build, "base", build_id)
        inv.write_json(path, found.model_copy(update={"build_id": build_id}).model_dump_json())


def make_site(root: Path, catalog_text: str, *, hostile: bool = False, extra: tuple[str, ...] = ()) -> Path:
    """`stamp site` run on `catalog_text` in a copy of the repository's images; returns the site folder."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "images", root / "images", dirs_exist_ok=True)
    (root / "catalog.yaml").write_text(catalog_text, encoding="utf-8")
    keep_inventories(root / "build", hostile=hostile)
    out = root / "site"
    argv = ["site", "--catalog", str(root / "catalog.yaml"), "--out", str(out), "--build", str(root / "build")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clock, "utc_now", lambda: NOW)
        assert main([*argv, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def repo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_site(tmp_path_factory.mktemp("repo"), repository_catalog())


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_site(tmp_path_factory.mktemp("hostile"), hostile_catalog(), hostile=True)


def files_of(site: Path) -> dict[str, str]:
    return {
        p.relative_to(site).as_posix(): p.read_text(encoding="utf-8") for p in sorted(site.rglob("*")) if p.is_file()
    }


# -- reading the pages back ------------------------------------------------------------------------------------------


class Page(HTMLParser):
    """A page as a browser's parser sees it: its elements (tag, attributes), the ids, and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def ids(self) -> set[str]:
        return {str(attrs["id"]) for _, attrs in self.elements if attrs.get("id")}

    def links(self) -> list[str]:
        return [str(a[k]) for _, a in self.elements for k in ("href", "src") if a.get(k) is not None]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def table(text: str) -> dict[str, list[str]]:
    """index.html's table: image name → the text of its cells."""
    rows: dict[str, list[str]] = {}
    for row in re.findall(r'<tr data-image="([^"]*)"[^>]*>(.*?)</tr>', text, flags=re.S):
        name, cells = row
        rows[html.unescape(name)] = [
            " ".join(" ".join(parse(cell).text).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)
        ]
    return rows


COLUMNS = ("image", "description", "parent", "current", "channels", "age", "updates", "regions", "share", "status")


def row(site: Path, name: str) -> dict[str, str]:
    cells = table((site / "index.html").read_text(encoding="utf-8"))[name]
    return dict(zip(COLUMNS, cells, strict=True))


def page_text(site: Path, relative: str) -> str:
    """The page's text, as one line: chunks joined by one space, none before a closing parenthesis or a comma."""
    words = " ".join(" ".join(parse((site / relative).read_text(encoding="utf-8")).text).split())
    return re.sub(r" ([),;.])", r"\1", words)


# -- what the site shows -------------------------------------------------------------------------------------------


def test_the_site_is_an_index_a_page_per_image_the_feeds_and_its_own_assets(repo_site: Path) -> None:
    assert set(files_of(repo_site)) == {
        MARKER,
        "index.html",
        "index.json",
        "feed.atom",
        "site.css",
        "search.js",
        "favicon.svg",
        "images/base.html",
        "images/web.html",
        "images/app.html",
    }


def test_the_index_shows_each_image_at_a_glance(repo_site: Path) -> None:
    text = (repo_site / "index.html").read_text(encoding="utf-8")
    assert list(table(text)) == ["base", "app", "web"], "each root followed by its children"
    assert row(repo_site, "base") == {
        "image": "base",
        "description": "Debian 12, patched, hardened SSH, time sync, unattended upgrades",
        "parent": DASH,
        "current": "v2",
        "channels": "candidate v2, stable v1",
        "age": "25 / 30",
        "updates": "not checked",
        "regions": "us-east-1, eu-west-1",
        "share": "1 account, 1 organization",
        "status": "ok",
    }
    web = row(repo_site, "web")
    assert (web["parent"], web["current"], web["channels"], web["share"]) == (
        "base",
        "v3",
        "candidate v3, stable v3",
        "2 accounts",
    )
    app = row(repo_site, "app")
    assert (app["age"], app["status"], app["channels"]) == ("57 / 30", "too old", f"candidate v1, stable {DASH}")
    assert "3 images · 6 releases · generated 2026-11-27 12:00:00 UTC" in page_text(repo_site, "index.html")


def test_an_image_page_lists_its_releases_newest_first_with_everything_about_each(repo_site: Path) -> None:
    text = (repo_site / "images" / "web.html").read_text(encoding="utf-8")
    page = parse(text)
    assert [a["id"] for tag, a in page.elements if tag == "article"] == ["v3", "v2", "v1"]
    words = page_text(repo_site, "images/web.html")
    assert "v3 current · channel candidate, stable" in words
    assert "Built from base v2" in words and 'href="base.html#v2"' in text
    entered = "candidate since 2026-11-03T14:00:00Z; stable since 2026-11-04T10:00:00Z"
    assert f"{entered} (before its soak time: hotfix, soak skipped)" in words
    assert "Revoked CVE-2026-0001 in nginx" in words
    assert words.count("Verification passed") == 3
    for region, ami in AMIS.items():
        assert f"{region} {ami}" in words
    assert "Who uses it Usage data is not available" in words
    assert "Parent base" in words and "Children none" in words
    base = page_text(repo_site, "images/base.html")
    assert f"SBOM {SBOM['uri']} (sha256 {SBOM['sha256']}), 7 packages" in base
    assert "Children app, web" in base
    assert "accounts: 111122223333" in base and "arn:aws:organizations::111122223333:organization/o-exampleorg1" in base
    # An s3:// URI is text, never a link.
    assert not [a for tag, a in parse((repo_site / "images/base.html").read_text()).elements if "s3:" in str(a)]


def test_release_notes_appear_where_both_inventories_are_kept(repo_site: Path) -> None:
    base = page_text(repo_site, "images/base.html")
    assert "Release notes: 2 packages upgraded, 2 CVEs fixed" in base
    assert "libssl3 3.0.15-1~deb12u1 3.0.16-1~deb12u1" in base
    assert "CVE-2024-9143 (openssl 3.0.16-1~deb12u1)" in base and "CVE-2024-13176" in base
    # v1 is the first release: nothing to compare it with, and the page says why there are no notes.
    assert base.count("Release notes:") == 2  # v2's notes, and v1's summary of its first inventory
    web = page_text(repo_site, "images/web.html")
    assert web.count("No release notes: no inventories kept in build/ for this image.") == 3


def test_the_lineage_is_graphviz_svg_with_every_image(repo_site: Path) -> None:
    text = (repo_site / "index.html").read_text(encoding="utf-8")
    assert "Parents point to their children; drawn by Graphviz dot." in page_text(repo_site, "index.html")
    svg = text[text.index("<svg") : text.index("</svg>") + 6]
    assert 'role="img"' in svg and "<title>Lineage of every image" in svg
    for name in ("base", "web", "app"):
        assert f">{name}</text>" in svg
    assert "base-&gt;web" in svg and "base-&gt;app" in svg
    own = (repo_site / "images" / "web.html").read_text(encoding="utf-8")
    assert "base  v2</text>" in own and "web  v3</text>" in own


def test_index_json_is_valid_against_the_committed_schema(repo_site: Path, hostile_site: Path) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    for site in (repo_site, hostile_site):
        data = json.loads((site / "index.json").read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator(schema).validate(data)
    data = json.loads((repo_site / "index.json").read_text(encoding="utf-8"))
    assert data["format"] == 1 and data["generated_at"] == "2026-11-27T12:00:00Z"
    web = next(image for image in data["images"] if image["name"] == "web")
    assert web["current"] == 3 and [r["version"] for r in web["releases"]] == [3, 2, 1]
    assert web["channels"] == [
        {"name": "candidate", "after": None, "soak_days": 0, "release": 3},
        {"name": "stable", "after": "candidate", "soak_days": 7, "release": 3},
    ]
    assert web["releases"][0]["amis"] == AMIS and web["releases"][0]["page"] == "images/web.html#v3"
    assert web["releases"][1]["status"] == "revoked" and web["releases"][1]["reason"] == "CVE-2026-0001 in nginx"
    base = next(image for image in data["images"] if image["name"] == "base")
    assert base["releases"][0]["sbom"] == SBOM
    assert base["releases"][0]["notes"] == "2 packages upgraded, 2 CVEs fixed"


def test_the_schema_refuses_what_is_not_format_1(repo_site: Path) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    data = json.loads((repo_site / "index.json").read_text(encoding="utf-8"))
    for broken in (data | {"format": 2}, data | {"extra": True}, {k: v for k, v in data.items() if k != "images"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_feed_atom_has_an_entry_per_release_promotion_and_revocation(repo_site: Path) -> None:
    root = ET.fromstring((repo_site / "feed.atom").read_bytes())  # noqa: S314 - the file this test just wrote
    assert root.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert (root.findtext(f"{ATOM}{required}") or "").strip(), required
    assert root.find(f"{ATOM}author/{ATOM}name") is not None
    entries = root.findall(f"{ATOM}entry")
    for entry in entries:
        for required in ("id", "title", "updated"):
            assert (entry.findtext(f"{ATOM}{required}") or "").strip(), required
        assert str(entry.findtext(f"{ATOM}id")).startswith("urn:uuid:")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(entry.findtext(f"{ATOM}updated")))
    titles = [entry.findtext(f"{ATOM}title") for entry in entries]
    releases = [t for t in titles if t and t.endswith(" released")]
    assert sorted(releases) == sorted(
        [
            "base v1 released",
            "base v2 released",
            "web v1 released",
            "web v2 released",
            "web v3 released",
            "app v1 released",
        ]
    )
    assert sorted(t for t in titles if t and "promoted" in t) == [
        "base v1 promoted to stable",
        "web v1 promoted to stable",
        "web v3 promoted to stable",
    ]
    assert [t for t in titles if t and t.endswith("revoked")] == ["web v2 revoked"]
    updated = [str(entry.findtext(f"{ATOM}updated")) for entry in entries]
    assert updated == sorted(updated, reverse=True), "newest first"
    assert root.findtext(f"{ATOM}updated") == updated[0]
    ids = [entry.findtext(f"{ATOM}id") for entry in entries]
    assert len(set(ids)) == len(ids)
    assert titles[0] == "web v1 promoted to stable", "the newest event: 2026-11-09"
    first = entries[0].find(f"{ATOM}link")
    assert first is not None and first.get("href") == "images/web.html#v1"


def test_pending_security_updates_come_from_the_saved_plan(tmp_path: Path) -> None:
    plan = {
        "images": [
            {
                "name": "base",
                "layer": 0,
                "reasons": [{"kind": "updates_available", "detail": "2 security (…)", "security": 2, "other": 5}],
            },
            {"name": "web", "layer": 1, "reasons": [{"kind": "parent_rebuilt", "detail": "base"}]},
        ],
        "publish_only": [],
        "order": ["base", "web"],
        "sources_checked": True,
        "updates_checked": True,
        "update_notes": ["updates not checked for 1 image without an inventory: app v1"],
    }
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    site = make_site(tmp_path, repository_catalog())
    assert (row(site, "base")["updates"], row(site, "base")["status"]) == ("2 security", "security updates")
    assert row(site, "web")["updates"] == "none found"
    assert row(site, "app")["updates"] == "not checked"
    assert "Security updates: from the plan saved at" in page_text(site, "index.html")
    assert "Security updates 2 security, 5 other pending" in page_text(site, "images/base.html")
    data = json.loads((site / "index.json").read_text(encoding="utf-8"))
    states = {image["name"]: image["security_updates"]["state"] for image in data["images"]}
    assert states == {"base": "pending", "web": "none", "app": "not_checked"}


def test_a_plan_that_skipped_the_update_check_leaves_every_image_not_checked(tmp_path: Path) -> None:
    skipped = {"images": [], "update_notes": [], "updates_checked": False}
    (tmp_path / "plan.json").write_text(json.dumps(skipped), encoding="utf-8")
    site = make_site(tmp_path, repository_catalog(), extra=("--plan", str(tmp_path / "plan.json")))
    assert {row(site, name)["updates"] for name in ("base", "web", "app")} == {"not checked"}
    assert "skipped the update check" in page_text(site, "index.html")


def test_without_dot_the_lineage_is_drawn_by_stamp_and_the_page_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    site = make_site(tmp_path / "ws", repository_catalog())
    assert "the lineage is drawn by stamp: Graphviz dot was not found" in capsys.readouterr().err
    text = (site / "index.html").read_text(encoding="utf-8")
    assert "drawn by stamp: Graphviz dot was not found." in page_text(site, "index.html")
    assert 'class="lineage-tree"' in text and "web  v3</text>" in text and "app  v1</text>" in text


def test_no_dot_draws_the_lineage_without_graphviz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = make_site(tmp_path, repository_catalog(), extra=("--no-dot",))
    assert "Parents point to their children; drawn by stamp." in page_text(site, "index.html")
    assert "the lineage is" not in capsys.readouterr().err, "asked for: nothing to warn about"


def test_dot_output_is_rewritten_with_only_shapes_and_text() -> None:
    hostile = (
        '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        ' width="10pt" onload="alert(1)"><g id="graph0"><script>alert(2)</script><a xlink:href="javascript:alert(3)">'
        '<text x="1" style="x" fill="#000">&lt;img src=x onerror=alert(4)&gt;</text></a>'
        '<foreignObject><div>hi</div></foreignObject><polygon points="0,0 1,1" fill="red"/></g></svg>'
    )
    clean = sanitize(hostile, title="t <b>")
    assert "script" not in clean and "onload" not in clean and "javascript" not in clean
    assert "foreignObject" not in clean and "style" not in clean and "<a" not in clean and "id=" not in clean
    assert "&lt;img src=x onerror=alert(4)&gt;" not in clean  # the <a> around it is dropped with its content
    assert '<polygon points="0,0 1,1" fill="red"></polygon>' in clean
    assert "<title>t &lt;b&gt;</title>" in clean and 'aria-label="t &lt;b&gt;"' in clean


def test_a_missing_dot_falls_back_to_stamps_own_drawing(tmp_path: Path) -> None:
    nodes = [Node("base", None, 0, "v2", "ok"), Node("web", "base", 1, "no release", "muted")]
    drawing = lineage(nodes, title="Lineage", dot=str(tmp_path / "dot"))
    assert drawing.how == "drawn by stamp: Graphviz dot was not found"
    assert "base  v2</text>" in drawing.svg and "web  no release</text>" in drawing.svg
    assert "<path d=" in drawing.svg, "a line from base to web"


# -- security: escaping, links, hosts -------------------------------------------------------------------------------


def test_every_hostile_value_appears_escaped_and_never_as_markup(hostile_site: Path) -> None:
    files = files_of(hostile_site)
    pages = {name: text for name, text in files.items() if name.endswith(".html")}
    for name, payload in PAYLOADS.items():
        escaped = str(esc(payload))
        assert escaped in pages["index.html"], name
        assert escaped in pages[f"images/{name}.html"], name
        if escaped != payload:
            for page_name, text in pages.items():
                assert payload not in text, f"{name}'s description is raw in {page_name}"
    web = pages["images/web.html"]
    assert str(esc(HOSTILE_REASON)) in web and str(esc(HOSTILE_FORCED)) in web
    assert str(esc(HOSTILE_PACKAGE)) in pages["images/base.html"]
    for page_name, text in pages.items():
        page = parse(text)
        tags = [tag for tag, _ in page.elements]
        assert tags.count("script") == (1 if page_name == "index.html" else 0), page_name
        assert "img" not in tags and "textarea" not in tags and tags.count("title") == 1 + _svg_titles(text)
        for tag, attrs in page.elements:
            assert not [k for k in attrs if k.startswith("on")], f"{page_name}: <{tag}> has an event handler"
            for key in ("href", "src"):
                target = attrs.get(key)
                assert target is None or not target.lower().strip().startswith(("javascript:", "data:")), page_name
    data = json.loads(files["index.json"])
    assert {image["name"]: image["description"] for image in data["images"]} == PAYLOADS
    feed = ET.fromstring(files["feed.atom"].encode())  # noqa: S314 - written by this test
    summaries = " ".join(str(e.findtext(f"{ATOM}summary")) for e in feed.iter(f"{ATOM}entry"))
    assert HOSTILE_REASON in summaries and HOSTILE_FORCED in summaries, "text in the feed, as text"


def _svg_titles(text: str) -> int:
    """<title> elements inside the SVG drawings (accessible names), which are not the page's title."""
    return sum(svg.count("<title>") for svg in re.findall(r"<svg.*?</svg>", text, flags=re.S))


def test_right_to_left_text_is_isolated(hostile_site: Path) -> None:
    text = (hostile_site / "images" / "rtl.html").read_text(encoding="utf-8")
    assert f'<bdi dir="auto">{esc(PAYLOADS["rtl"])}</bdi>' in text
    assert "🚀🧪" in text


def test_every_page_forbids_outside_resources_and_inline_scripts(repo_site: Path, hostile_site: Path) -> None:
    for site in (repo_site, hostile_site):
        for name, text in files_of(site).items():
            if not name.endswith(".html"):
                continue
            (policy,) = [
                str(a["content"])
                for tag, a in parse(text).elements
                if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy"
            ]
            directives = dict(d.strip().partition(" ")[::2] for d in policy.split(";"))
            assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'", name
            assert "unsafe" not in policy and "http" not in policy, name


# An address of another host in any file: an http(s) URL, or a scheme-relative one in an attribute. XML namespace
# names are identifiers that nothing fetches, so they are left out; s3:// URIs are shown as text.
ABSOLUTE = re.compile(r"https?://[^\s\"'<>]+|=[\"']?//[^\s\"'<>]+")
NAMESPACE = re.compile(r'xmlns(?::\w+)?="[^"]*"')


def test_no_file_names_another_host(repo_site: Path, hostile_site: Path) -> None:
    for site in (repo_site, hostile_site):
        for name, text in files_of(site).items():
            found = ABSOLUTE.findall(NAMESPACE.sub("", text))
            assert found == [], f"{name}: {found[:3]}"


def test_every_relative_link_resolves_to_a_file_of_the_site(repo_site: Path, hostile_site: Path) -> None:
    for site in (repo_site, hostile_site):
        checked = 0
        for name, text in files_of(site).items():
            if name.endswith(".html"):
                targets = parse(text).links()
            elif name == "feed.atom":
                targets = re.findall(r'href="([^"]*)"', text)
            else:
                continue
            for target in targets:
                assert ":" not in target.split("#")[0] and not target.startswith("/"), f"{name}: {target}"
                path, _, anchor = html.unescape(target).partition("#")
                resolved = (site / name).parent / path if path else site / name
                assert resolved.resolve().is_file(), f"{name}: {target} does not resolve"
                assert resolved.resolve().is_relative_to(site.resolve()), f"{name}: {target} leaves the site"
                if anchor:
                    assert anchor in parse(resolved.read_text(encoding="utf-8")).ids, f"{name}: {target}"
                checked += 1
        assert checked > 20


def test_links_go_only_to_pages_of_the_site() -> None:
    assert link("images/web.html#v3", "<web>") == '<a href="images/web.html#v3">&lt;web&gt;</a>'
    assert href("../index.html") == "../index.html"
    for bad in ("javascript:alert(1)", "https://example.org/", "//example.org/x", "/etc/passwd", "a/../../b", "x?y=1"):
        with pytest.raises(ValueError, match="not a relative link"):
            href(bad)


def test_without_javascript_the_index_is_complete(repo_site: Path) -> None:
    text = (repo_site / "index.html").read_text(encoding="utf-8")
    search = next(a for tag, a in parse(text).elements if a.get("id") == "search")
    assert "hidden" in search, "the search field shows only when the script runs"
    assert len(table(text)) == 3


def test_an_earlier_site_is_replaced_but_never_a_folder_stamp_did_not_write(tmp_path: Path) -> None:
    site = make_site(tmp_path, repository_catalog())
    (site / "images" / "gone.html").write_text("old", encoding="utf-8")
    make_site(tmp_path, repository_catalog())
    assert not (site / "images" / "gone.html").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    argv = ["site", "--catalog", str(tmp_path / "catalog.yaml"), "--out", str(mine), "--build", str(tmp_path / "b")]
    assert main(argv) == 2
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.fixture
def no_leftovers(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".site.")], "a scratch folder was left"


def test_writing_leaves_no_scratch_folder(no_leftovers: Path) -> None:
    make_site(no_leftovers, repository_catalog())
