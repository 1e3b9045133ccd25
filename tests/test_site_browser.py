"""The site in a real browser: Debian's chromium and chromedriver, driven by Selenium, the pages served over HTTP
on 127.0.0.1 by this test. Every page loads without a console error and without a request leaving 127.0.0.1,
every link resolves, no injected script runs, axe-core finds nothing serious, and a 20-image index fits one
wall screen (docs/site.md)."""

from __future__ import annotations

import functools
import json
import re
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from test_site import REPO, catalog_with_releases, hostile_catalog, make_site, release, repository_catalog


def _found(*names: str) -> Path:
    """Debian's binary, else what PATH has (a GitHub runner ships Google Chrome and its chromedriver)."""
    for name in names:
        if (where := shutil.which(name)) is not None:
            return Path(where)
    return Path("/usr/bin") / names[0]


CHROMIUM = _found("chromium", "google-chrome", "chrome")
CHROMEDRIVER = _found("chromedriver")
AXE = REPO / "tools" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
# A wall screen.
WIDTH, HEIGHT = 1920, 1080
WALL_IMAGES = 20

RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ["violations"]})
  .then((found) => done(found.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.html)}))))
  .catch((error) => done([{id: "axe-error", impact: "critical", help: String(error), nodes: []}]));
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def wall_catalog() -> str:
    """The repository's catalog and 17 more children of base: 20 images, each with a current release."""
    text = (REPO / "catalog.yaml").read_text(encoding="utf-8")
    extra = "".join(
        f"  svc-{n:02d}:\n    description: service {n} on the stamp-app runtime, with its agents\n    parent: base\n"
        "    provision: [images/app/scripts/10-user.sh]\n"
        for n in range(1, WALL_IMAGES - 2)
    )
    text = text.replace("\nreleases: {}", "\n" + extra + "\nreleases: {}")
    names = ["base", "web", "app", *(f"svc-{n:02d}" for n in range(1, WALL_IMAGES - 2))]
    entered = {"candidate": "2026-11-02T13:00:00Z"}
    return catalog_with_releases(
        text, {name: [release(name, 1, "previous"), release(name, 2, "current", channels=entered)] for name in names}
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three sites under one folder, served on a free port of 127.0.0.1: repo/, hostile/ and wall/."""
    root = tmp_path_factory.mktemp("served")
    for name, text, hostile in (
        ("repo", repository_catalog(), False),
        ("hostile", hostile_catalog(), True),
        ("wall", wall_catalog(), False),
    ):
        make_site(tmp_path_factory.mktemp(name), text, hostile=hostile).rename(root / name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), "install chromium and chromium-driver (make setup)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WIDTH},{HEIGHT}",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An alert a page opens stays open, for the test to see, instead of being dismissed with an error.
    options.set_capability("unhandledPromptBehavior", "ignore")
    browser = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    browser.set_script_timeout(30)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@dataclass
class Visit:
    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    alert: str | None = None
    pwned: str = ""
    violations: list[dict[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


def log(browser: WebDriver, kind: str) -> list[dict[str, Any]]:
    """The entries of a chromedriver log (`performance`, `browser`) since it was last read."""
    entries: list[dict[str, Any]] = browser.execute("getLog", {"type": kind})["value"]
    return entries


def drain(browser: WebDriver) -> tuple[list[str], list[str]]:
    """(every URL the browser requested, every console error) since the last drain."""
    requests = []
    for entry in log(browser, "performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(str(message["params"]["request"]["url"]))
        elif message["method"] == "Network.webSocketCreated":
            requests.append(str(message["params"]["url"]))
    errors = [str(entry["message"]) for entry in log(browser, "browser") if entry["level"] == "SEVERE"]
    return requests, errors


def open_alert(browser: WebDriver) -> str | None:
    try:
        alert = browser.switch_to.alert
    except NoAlertPresentException:
        return None
    text = alert.text
    alert.accept()
    return text


def visit(browser: WebDriver, url: str, axe_source: str) -> Visit:
    drain(browser)
    browser.get(url)
    found = Visit(url)
    found.alert = open_alert(browser)
    found.pwned = str(browser.execute_script("return typeof window.__pwned"))
    found.links = list(
        browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href], link[href], script[src]'), (e) => e.href || e.src)"
        )
    )
    found.ids = set(browser.execute_script("return Array.from(document.querySelectorAll('[id]'), (e) => e.id)"))
    browser.execute_script(axe_source)
    found.violations = list(browser.execute_async_script(RUN_AXE))
    found.alert = found.alert or open_alert(browser)
    found.requests, found.errors = drain(browser)
    return found


@dataclass
class Crawl:
    base: str
    visits: dict[str, Visit]
    resources: dict[str, int]  # URL (not a page) → HTTP status
    broken: list[str]


@pytest.fixture(scope="module")
def crawl(driver: WebDriver, served: str) -> Crawl:
    """Every page of the repository's and the hostile site, reached by following links from each index."""
    axe_source = AXE.read_text(encoding="utf-8")
    queue = [served + "repo/index.html", served + "hostile/index.html"]
    visits: dict[str, Visit] = {}
    resources: dict[str, int] = {}
    broken: list[str] = []
    while queue:
        url = queue.pop(0)
        if url in visits:
            continue
        visits[url] = visit(driver, url, axe_source)
        for target in visits[url].links:
            page, _ = urldefrag(target)
            if not page.startswith(served):
                broken.append(f"{url}: {target} leaves the site")
            elif page.endswith(".html"):
                queue.append(page)
            elif page not in resources:
                with urllib.request.urlopen(page, timeout=10) as answer:  # noqa: S310 - 127.0.0.1, checked above
                    resources[page] = answer.status
    for url, found in visits.items():
        for target in found.links:
            page, fragment = urldefrag(target)
            if fragment and page in visits and fragment not in visits[page].ids:
                broken.append(f"{url}: {target}: no element #{fragment} there")
    return Crawl(served, visits, resources, broken)


def test_the_crawl_reaches_every_page_of_both_sites(crawl: Crawl) -> None:
    pages = {url.removeprefix(crawl.base) for url in crawl.visits}
    assert pages == {
        "repo/index.html",
        "repo/images/base.html",
        "repo/images/web.html",
        "repo/images/app.html",
        "hostile/index.html",
        *(f"hostile/images/{name}.html" for name in ("base", "web", "app", "rtl", "closer")),
    }


def test_every_link_resolves(crawl: Crawl) -> None:
    assert crawl.broken == []
    assert {url.rsplit("/", 1)[1] for url in crawl.resources} == {
        "site.css",
        "search.js",
        "favicon.svg",
        "index.json",
        "feed.atom",
    }
    assert set(crawl.resources.values()) == {200}


def test_no_page_logs_a_console_error(crawl: Crawl) -> None:
    assert {url: v.errors for url, v in crawl.visits.items() if v.errors} == {}


def test_no_request_leaves_127_0_0_1(crawl: Crawl) -> None:
    for url, found in crawl.visits.items():
        assert url in found.requests, f"the performance log lists {url} itself"
    requested = {url for found in crawl.visits.values() for url in found.requests}
    for site in ("repo", "hostile"):
        assert {f"{crawl.base}{site}/{name}" for name in ("site.css", "search.js", "favicon.svg")} <= requested
    assert sorted(url for url in requested if not url.startswith(crawl.base)) == []


def test_no_injected_script_runs(crawl: Crawl) -> None:
    assert {url: v.alert for url, v in crawl.visits.items() if v.alert is not None} == {}
    assert {v.pwned for v in crawl.visits.values()} == {"undefined"}


def test_axe_finds_nothing_serious_or_critical(crawl: Crawl) -> None:
    found = {
        url.removeprefix(crawl.base): [v for v in visit.violations if v["impact"] in ("serious", "critical")]
        for url, visit in crawl.visits.items()
    }
    assert {url: v for url, v in found.items() if v} == {}


def test_the_checks_catch_what_they_look_for(driver: WebDriver, served: str) -> None:
    """The detectors work: an unlabelled field, a running script, an alert, a console error, a request to another
    address; and the page's Content-Security-Policy refuses that request before it is made."""
    page = served + "repo/index.html"
    driver.get(page)
    drain(driver)
    driver.execute_script(
        "document.body.insertAdjacentHTML('beforeend', '<input id=\"unlabelled\">');"
        "window.__pwned = 1; console.error('boom'); fetch('http://127.0.0.2:9/').catch(() => null);"
    )
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    violations = driver.execute_async_script(RUN_AXE)
    assert "label" in {v["id"] for v in violations if v["impact"] == "critical"}
    assert driver.execute_script("return typeof window.__pwned") == "number"
    driver.execute_script("alert('caught')")
    assert open_alert(driver) == "caught" and open_alert(driver) is None
    requests, errors = drain(driver)
    assert any("boom" in error for error in errors)
    assert any("Content Security Policy" in error and "127.0.0.2" in error for error in errors), errors
    assert "http://127.0.0.2:9/" not in requests
    driver.execute_cdp_cmd("Page.setBypassCSP", {"enabled": True})
    try:
        driver.get(page)
        drain(driver)
        driver.execute_script("fetch('http://127.0.0.2:9/').catch(() => null);")
        driver.execute_async_script("setTimeout(arguments[arguments.length - 1], 200);")
        requests, _ = drain(driver)
        assert "http://127.0.0.2:9/" in requests
    finally:
        driver.execute_cdp_cmd("Page.setBypassCSP", {"enabled": False})


def test_screenshots_of_the_index_and_an_image_page(driver: WebDriver, served: str) -> None:
    # Left in the repository's build/ for a person to look at (git-ignored; tests/conftest.py allows it).
    folder = REPO / "build" / "site-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    for name, page in (("index", "wall/index.html"), ("image-web", "repo/images/web.html")):
        driver.get(served + page)
        shot = folder / f"{name}.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_twenty_images_fit_one_wall_screen(driver: WebDriver, served: str) -> None:
    driver.get(served + "wall/index.html")
    rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-image]")
    assert len(rows) == WALL_IMAGES
    bottom = driver.execute_script("return document.querySelector('table.images').getBoundingClientRect().bottom")
    viewport = driver.execute_script("return window.innerHeight")
    assert viewport >= HEIGHT - 200 and bottom <= viewport, f"the table ends at {bottom} px of {viewport}"
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= driver.execute_script("return window.innerWidth"), "no sideways scrolling"


def test_the_search_field_filters_images_by_name(driver: WebDriver, served: str) -> None:
    driver.get(served + "wall/index.html")
    field = driver.find_element(By.ID, "search-field")
    assert field.is_displayed()
    field.send_keys("svc-1")
    shown = [
        r.get_attribute("data-image")
        for r in driver.find_elements(By.CSS_SELECTOR, "tr[data-image]")
        if r.is_displayed()
    ]
    assert shown == [f"svc-{n}" for n in range(10, WALL_IMAGES - 2)]
    assert driver.find_element(By.ID, "search-count").text == f"{len(shown)} of {WALL_IMAGES} images"


def test_without_javascript_every_image_shows_and_the_search_field_does_not(driver: WebDriver, served: str) -> None:
    driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        driver.get(served + "wall/index.html")
        rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-image]")
        assert len(rows) == WALL_IMAGES and all(row.is_displayed() for row in rows)
        assert not driver.find_element(By.ID, "search").is_displayed()
        assert re.search(r"\b20 images\b", driver.find_element(By.TAG_NAME, "header").text)
    finally:
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
