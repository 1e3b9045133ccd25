"""`stamp validate` checks every image's tests before a build, without a host: the folder has test files, they
compile, pytest collects them; an image without `tests` is a problem too. Each problem is one line naming the
image and the file (and line)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import stamp.commands.validate
from stamp.cli import main

REPO = Path(__file__).resolve().parent.parent

CATALOG = """\
version: 1
defaults:
  regions: [us-east-1]
images:
  base:
    description: root image
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision: [images/base/setup.sh]
    tests: images/base/tests
  web:
    description: child image
    parent: base
    provision: [images/web/setup.sh]
    tests: images/web/tests
"""

GOOD_TEST = 'def test_root_is_a_folder(host):\n    assert host.file("/").is_directory\n'


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch repository (the current folder): the catalog, and for each image a script and a good test."""
    root = tmp_path / "repo"
    for image in ("base", "web"):
        (root / "images" / image / "tests").mkdir(parents=True)
        (root / "images" / image / "setup.sh").write_text("#!/usr/bin/env bash\nset -euo pipefail\necho hi\n")
        (root / "images" / image / "tests" / f"test_{image}.py").write_text(GOOD_TEST)
    (root / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def validate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[int, list[str], str]:
    """`stamp validate -v` through the CLI: its exit code, its problem lines (`image '…': …`) and all of stderr
    (with -v, the commands it ran too)."""
    code = main(["validate", "-v", "--catalog", "catalog.yaml", "--out", str(tmp_path / "render")])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.startswith(("image '", "catalog.yaml:"))], err


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def test_good_tests_pass_and_nothing_is_written_into_the_tests_folders(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, problems, err = validate(capsys, tmp_path)
    assert (code, problems) == (0, []), err
    assert "tests compile and pytest collects them: OK for base, web" in err
    assert "packer fmt and packer validate: OK for base, web" in err
    written = sorted(str(p.relative_to(repo)) for p in (repo / "images").rglob("*") if p.name.startswith((".", "_")))
    assert written == [], "no cache or bytecode in the image folders"


def test_a_missing_tests_folder_is_named_with_its_catalog_line(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(repo / "images" / "web" / "tests")
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    line = line_of(CATALOG, "tests: images/web/tests")
    assert len(problems) == 1, err
    assert re.match(rf"catalog\.yaml:{line}:\d+: images\.web\.tests: 'images/web/tests' does not exist", problems[0])


@pytest.mark.parametrize(
    "leftover",
    [None, "README.md", "helpers.py", "tests.py"],
    ids=["empty", "only a README", "only a helper module", "a module pytest does not collect"],
)
def test_a_tests_folder_without_test_files_is_a_problem(
    leftover: str | None, repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = repo / "images" / "web" / "tests"
    (folder / "test_web.py").unlink()
    if leftover:
        (folder / leftover).write_text(GOOD_TEST)
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert problems == [
        "image 'web': images/web/tests: no test files (test_*.py or *_test.py); `stamp verify` would run no tests "
        "and fail the image"
    ], err


def test_test_files_named_the_other_way_are_found_and_checked(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = repo / "images" / "web" / "tests"
    (folder / "test_web.py").unlink()
    (folder / "nginx_test.py").write_text("import does_not_exist\n\n\n" + GOOD_TEST)
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert [p.split(": ")[1] for p in problems] == ["images/web/tests/nginx_test.py:1"], err


@pytest.mark.parametrize(
    ("source", "where", "message"),
    [
        ("import os\n\n\ndef test_web(host:\n    pass\n", "4:13", "SyntaxError: '(' was never closed"),
        ("def test_web(host):\n    if True:\n    pass\n", "3:5", "IndentationError: expected an indented block"),
    ],
    ids=["unclosed parenthesis", "indentation"],
)
def test_a_test_file_that_does_not_compile_is_named_with_its_line(
    source: str, where: str, message: str, repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "images" / "web" / "tests" / "test_web.py").write_text(source)
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    # One line: pytest's own collection error for the same file is not repeated.
    assert len(problems) == 1, err
    assert problems[0].startswith(f"image 'web': images/web/tests/test_web.py:{where}: {message}"), err


def test_a_helper_module_that_does_not_compile_is_named_too(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = repo / "images" / "base" / "tests"
    (folder / "checks.py").write_text("def expected(:\n    return 1\n")
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert any(p.startswith("image 'base': images/base/tests/checks.py:1:") and "SyntaxError" in p for p in problems)


def test_an_import_that_fails_at_collection_names_the_file_and_line(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "images" / "web" / "tests" / "test_web.py").write_text(
        '"""Web checks."""\n\nimport does_not_exist\n\n\n' + GOOD_TEST
    )
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert problems == [
        "image 'web': images/web/tests/test_web.py:3: ModuleNotFoundError: No module named 'does_not_exist' "
        "(pytest cannot collect it)"
    ], err


def test_an_error_raised_in_a_helper_at_import_names_the_deepest_line_in_the_folder(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = repo / "images" / "web" / "tests"
    (folder / "expected.py").write_text("PORTS = {'http': 80}\nHTTPS = PORTS['https']\n")
    (folder / "test_web.py").write_text("from expected import PORTS\n\n\n" + GOOD_TEST)
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert problems == ["image 'web': images/web/tests/expected.py:2: KeyError: 'https' (pytest cannot collect it)"]


def test_a_conftest_that_fails_to_import_is_named(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "images" / "base" / "tests" / "conftest.py").write_text("import does_not_exist\n")
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert problems == [
        "image 'base': images/base/tests/conftest.py:1: ModuleNotFoundError: No module named 'does_not_exist' "
        "(pytest cannot collect it)"
    ], err


def test_a_test_file_with_no_tests_in_it_is_a_problem(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "images" / "web" / "tests" / "test_web.py").write_text('"""Nothing checked yet."""\n')
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert problems == [
        "image 'web': images/web/tests: pytest collects no tests from it; `stamp verify` fails an image whose tests "
        "check nothing"
    ], err


def test_an_image_without_tests_is_a_problem_named_with_its_catalog_line(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = CATALOG.replace("    tests: images/web/tests\n", "")
    (repo / "catalog.yaml").write_text(text, encoding="utf-8")
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert len(problems) == 1, err
    assert problems[0].startswith(
        f"image 'web': catalog.yaml:{line_of(text, '  web:')}:3: images.web: no `tests` folder; `stamp verify` "
        "refuses an image without tests"
    ), err


def test_every_image_and_every_problem_is_reported_at_once(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = CATALOG + "  api:\n    parent: base\n    provision: [images/web/setup.sh]\n    tests: images/web/tests\n"
    (repo / "catalog.yaml").write_text(text, encoding="utf-8")
    (repo / "images" / "base" / "tests" / "test_base.py").write_text("def test_base(host:\n    pass\n")
    (repo / "images" / "web" / "tests" / "test_web.py").write_text("import does_not_exist\n")
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert [p.split(":")[0] for p in problems] == ["image 'base'", "image 'api'", "image 'web'"], err
    assert "images/base/tests/test_base.py:1:" in problems[0]
    # api and web share a folder: it is collected once, and the problem is reported for each image.
    assert problems[1].replace("'api'", "'web'") == problems[2]
    assert err.count(f"--rootdir={repo / 'images' / 'web' / 'tests'}") == 1, err
    assert err.rstrip().endswith("3 problem(s)")


def test_the_tests_module_code_sees_only_stand_in_credentials(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKINGKEY00")
    monkeypatch.setenv("AWS_PROFILE", "stamp-real-profile")
    seen = tmp_path / "seen.txt"
    (repo / "images" / "web" / "tests" / "test_web.py").write_text(
        "import os\nimport pathlib\n\n"
        f"pathlib.Path({str(seen)!r}).write_text(os.environ['AWS_ACCESS_KEY_ID'] + '|' + os.environ['AWS_PROFILE'])"
        "\n\n\n" + GOOD_TEST
    )
    code, problems, err = validate(capsys, tmp_path)
    assert (code, problems) == (0, []), err
    assert seen.read_text() == "AKIASTAMPVALIDATE000|", "collection imported the module, with stand-ins only"


def test_a_module_that_blocks_at_import_is_stopped(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stamp.commands.validate, "COLLECT_TIMEOUT", 2.0)
    (repo / "images" / "web" / "tests" / "test_web.py").write_text("import time\n\ntime.sleep(120)\n")
    code, problems, err = validate(capsys, tmp_path)
    assert code == 1, err
    assert problems == [
        "image 'web': images/web/tests: pytest did not collect the tests within 2 s (does a module block at "
        "import?); it was stopped"
    ], err


def test_the_repository_catalog_still_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    code = main(["validate", "--catalog", "catalog.yaml", "--out", str(tmp_path / "render")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "tests compile and pytest collects them: OK for base, app, web" in err
