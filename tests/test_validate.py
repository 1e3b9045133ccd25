"""`validate_catalog`: every image rendered and checked by the real Packer; each problem names image and file."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import stamp.commands.validate
from stamp.catalog.load import Catalog, load_catalog
from stamp.commands.validate import VALIDATE_ENV, validate_catalog
from stamp.drivers.hcl import PLACEHOLDER_AMI, VARS_FILE, render_image
from stamp.errors import CatalogProblems

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "render" / "catalog.yaml"
REPO_CATALOG = HERE.parent / "catalog.yaml"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed"),
]


def _copy_fixture(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE.parent, tmp_path / "repo")
    return tmp_path / "repo" / FIXTURE.name


def test_fixture_catalog_is_valid(tmp_path: Path) -> None:
    catalog = load_catalog(FIXTURE)
    assert validate_catalog(catalog, work_dir=tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api", "base", "web"]
    # api's parent (web) has no release: it is checked against a placeholder parent AMI.
    assert PLACEHOLDER_AMI in (tmp_path / "api" / VARS_FILE).read_text()
    assert PLACEHOLDER_AMI not in (tmp_path / "web" / VARS_FILE).read_text()


def test_repository_catalog_is_valid(tmp_path: Path) -> None:
    # check_files=False: the image scripts may be mid-edit; Packer still stats every script it finds named.
    catalog = load_catalog(REPO_CATALOG, check_files=False)
    assert validate_catalog(catalog, work_dir=tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(catalog.images)


def test_missing_script_is_reported_with_image_and_file(tmp_path: Path) -> None:
    catalog = load_catalog(_copy_fixture(tmp_path))
    (catalog.root / "images" / "web" / "20-configure.sh").unlink()
    problems = validate_catalog(catalog, work_dir=tmp_path / "work")
    assert len(problems) == 1, problems
    assert problems[0].startswith("image 'web': ")
    assert f"{tmp_path / 'work' / 'web' / 'image.pkr.hcl'}" in problems[0]
    assert "images/web/20-configure.sh" in problems[0] and "\n" not in problems[0]


def test_unformatted_template_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog(FIXTURE)

    def sloppy(catalog: Catalog, name: str, **kwargs: object) -> dict[str, str]:
        files = render_image(catalog, name, **kwargs)  # type: ignore[arg-type]
        if name == "base":
            files["image.pkr.hcl"] = files["image.pkr.hcl"].replace("  ssh_pty              = true", "ssh_pty=true")
        return files

    monkeypatch.setattr(stamp.commands.validate, "render_image", sloppy)
    problems = validate_catalog(catalog, work_dir=tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith("image 'base': ") and "image.pkr.hcl" in problems[0]
    assert "canonical format" in problems[0]


def test_go_template_is_refused_with_its_line_before_rendering(tmp_path: Path) -> None:
    path = _copy_fixture(tmp_path)
    path.write_text(path.read_text().replace("Fixture root image", "costs {{ 2 }} cents"))
    with pytest.raises(CatalogProblems) as caught:
        load_catalog(path)
    (problem,) = caught.value.problems
    assert re.search(r"catalog\.yaml:\d+:\d+: images\.base\.description: contains '\{\{'", problem), problem
    assert not (tmp_path / "work").exists()


def test_packer_never_sees_real_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert VALIDATE_ENV["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert VALIDATE_ENV["AWS_CONFIG_FILE"] == os.devnull
    assert VALIDATE_ENV["AWS_PROFILE"] == "" and VALIDATE_ENV["AWS_SESSION_TOKEN"] == ""
    # A profile that does not exist would make the SDK fail, if validate looked for it.
    monkeypatch.setenv("AWS_PROFILE", "stamp-no-such-profile")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKINGKEY00")
    assert validate_catalog(load_catalog(FIXTURE), work_dir=tmp_path) == []
