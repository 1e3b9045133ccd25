"""Rendering: golden files, determinism, structural variants, and catalog strings that stay literal in Packer.

Golden files live in tests/golden/<case>/ (every rendered file but finalize.sh, which is compared with its
template). After an intended template change, regenerate them and review the diff:

    STAMP_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py -k golden

Injection proof, in three layers:
1. The model refuses a payload where a field has a pattern (the test asserts the refusal).
2. Where it accepts one, the rendered *.pkr.hcl files are byte-identical to a benign render (so python-hcl2
   parses them to the same blocks and attributes) and the payload sits only in the JSON variables file.
3. The real Packer reads that file: `packer console` on the rendered folder evaluates every variable and the
   locals built from them, and answers exactly the payload; `packer validate` resolves script and folder
   paths spelled with the payload, which it could not if it read them any other way. Packer also runs Go's
   text/template over values (shown here for real), so validation refuses `{{` instead.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hcl2
import jinja2.meta
import pytest

from stamp.catalog.load import Catalog, load_catalog
from stamp.commands.validate import VALIDATE_ENV
from stamp.drivers import packer, proc
from stamp.drivers.hcl import (
    BUILD_VARIABLES,
    FINALIZE_FILE,
    HCL_FILE,
    PLACEHOLDER_AMI,
    PLUGINS_FILE,
    TEMPLATES,
    VARS_FILE,
    Shape,
    render_image,
    template_environment,
    write_render,
)
from stamp.errors import CatalogError, CatalogProblems

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "render" / "catalog.yaml"
GOLDEN = HERE / "golden"
UPDATE_GOLDEN = os.environ.get("STAMP_UPDATE_GOLDEN") == "1"
OLD = (1, 6, 6)
NEW = (1, 9, 4)

needs_packer = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed")

PAYLOADS = {
    "hcl-break-out": '"\nami_groups = ["all"]',
    "hcl-interpolation": '${file("/etc/passwd")}',
    "hcl-directive": "%{ if true }x%{ endif }",
    "unicode": "Ünïcødé ☃ \u202e",
}
SHARING_KEYS = {"ami_users", "ami_groups", "ami_org_arns", "ami_ou_arns", "snapshot_users", "snapshot_groups"}


@pytest.fixture(scope="module")
def fixture_catalog() -> Catalog:
    return load_catalog(FIXTURE)


# --- golden files and determinism ---------------------------------------------------------------------------

GOLDEN_CASES = {
    "root-packer-1.6.6": ("base", OLD, None),
    "child-packer-1.9.4": ("web", NEW, None),
    "grandchild-placeholder-packer-1.6.6": ("api", OLD, PLACEHOLDER_AMI),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden(case: str, fixture_catalog: Catalog) -> None:
    name, version, placeholder = GOLDEN_CASES[case]
    files = render_image(fixture_catalog, name, packer_version=version, placeholder_parent_ami=placeholder)
    assert files.pop(FINALIZE_FILE).encode() == (TEMPLATES / FINALIZE_FILE).read_bytes()
    folder = GOLDEN / case
    if UPDATE_GOLDEN:
        shutil.rmtree(folder, ignore_errors=True)
        write_render(files, folder)
    expected = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    assert {name: text.encode() for name, text in files.items()} == expected, (
        "rendered output differs from tests/golden; if intended, run with STAMP_UPDATE_GOLDEN=1 and review"
    )


def test_render_is_deterministic_and_free_of_machine_paths(fixture_catalog: Catalog, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(FIXTURE.parent, moved)
    elsewhere = load_catalog(moved / FIXTURE.name)
    for name in ("base", "web"):
        first = render_image(fixture_catalog, name, packer_version=NEW)
        second = render_image(fixture_catalog, name, packer_version=NEW)
        assert [text.encode() for text in first.values()] == [text.encode() for text in second.values()]
        assert list(first) == sorted(first)
        assert render_image(elsewhere, name, packer_version=NEW) == first
        for file, text in first.items():
            assert str(FIXTURE.parent) not in text, file
            assert str(moved) not in text, file
            assert "timestamp(" not in text, file


def test_written_files_are_the_rendered_bytes_and_stale_inputs_go(fixture_catalog: Catalog, tmp_path: Path) -> None:
    out = tmp_path / "build" / "base"
    write_render(render_image(fixture_catalog, "base", packer_version=NEW), out)
    (out / "manifest.json").write_text("{}")
    files = render_image(fixture_catalog, "base", packer_version=OLD)
    write_render(files, out)
    assert not (out / PLUGINS_FILE).exists()
    assert (out / "manifest.json").exists(), "build outputs survive a re-render"
    for name, text in files.items():
        assert (out / name).read_bytes() == text.encode()
    assert os.access(out / FINALIZE_FILE, os.X_OK)


# --- structure ----------------------------------------------------------------------------------------------


def test_template_sees_only_structural_booleans() -> None:
    environment = template_environment()
    for template in TEMPLATES.glob("*.j2"):
        names = jinja2.meta.find_undeclared_variables(environment.parse(template.read_text()))
        assert names <= set(Shape.__dataclass_fields__), template.name
    assert all(field.type == "bool" for field in Shape.__dataclass_fields__.values())


def test_root_and_child_variants(fixture_catalog: Catalog) -> None:
    root = _parse(render_image(fixture_catalog, "base", packer_version=OLD)[HCL_FILE])
    child = _parse(render_image(fixture_catalog, "web", packer_version=OLD)[HCL_FILE])
    root_source = root["source"][0]["amazon-ebs"]["image"]
    child_source = child["source"][0]["amazon-ebs"]["image"]
    assert "source_ami_filter" in root_source and "source_ami" not in root_source
    assert child_source["source_ami"] == "${var.source_ami}" and "source_ami_filter" not in child_source
    assert [next(iter(p)) for p in root["build"][0]["provisioner"]] == ["shell", "shell"]
    assert [next(iter(p)) for p in child["build"][0]["provisioner"]] == ["shell", "file", "shell", "shell"]


def test_variables_file_matches_the_declared_variables(fixture_catalog: Catalog) -> None:
    for name in ("base", "web", "api"):
        files = render_image(fixture_catalog, name, packer_version=OLD, placeholder_parent_ami=PLACEHOLDER_AMI)
        declared = {next(iter(block)): block[next(iter(block))] for block in _parse(files[HCL_FILE])["variable"]}
        values = json.loads(files[VARS_FILE])
        assert set(values) <= set(declared), "an undeclared variable in the file is an error in Packer"
        required = {var for var, spec in declared.items() if "default" not in spec}
        assert required <= set(values)
        assert set(BUILD_VARIABLES) <= set(declared) - set(values), "build-time values are not rendered"
        assert all("default" in declared[var] for var in BUILD_VARIABLES)


def test_values_go_to_the_variables_file(fixture_catalog: Catalog) -> None:
    base = json.loads(render_image(fixture_catalog, "base", packer_version=OLD)[VARS_FILE])
    web = json.loads(render_image(fixture_catalog, "web", packer_version=OLD)[VARS_FILE])
    assert base["build_region"] == "us-east-1" and base["copy_regions"] == ["eu-west-1"]
    assert base["source_ami_name"] == "debian-12-amd64-*"
    assert base["source_ami_owners"] == ["136693071363", "amazon"]
    assert base["provision_scripts"] == ["images/base/10-setup.sh"]
    assert web["source_ami"] == "ami-0fedcba9876543210", "the parent's current release in the build region"
    assert (web["build_region"], web["copy_regions"]) == ("eu-west-1", [])
    assert (web["instance_type"], web["volume_size_gb"], web["files_dir"]) == ("t3.small", 12, "images/web/files")


def test_plugins_block_only_for_packer_1_7_and_later(fixture_catalog: Catalog) -> None:
    assert PLUGINS_FILE not in render_image(fixture_catalog, "base", packer_version=(1, 6, 6))
    for version in ((1, 7, 0), (1, 11, 2)):
        plugins = _parse(render_image(fixture_catalog, "base", packer_version=version)[PLUGINS_FILE])
        amazon = plugins["packer"][0]["required_plugins"][0]["amazon"]
        assert amazon["source"] == "github.com/hashicorp/amazon"


def test_no_sharing_in_templates(fixture_catalog: Catalog) -> None:
    """Publishing shares an image after its tests pass; Packer never does (ARCHITECTURE: sharing)."""
    for name in ("base", "web", "api"):
        files = render_image(fixture_catalog, name, packer_version=NEW, placeholder_parent_ami=PLACEHOLDER_AMI)
        for file in (HCL_FILE, PLUGINS_FILE):
            assert not SHARING_KEYS & set(_all_keys(_parse(files[file]))), file
            assert not any(key in files[file] for key in SHARING_KEYS), file


def test_every_resource_carries_the_build_id(fixture_catalog: Catalog) -> None:
    parsed = _parse(render_image(fixture_catalog, "base", packer_version=OLD)[HCL_FILE])
    source = parsed["source"][0]["amazon-ebs"]["image"]
    for key in ("tags", "snapshot_tags", "run_tags", "run_volume_tags"):
        assert source[key] in ("${local.image_tags}", "${local.run_tags}"), key
    run_tags = parsed["locals"][0]["run_tags"]
    assert run_tags == {"stamp:image": "${var.image_name}", "stamp:build-id": "${var.build_id}"}
    assert source["ami_name"] == "${var.image_name}-${var.build_id}"
    manifest = parsed["build"][0]["post-processor"][0]["manifest"]
    assert manifest["custom_data"]["build_id"] == "${var.build_id}"


def test_child_without_parent_release_says_release_the_parent_first(fixture_catalog: Catalog) -> None:
    with pytest.raises(CatalogError) as caught:
        render_image(fixture_catalog, "api", packer_version=OLD)
    assert "image 'api'" in caught.value.message and "release the parent first" in caught.value.message
    assert "stamp release web" in caught.value.hint
    values = json.loads(
        render_image(fixture_catalog, "api", packer_version=OLD, placeholder_parent_ami=PLACEHOLDER_AMI)[VARS_FILE]
    )
    assert values["source_ami"] == PLACEHOLDER_AMI


def test_parent_release_without_the_build_region(tmp_path: Path) -> None:
    data = _benign()
    del data["releases"]["base"][0]["amis"]["us-east-1"]
    catalog = _catalog(tmp_path, data)
    with pytest.raises(CatalogError, match=r"image 'web'.*no AMI in us-east-1.*release the parent first"):
        render_image(catalog, "web", packer_version=OLD)


def test_unknown_image(fixture_catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="no image named 'nope'"):
        render_image(fixture_catalog, "nope", packer_version=OLD)


# --- injection ----------------------------------------------------------------------------------------------

Setter = Callable[[dict[str, Any], str], None]


def _set(*path: str | int) -> Setter:
    def setter(data: dict[str, Any], value: str) -> None:
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return setter


def _rename_image(data: dict[str, Any], value: str) -> None:
    data["images"][value] = data["images"].pop("web")


# Where a payload ends up: "vars" (the variables file only), "nowhere" (not a Packer input), or refused.
FIELDS: dict[str, tuple[Setter, str]] = {
    "images.base.description": (_set("images", "base", "description"), "vars"),
    "images.web.description": (_set("images", "web", "description"), "vars"),
    "images.base.source.filter.name": (_set("images", "base", "source", "filter", "name"), "vars"),
    "images.base.provision[0]": (_set("images", "base", "provision", 0), "vars"),
    "images.base.files": (_set("images", "base", "files"), "vars"),
    "images.base.tests": (_set("images", "base", "tests"), "nowhere"),
    "releases.base[0].reason": (_set("releases", "base", 0, "reason"), "nowhere"),
    "images.base.source.filter.owners[0]": (_set("images", "base", "source", "filter", "owners", 0), "refused"),
    "images.base.ssh_username": (_set("images", "base", "ssh_username"), "refused"),
    "defaults.ssh_username": (_set("defaults", "ssh_username"), "refused"),
    "images.base.instance_type": (_set("images", "base", "instance_type"), "refused"),
    "defaults.instance_type": (_set("defaults", "instance_type"), "refused"),
    "images.base.regions[0]": (_set("images", "base", "regions", 0), "refused"),
    "images.web.parent": (_set("images", "web", "parent"), "refused"),
    "images.<name>": (_rename_image, "refused"),
    "images.base.share.accounts[0]": (_set("images", "base", "share", "accounts", 0), "refused"),
    "images.base.share.organizations[0]": (_set("images", "base", "share", "organizations", 0), "refused"),
    "releases.base[0].amis.us-east-1": (_set("releases", "base", 0, "amis", "us-east-1"), "refused"),
    "releases.base[0].build_id": (_set("releases", "base", 0, "build_id"), "refused"),
    "releases.base[0].commit": (_set("releases", "base", 0, "commit"), "refused"),
}
PATH_FIELDS = {"images.base.provision[0]": "scripts", "images.base.files": "files", "images.base.tests": "tests"}


@pytest.mark.parametrize("payload_name", sorted(PAYLOADS))
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_payload_is_refused_or_stays_a_value(field: str, payload_name: str, tmp_path: Path) -> None:
    setter, fate = FIELDS[field]
    payload = PAYLOADS[payload_name]
    benign = _render_all(_catalog(tmp_path / "benign", _benign()))
    data = _benign()
    # Paths must exist, so the payload becomes a file or folder name inside the repository.
    value = f"{PATH_FIELDS[field]}/{payload}" if field in PATH_FIELDS else payload
    setter(data, value)
    if fate == "refused":
        with pytest.raises(CatalogProblems) as caught:
            _catalog(tmp_path / "payload", data)
        assert any(_field_named(problem, field) for problem in caught.value.problems), caught.value.problems
        return
    rendered = _render_all(_catalog(tmp_path / "payload", data))
    for image, files in rendered.items():
        hcl_files = [name for name in files if name.endswith(".pkr.hcl")]
        for name in hcl_files:
            assert files[name] == benign[image][name], f"{image}/{name} changed with a catalog value"
            assert _parse(files[name]) == _parse(benign[image][name])
            assert payload not in files[name]
        if fate == "nowhere":
            assert files == benign[image]
    if fate == "vars":
        found = [_vars_holding(files[VARS_FILE], value) for files in rendered.values()]
        assert any(found), "the payload reaches Packer through the variables file"


def test_go_template_actions_are_refused_by_validation(tmp_path: Path) -> None:
    for field in ("images.base.description", "images.base.source.filter.name", "images.base.provision[0]"):
        data = _benign()
        setter, _fate = FIELDS[field]
        value = "{{ pwd }}"
        setter(data, f"{PATH_FIELDS[field]}/{value}" if field in PATH_FIELDS else value)
        with pytest.raises(CatalogProblems) as caught:
            _catalog(tmp_path / field, data)
        (problem,) = caught.value.problems
        assert re.match(rf"\S*catalog\.yaml:\d+:\d+: {re.escape(field)}: contains '{{{{'", problem), problem


@needs_packer
@pytest.mark.integration
@pytest.mark.parametrize("payload_name", sorted(PAYLOADS))
def test_packer_receives_payloads_literally(payload_name: str, tmp_path: Path) -> None:
    payload = PAYLOADS[payload_name]
    data = _benign()
    data["images"]["base"]["description"] = payload
    data["images"]["web"]["description"] = payload
    data["images"]["base"]["source"]["filter"]["name"] = payload
    data["images"]["base"]["provision"] = [f"scripts/{payload}", "scripts/setup.sh"]
    data["images"]["base"]["files"] = f"files/{payload}"
    catalog = _catalog(tmp_path / "repo", data)
    for image in ("base", "web"):
        folder = tmp_path / "build" / image
        write_render(render_image(catalog, image, packer_version=packer.detect_version()), folder)
        values = json.loads((folder / VARS_FILE).read_text())
        repo_root = str(catalog.root)
        answer = json.loads(_packer_console(folder, _everything(values), {"repo_root": repo_root}))
        assert answer["variables"] == values
        assert answer["variables"]["description"] == payload
        assert answer["scripts"] == [f"{repo_root}/{path}" for path in values["provision_scripts"]]
        if "files_dir" in values:
            assert answer["files_source"] == f"{repo_root}/files/{payload}/"
        if image == "base":
            assert answer["variables"]["source_ami_name"] == payload
            assert answer["scripts"][0] == f"{repo_root}/scripts/{payload}"
        # Packer stats every script and the files folder while validating: it found them by these names.
        assert packer.validate(folder, VALIDATE_ENV, variables={"repo_root": repo_root}) == []


@needs_packer
@pytest.mark.integration
def test_validate_really_resolves_the_paths(fixture_catalog: Catalog, tmp_path: Path) -> None:
    """The control for the test above: with the paths not there, the same validation fails, naming them."""
    folder = tmp_path / "base"
    write_render(render_image(fixture_catalog, "base", packer_version=packer.detect_version()), folder)
    problems = packer.validate(folder, VALIDATE_ENV, variables={"repo_root": str(tmp_path / "empty")})
    assert any("images/base/10-setup.sh" in problem for problem in problems), problems


@needs_packer
@pytest.mark.integration
def test_packer_runs_go_templates_in_values(fixture_catalog: Catalog, tmp_path: Path) -> None:
    """Why validation refuses `{{`: Packer expands it inside a *value*, here into the build folder's path."""
    folder = tmp_path / "base"
    write_render(render_image(fixture_catalog, "base", packer_version=packer.detect_version()), folder)
    values = json.loads((folder / VARS_FILE).read_text())
    values["provision_scripts"] = ["stamp-{{ pwd }}-probe.sh"]
    (folder / VARS_FILE).write_text(json.dumps(values))
    problems = " ".join(packer.validate(folder, VALIDATE_ENV, variables={"repo_root": str(FIXTURE.parent)}))
    assert f"stamp-{folder.resolve()}-probe.sh" in problems.replace("\n", ""), problems


