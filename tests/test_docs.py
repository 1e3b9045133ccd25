"""Comments and docs cite only what is in the repository: no outside contract documents, no missing docs/ pages.

The project's contract and measured facts live in docs/contract.md and docs/facts.md; comments cite them as
`(docs/facts.md, Packer 1.6.6)`. A citation of a document that is not in the repository (the shared contract's
section signs and the shared facts file, as the first round wrote them) cannot be followed by a reader, so it
fails here.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()
SCANNED = ("tools", "tests", "docs", "README.md")

# The two outside documents as the first round cited them, spelled in pieces so this file does not cite them itself.
# Case-sensitive on purpose: `_SPECIAL`, "facts" or "spec order" are ordinary words.
SPEC_SECTION = "SPEC" + " §"
FACTS_FILE = "FAC" + "TS"
OUTSIDE_CITATION = re.compile(re.escape(SPEC_SECTION) + r"|\b" + FACTS_FILE + r"\b")
# A docs/ path as comments write it: not part of a URL or of a longer path (the lookbehind), ending in a letter.
DOCS_PATH = re.compile(r"(?<![\w/.-])docs/[\w./-]*\w")
# `(docs/facts.md, Section name)`: the section must be a heading of that page.
SECTION = re.compile(r"\((docs/[\w./-]+\.md), ([^(),]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def project_files() -> list[str]:
    """Files under SCANNED that git tracks or would track (ignored ones such as node_modules/ are left out)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SCANNED],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted({name for name in done.stdout.split("\0") if name and (ROOT / name).is_file()})


def text_of(name: str) -> str | None:
    try:
        return (ROOT / name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # not a text file


def outside_citations(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line citing one of the outside documents."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if OUTSIDE_CITATION.search(line)]


def comment_lines(name: str, text: str) -> list[tuple[int, str]]:
    """(line number, text) of the comments and docstrings of a Python file; every line of any other file."""
    if not name.endswith(".py"):
        return list(enumerate(text.splitlines(), 1))
    found = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found += [(first.lineno + i, line) for i, line in enumerate(first.value.value.splitlines())]
    return sorted(found)


def headings(page: Path) -> set[str]:
    return {h.strip().lower() for h in HEADING.findall(page.read_text(encoding="utf-8"))}


def broken_docs_citations(name: str, text: str) -> list[str]:
    """Every docs/ path cited in the comments of `name` that does not exist, or names a section its page lacks."""
    broken = []
    for n, line in comment_lines(name, text):
        for path in DOCS_PATH.findall(line):
            if not (ROOT / path).exists():
                broken.append(f"{name}:{n}: {path} does not exist")
        for path, section in SECTION.findall(line):
            page = ROOT / path
            if page.is_file() and section.strip().lower() not in headings(page):
                broken.append(f"{name}:{n}: {path} has no section '{section.strip()}'")
    return broken


def test_the_detector_tells_citations_from_ordinary_words() -> None:
    cited = [
        f"see {SPEC_SECTION}5",
        f"({FACTS_FILE})",
        f"{FACTS_FILE}.md: duplicate keys",
        f"({FACTS_FILE}: moto never throttles)",
    ]
    ordinary = [
        "_SPECIAL = {}",
        "_MD_SPECIAL",
        "the facts",
        "Spec order",
        "SPECS",
        "ARTI" + FACTS_FILE,
        FACTS_FILE + "HEET",
    ]
    assert [bool(outside_citations(line)) for line in cited] == [True] * len(cited)
    assert [bool(outside_citations(line)) for line in ordinary] == [False] * len(ordinary)
    assert DOCS_PATH.findall("(docs/facts.md, Podman) https://docs.aws.amazon.com/x/docs/y") == ["docs/facts.md"]
    assert SECTION.findall("(docs/facts.md, moto gaps)") == [("docs/facts.md", "moto gaps")]


def test_no_file_cites_documents_outside_the_repository() -> None:
    files = project_files()
    # The scan must really cover the package, the tests and the docs, or the assertion below proves nothing.
    assert {"tools/stamp/cli.py", "tests/conftest.py", "docs/catalog.md", "README.md", THIS} <= set(files)
    found = []
    for name in files:
        text = text_of(name)
        if name == THIS or text is None:
            continue
        found += [f"{name}:{n}: {line}" for n, line in outside_citations(text)]
    assert found == [], "cite docs/contract.md or docs/facts.md instead of:\n" + "\n".join(found)


def test_every_docs_path_cited_under_tools_exists() -> None:
    files = [name for name in project_files() if name.startswith("tools/")]
    cited = []
    broken = []
    for name in files:
        text = text_of(name)
        if text is None:
            continue
        lines = comment_lines(name, text)
        cited += [path for _n, line in lines for path in DOCS_PATH.findall(line)]
        broken += broken_docs_citations(name, text)
    # The contract and the facts pages are cited from the code; a scan finding neither has stopped working.
    assert {"docs/contract.md", "docs/facts.md"} <= set(cited)
    assert broken == [], "\n".join(broken)


def test_a_missing_page_or_section_is_reported() -> None:
    text = '"""Doc (docs/facts.md, No such section)."""\n# see docs/no-such-page.md\nx = 1\n'
    assert broken_docs_citations("tools/example.py", text) == [
        "tools/example.py:1: docs/facts.md has no section 'No such section'",
        "tools/example.py:2: docs/no-such-page.md does not exist",
    ]
