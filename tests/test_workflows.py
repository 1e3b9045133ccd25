"""The GitHub workflows: hardening rules, and merge.yml consuming exactly what `stamp plan --format matrix` prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from builders import run_step_script
from stamp.catalog.load import build_catalog, parse
from stamp.catalog.rebuilds import plan
from stamp.commands.plan import format_matrix

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)\s*(?:#\s*(?P<comment>.*))?$")
LAYER_MATRIX = re.compile(r"^\$\{\{ toJSON\(fromJSON\(needs\.plan\.outputs\.(\w+)\)\.layers\[(\d+)\]\) \}\}$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def jobs(path: Path) -> dict[str, dict[str, Any]]:
    found = load(path)["jobs"]
    assert isinstance(found, dict)
    return found


def steps(path: Path) -> list[dict[str, Any]]:
    return [step for job in jobs(path).values() for step in job.get("steps", [])]


def test_the_expected_workflows_exist() -> None:
    assert {p.name for p in FILES} == {"build-layer.yml", "merge.yml", "pages.yml", "pr.yml", "schedule.yml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_with_a_version_comment(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = USES_LINE.match(line)
        if not match:
            continue
        ref = match["ref"]
        if ref.startswith("./"):
            continue  # a workflow of this repository, at the same commit
        assert SHA_PIN.match(ref), f"{path.name}:{number}: {ref} is not pinned to a full commit SHA"
        comment = match["comment"] or ""
        assert re.match(r"v\d+", comment), f"{path.name}:{number}: {ref} needs a `# vX.Y.Z` comment"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_checkout_drops_its_credentials(path: Path) -> None:
    checkouts = [s for s in steps(path) if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts, f"{path.name} has no checkout"
    for step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: {step}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_run_blocks_take_event_data_only_through_env(path: Path) -> None:
    for step in steps(path):
        script = step.get("run")
        if script is None:
            continue
        assert "${{ github.event." not in script, f"{path.name}: {step.get('name')}"
        # Branch names are attacker-chosen too; everything else goes through env as well, for one simple rule.
        assert "${{" not in script, f"{path.name}: {step.get('name')} expands an expression inside run:"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_permissions_are_empty_at_the_top_and_granted_per_job(path: Path) -> None:
    data = load(path)
    assert data["permissions"] == {}
    for name, job in jobs(path).items():
        assert "permissions" in job, f"{path.name}: job {name} must say which permissions it needs"
    assert "pull_request_target" not in data["on"]
    assert "workflow_run" not in data["on"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_aws_access_is_oidc_with_a_role_from_a_repository_variable(path: Path) -> None:
    for step in steps(path):
        if not str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
            continue
        given = step["with"]
        assert re.fullmatch(r"\$\{\{ vars\.STAMP_(PLAN|BUILD|PUBLISH)_ROLE_ARN \}\}", given["role-to-assume"])
        assert not {"aws-access-key-id", "aws-secret-access-key", "aws-session-token"} & set(given)


def test_pull_requests_get_only_the_read_only_role() -> None:
    roles = {s["with"]["role-to-assume"] for s in steps(WORKFLOWS / "pr.yml") if "role-to-assume" in s.get("with", {})}
    assert roles == {"${{ vars.STAMP_PLAN_ROLE_ARN }}"}
    pr_jobs = jobs(WORKFLOWS / "pr.yml")
    assert pr_jobs["comment"]["permissions"] == {"pull-requests": "write"}
    for name, job in pr_jobs.items():
        granted = {k for k, v in job["permissions"].items() if v == "write"}
        assert granted <= {"pull-requests", "id-token"}, name
        assert "environment" not in job, name


def test_build_and_publish_roles_are_used_only_from_their_environments() -> None:
    for path in FILES:
        for job in jobs(path).values():
            roles = {str(s.get("with", {}).get("role-to-assume")) for s in job.get("steps", [])}
            if any("BUILD_ROLE" in r for r in roles):
                assert job.get("environment") == "build"
            if any("PUBLISH_ROLE" in r for r in roles):
                assert job.get("environment") == "publish"


def test_merges_never_race_on_the_catalog() -> None:
    assert load(WORKFLOWS / "merge.yml")["concurrency"] == {"group": "catalog-main", "cancel-in-progress": False}


def matrix_keys_used(job: dict[str, Any]) -> set[str]:
    return set(re.findall(r"\bmatrix\.([A-Za-z_][A-Za-z0-9_-]*)", json.dumps(job)))


def test_merge_yml_consumes_exactly_what_plan_matrix_prints() -> None:
    merge = jobs(WORKFLOWS / "merge.yml")

    # The plan job publishes the matrix as an output, taken from `stamp plan --format matrix`.
    plan_job = merge["plan"]
    plan_step = next(s for s in plan_job["steps"] if s.get("id") == "plan")
    assert "--format matrix > matrix.json" in plan_step["run"]
    assert 'echo "matrix=$(jq -c . matrix.json)"' in plan_step["run"]
    assert 'echo "layers=$layers"' in plan_step["run"]
    assert plan_job["outputs"]["matrix"] == "${{ steps.plan.outputs.matrix }}"

    # One job per layer, each consuming `fromJSON(needs.plan.outputs.matrix).layers[N]`, each after the last.
    layer_jobs: dict[int, dict[str, Any]] = {}
    for name, job in merge.items():
        match = LAYER_MATRIX.match(str(job.get("with", {}).get("matrix", "")))
        if match:
            assert match[1] == "matrix"
            layer_jobs[int(match[2])] = job
            assert name == f"build-layer-{match[2]}"
    assert sorted(layer_jobs) == list(range(len(layer_jobs)))
    assert f'MAX_LAYERS: "{len(layer_jobs)}"' in (WORKFLOWS / "merge.yml").read_text()
    for index, job in layer_jobs.items():
        assert f"fromJSON(needs.plan.outputs.layers) > {index}" in job["if"]
        if index:
            assert f"build-layer-{index - 1}" in job["needs"]
            assert f"needs.build-layer-{index - 1}.result == 'success'" in job["if"]
        assert job["uses"] == "./.github/workflows/build-layer.yml"

    # The called workflow runs one job per matrix entry, and uses exactly the keys each entry has.
    called = jobs(WORKFLOWS / "build-layer.yml")
    assert list(called) == ["build"]
    build = called["build"]
    assert build["strategy"]["matrix"] == "${{ fromJSON(inputs.matrix) }}"
    used = matrix_keys_used(build)

    text = (REPO / "catalog.yaml").read_text()
    catalog = build_catalog(parse(text, REPO / "catalog.yaml"), text, REPO / "catalog.yaml", check_files=False)
    root = next(n for n, image in catalog.images.items() if image.parent is None)
    changed = [catalog.images[root].provision[0]]
    result = plan(catalog, catalog, changed, source_lookup=None, now=datetime(2026, 11, 26, tzinfo=UTC))
    printed = json.loads(format_matrix(result))
    assert 1 < len(printed["layers"]) <= len(layer_jobs)
    for index, layer in enumerate(printed["layers"]):
        assert layer_jobs[index]  # a job exists for every layer the real catalog can produce
        for entry in layer["include"]:
            assert set(entry) == used, f"matrix entry {entry} vs keys used by build-layer.yml: {used}"
            assert entry["layer"] == index


def test_record_job_waits_for_every_layer_and_records_partial_success() -> None:
    merge = jobs(WORKFLOWS / "merge.yml")
    layers = [name for name in merge if name.startswith("build-layer-")]
    record = merge["record"]
    assert set(record["needs"]) == {"plan", *layers}
    assert "!cancelled()" in record["if"]
    assert record["environment"] == "publish"
    step = next(s for s in record["steps"] if s.get("id") == "record")
    assert "RECORD_MODE" in step["run"]
    assert "git rebase" in step["run"]
    # The record commit claims the plan built, and stamp/built moves, only when every planned layer built.
    complete = step["env"]["COMPLETE"]
    assert "!contains(needs.*.result, 'failure')" in complete
    assert "needs.plan.outputs.unbuilt == ''" in complete
    runs = [s.get("run") for s in record["steps"]]
    assert runs[-2] == "stamp publish"
    assert record["steps"][-1]["if"] == "needs.plan.outputs.unbuilt != ''"
    assert "exit 1" in runs[-1]


# -- who can push to main, and what runs with the publish role (docs/adopting.md, "Threat model") ----------


def app_token_steps() -> list[tuple[Path, str, dict[str, Any]]]:
    return [
        (path, name, s)
        for path in FILES
        for name, job in jobs(path).items()
        for s in job.get("steps", [])
        if str(s.get("uses", "")).startswith("actions/create-github-app-token@")
    ]


def test_the_record_commit_is_pushed_with_the_stamp_app_token_pinned_by_commit() -> None:
    found = app_token_steps()
    assert [(path.name, name) for path, name, _ in found] == [("merge.yml", "record")]
    _, _, app = found[0]
    assert SHA_PIN.match(app["uses"])
    assert app["id"] == "app"
    assert app["if"] == "vars.STAMP_APP_CLIENT_ID != ''"
    given = app["with"]
    assert given["client-id"] == "${{ vars.STAMP_APP_CLIENT_ID }}"
    assert given["private-key"] == "${{ secrets.STAMP_APP_PRIVATE_KEY }}"
    # Only what the record step does: push catalog.yaml and the tag, open or update a pull request.
    assert {k: v for k, v in given.items() if k.startswith("permission-")} == {
        "permission-contents": "write",
        "permission-pull-requests": "write",
    }
    record = jobs(WORKFLOWS / "merge.yml")["record"]
    step = next(s for s in record["steps"] if s.get("id") == "record")
    assert step["env"]["GH_TOKEN"] == "${{ steps.app.outputs.token || github.token }}"  # noqa: S105 - an expression
    assert step["env"]["APP_SLUG"] == "${{ steps.app.outputs.app-slug }}"


def test_without_the_app_the_record_goes_to_a_pull_request() -> None:
    record = jobs(WORKFLOWS / "merge.yml")["record"]
    mode = next(s for s in record["steps"] if s.get("id") == "record")["env"]["RECORD_MODE"]
    assert mode.endswith("(vars.STAMP_APP_CLIENT_ID != '' && 'commit') || 'pr' }}"), mode
    dispatch = load(WORKFLOWS / "merge.yml")["on"]["workflow_dispatch"]["inputs"]["record_mode"]
    assert dispatch["default"] == "auto"
    assert "inputs.record_mode != 'auto'" in mode


def test_the_app_key_and_the_publish_role_stay_in_the_publish_environment() -> None:
    for path in FILES:
        for name, job in jobs(path).items():
            text = json.dumps(job)
            if "secrets." in text:
                assert job.get("environment") == "publish", f"{path.name}: {name} reads a secret outside publish"
                assert re.findall(r"secrets\.(\w+)", text) == ["STAMP_APP_PRIVATE_KEY"]


def test_jobs_with_the_publish_role_run_only_code_from_main() -> None:
    for path in FILES:
        events = load(path)["on"]
        for name, job in jobs(path).items():
            if job.get("environment") != "publish":
                continue
            # Never an event that runs a pull request's or another branch's code by default.
            assert set(events) <= {"push", "schedule", "workflow_dispatch"}, path.name
            if "push" in events:
                assert events["push"] == {"branches": ["main"]}, path.name
            for s in job["steps"]:
                if str(s.get("uses", "")).startswith("actions/checkout@"):
                    assert s["with"].get("ref", "main") == "main", f"{path.name}: {name} checks out {s['with']}"


def upload_steps() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, s)
        for path in FILES
        for s in steps(path)
        if str(s.get("uses", "")).startswith("actions/upload-artifact@")
    ]


def test_every_artifact_upload_replaces_the_one_of_a_previous_attempt() -> None:
    found = upload_steps()
    assert {path.name for path, _ in found} == {"build-layer.yml", "pr.yml"}
    for path, s in found:
        assert s["with"].get("overwrite") is True, f"{path.name}: a re-run would fail on the artifact's name"


def test_build_artifacts_never_carry_a_private_key() -> None:
    (build,) = [s for path, s in upload_steps() if path.name == "build-layer.yml"]
    paths = [line.strip() for line in build["with"]["path"].splitlines() if line.strip()]
    assert paths[0] == "build/${{ matrix.image }}/"
    assert "!**/id_*" in paths


PIPE_INTO_COMMAND = re.compile(r"\|\s*(?:head|tail|sort|uniq|tee|grep|sed|awk|cut|tr|wc|xargs|jq|cat)\b")
PIPEFAIL = re.compile(r"^\s*set -[a-z]*o pipefail\b", re.M)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_scripts_with_pipelines_fail_when_a_stage_fails(path: Path) -> None:
    for s in steps(path):
        script = s.get("run", "")
        if PIPE_INTO_COMMAND.search(script):
            assert PIPEFAIL.search(script), f"{path.name}: {s.get('name')} pipes without set -o pipefail"


def test_the_plan_comment_lookup_fails_instead_of_posting_a_second_comment() -> None:
    comment = jobs(WORKFLOWS / "pr.yml")["comment"]
    script = next(s["run"] for s in comment["steps"] if "run" in s)
    assert PIPEFAIL.search(script)
    assert "| head" not in script, "head would hide a failed lookup (and with pipefail, break the pipe)"


def test_every_run_script_passes_shellcheck(tmp_path: Path) -> None:
    scripts = []
    for path in FILES:
        for name, job in jobs(path).items():
            for index, s in enumerate(job.get("steps", [])):
                if "run" in s:
                    script = tmp_path / f"{path.stem}-{name}-{index}.sh"
                    # GitHub runs a `run:` without `shell:` as `bash -e {0}`.
                    script.write_text("#!/usr/bin/env bash\nset -e\n" + s["run"])
                    scripts.append(str(script))
    done = subprocess.run(
        ["shellcheck", "--severity=warning", *scripts], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_plan_deeper_than_the_layer_jobs_builds_what_it_can_and_says_what_it_left(tmp_path: Path) -> None:
    plan_step = next(s for s in jobs(WORKFLOWS / "merge.yml")["plan"]["steps"] if s.get("id") == "plan")
    max_layers = int(plan_step["env"]["MAX_LAYERS"])
    names = [f"image-{index}" for index in range(max_layers + 2)]
    matrix = {"layers": [{"include": [{"image": name, "layer": index}]} for index, name in enumerate(names)]}
    stub = tmp_path / "bin" / "stamp"
    stub.parent.mkdir()
    stub.write_text(
        f"#!/bin/sh\ncase \"$*\" in *'--format matrix'*) echo '{json.dumps(matrix)}' ;; *) echo '# plan' ;; esac\n"
    )
    stub.chmod(0o755)
    script = tmp_path / "plan.sh"
    script.write_text(plan_step["run"])
    outputs = tmp_path / "outputs"
    outputs.write_text("")
    env = {
        "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}",
        "BASE": "0" * 40,
        "HEAD_SHA": "1" * 40,
        "MAX_LAYERS": str(max_layers),
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": os.devnull,
    }
    assert set(plan_step["env"]) == {"BASE", "HEAD_SHA", "MAX_LAYERS"}
    done = run_step_script(script, cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::error::the plan has" in done.stdout
    given = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert given["layers"] == str(max_layers), "every layer job runs"
    assert given["unbuilt"] == " ".join(names[max_layers:]), "the record job fails the run naming these"
    assert json.loads(given["matrix"]) == matrix


def test_the_adopting_guide_gives_no_bypass_to_github_actions_and_has_a_threat_model() -> None:
    guide = (REPO / "docs" / "adopting.md").read_text()
    flat = " ".join(guide.split())
    # Any sentence naming GitHub Actions (or its token) and a bypass says that it must not have one.
    for sentence in re.split(r"(?<=[.;:])\s", flat):
        if re.search(r"bypass", sentence, re.I) and re.search(r"GitHub Actions|GITHUB_TOKEN", sentence):
            assert re.search(r"\b(?:never|not|no)\b", sentence), sentence
    assert "the only bypass actor" in flat
    model = guide.split("## 5. Threat model", 1)[1].split("\n## ", 1)[0]
    for who in ("pull request authors", "writers", "reviewers", "stamp App", "`plan`", "`build`", "`publish`"):
        assert who in model, who
    assert "STAMP_APP_PRIVATE_KEY" in guide and "STAMP_APP_CLIENT_ID" in guide


def test_the_janitor_collects_only_what_no_running_build_can_own() -> None:
    schedule = jobs(WORKFLOWS / "schedule.yml")
    assert any(s.get("run") == "stamp gc --older-than 2h" for s in schedule["janitor"]["steps"])
    # Scheduled revocations (`stamp revoke --at`) are applied by a publish on a schedule, under the publish role.
    assert any(s.get("run") == "stamp publish" for s in schedule["revocations"]["steps"])
    assert schedule["revocations"]["environment"] == "publish"
    build = jobs(WORKFLOWS / "build-layer.yml")["build"]
    assert build["timeout-minutes"] < 120


def test_adopting_guide_policies_parse_and_match_the_workflows() -> None:
    """The guide links the policy files (iam/, their one source) instead of repeating them; their trust policies name
    the repository's `sub` claims for exactly the environments the workflows' jobs use."""
    guide = (REPO / "docs" / "adopting.md").read_text()
    assert not re.findall(r"```json\n(.*?)```", guide, re.S), "policies live in iam/*.json: link them"
    files = sorted((REPO / "iam").rglob("*.json"))
    for path in files:
        assert f"(../{path.relative_to(REPO)})" in guide, f"docs/adopting.md does not link {path.relative_to(REPO)}"
    trust = [json.loads(path.read_text()) for path in sorted((REPO / "iam" / "trust").glob("*.json"))]
    subs = {
        str(sub).replace("${Repository}", "example-org/images")
        for policy in trust
        for statement in policy["Statement"]
        for sub in _as_list(
            statement.get("Condition", {}).get("StringEquals", {}).get("token.actions.githubusercontent.com:sub")
        )
    }
    assert "repo:example-org/images:pull_request" in subs
    named = [job["environment"] for path in FILES for job in jobs(path).values() if "environment" in job]
    environments = {env if isinstance(env, str) else env["name"] for env in named}
    # github-pages: pages.yml deploys the catalog site with GitHub's own token, no AWS role.
    environments.discard("github-pages")
    assert environments == {"build", "publish"}
    assert {s.rpartition(":environment:")[2] for s in subs if ":environment:" in s} == environments


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