# --- helpers ------------------------------------------------------------------------------------------------

RELEASE = {
    "version": 1,
    "amis": {"us-east-1": "ami-0123456789abcdef0", "eu-west-1": "ami-0fedcba9876543210"},
    "built_at": "2026-11-20T10:00:00Z",
    "commit": "1a2b3c4d5e6f",
    "build_id": "base-1-abc123",
    "source": {"amis": {"us-east-1": "ami-0aaaaaaaaaaaaaaaa"}},
    "verified": "passed",
    "status": "current",
}


def _benign() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "version": 1,
            "defaults": {"regions": ["us-east-1", "eu-west-1"], "instance_type": "t3.micro", "ssh_username": "admin"},
            "images": {
                "base": {
                    "description": "benign",
                    "source": {"filter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}},
                    "provision": ["scripts/setup.sh"],
                    "files": "files/base",
                    "tests": "tests/base",
                    "regions": ["us-east-1", "eu-west-1"],
                    "share": {
                        "accounts": ["111122223333"],
                        "organizations": ["arn:aws:organizations::111122223333:organization/o-exampleorg1"],
                    },
                },
                "web": {"description": "child", "parent": "base", "provision": ["scripts/setup.sh"]},
            },
            "releases": {"base": [RELEASE]},
        }
    )


def _catalog(root: Path, data: dict[str, Any]) -> Catalog:
    """Write `data` as catalog.yaml in `root`, creating every script and folder it names, and load it."""
    root.mkdir(parents=True, exist_ok=True)
    for spec in data["images"].values():
        for script in spec.get("provision", []):
            _make(root, script).write_text("#!/usr/bin/env bash\nset -euo pipefail\necho probe\n")
        for key in ("files", "tests"):
            if isinstance(spec.get(key), str):
                _make(root, spec[key]).mkdir(parents=True, exist_ok=True)
                (root / spec[key] / "probe.txt").write_text("probe\n")
    path = root / "catalog.yaml"
    # JSON is YAML; the loader sees quoted strings, so every payload arrives as written.
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return load_catalog(path)


def _make(root: Path, relative: str) -> Path:
    target = root / relative
    if ".." not in Path(relative).parts and not Path(relative).is_absolute():
        target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _render_all(catalog: Catalog) -> dict[str, dict[str, str]]:
    return {name: render_image(catalog, name, packer_version=NEW) for name in sorted(catalog.images)}


def _parse(text: str) -> dict[str, Any]:
    """Blocks and attributes as python-hcl2 reads them; comments left out, labels and strings unquoted."""
    options = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    parsed: dict[str, Any] = hcl2.loads(text, serialization_options=options)
    return parsed


def _all_keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _all_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _all_keys(item)


def _vars_holding(text: str, value: str) -> bool:
    values = json.loads(text)
    return any(item == value or (isinstance(item, list) and value in item) for item in values.values())


def _field_named(problem: str, field: str) -> bool:
    return ": images." in problem if field == "images.<name>" else f": {field}: " in problem


def _everything(values: dict[str, Any]) -> str:
    """One HCL expression (the console answers one line) with every variable and derived local, as JSON."""
    variables = ", ".join(f"{name} = var.{name}" for name in sorted(values))
    files = ", files_source = local.files_source" if "files_dir" in values else ""
    return f"jsonencode({{ variables = {{ {variables} }}, scripts = local.scripts, run_tags = local.run_tags{files} }})"


def _packer_console(folder: Path, expression: str, variables: dict[str, str]) -> str:
    """What the real Packer makes of one HCL expression in `folder` (`packer console` answers only its last
    input line, so one expression)."""
    args = [packer.PACKER, "console", *packer.var_args(variables), "."]
    done = proc.run(args, cwd=folder, env=packer.packer_env(None), input_text=expression + "\n", timeout=120)
    return done.stdout.rstrip("\n")
