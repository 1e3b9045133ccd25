"""`stamp plan` against real git repositories: each change gives exactly the expected images and reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from stamp.catalog.load import Image
from stamp.catalog.rebuilds import Plan, PublishOnly, Reason, SourceLookup
from stamp.commands.plan import plan_between
from stamp.drivers.git import catalog_at, changed_paths
from stamp.drivers.proc import run
from stamp.errors import CatalogError, CatalogProblems

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BASE_US = "ami-0aaaaaaaaaaaaaaa1"
BASE_EU = "ami-0aaaaaaaaaaaaaaa2"

# The shape of the repository's catalog.yaml (three images, base → web, app), with releases for every image
# so that only the change under test gives a reason.
CATALOG = """\
# A test catalog shaped like the real one.
version: 1

defaults:
  regions: [us-east-1, eu-west-1]
  instance_type: t3.micro
  ssh_username: admin
  retention: {keep: 3, grace_days: 14}
  rebuild: {max_age_days: 30, on_new_source: true}

images:
  base:
    description: Debian 12, patched
    source:
      filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}
    provision:
      - images/base/scripts/10-upgrade.sh
      - images/base/scripts/20-sshd-hardening.sh
    tests: images/base/tests
    share:
      accounts: ["111122223333"]

  web:
    description: nginx
    parent: base
    provision:
      - images/web/scripts/10-nginx.sh
    files: images/web/files
    tests: images/web/tests
    share: {accounts: ["111122223333", "444455556666"]}

  app:
    description: the app service
    parent: base
    provision:
      - images/app/scripts/10-user.sh
    files: images/app/files
    tests: images/app/tests
    share: {accounts: ["444455556666"]}

releases:
  base:
    - version: 2
      amis: {us-east-1: ami-0b00000000000000a, eu-west-1: ami-0b00000000000000b}
      built_at: "2026-11-20T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: base-2-aaaaaa
      source: {amis: {us-east-1: ami-0aaaaaaaaaaaaaaa1, eu-west-1: ami-0aaaaaaaaaaaaaaa2}}
      verified: passed
      status: current
  web:
    - version: 1
      amis: {us-east-1: ami-0c00000000000000a, eu-west-1: ami-0c00000000000000b}
      built_at: "2026-11-20T11:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: web-1-bbbbbb
      source: {image: base, version: 2}
      verified: passed
      status: current
  app:
    - version: 1
      amis: {us-east-1: ami-0d00000000000000a, eu-west-1: ami-0d00000000000000b}
      built_at: "2026-11-20T11:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: app-1-cccccc
      source: {image: base, version: 2}
      verified: passed
      status: current
"""

FILES = {
    "images/base/scripts/10-upgrade.sh": "#!/usr/bin/env bash\nset -euo pipefail\napt-get update\n",
    "images/base/scripts/20-sshd-hardening.sh": "#!/usr/bin/env bash\nset -euo pipefail\n",
    "images/base/tests/test_base.py": "def test_base() -> None:\n    pass\n",
    "images/web/scripts/10-nginx.sh": "#!/usr/bin/env bash\nset -euo pipefail\n",
    "images/web/files/index.html": "<p>hello</p>\n",
    "images/web/tests/test_web.py": "def test_web() -> None:\n    pass\n",
    "images/app/scripts/10-user.sh": "#!/usr/bin/env bash\nset -euo pipefail\n",
    "images/app/files/app.py": "print('app')\n",
    "images/app/tests/test_app.py": "def test_app() -> None:\n    pass\n",
    "tools/stamp/templates/image.pkr.hcl.j2": "# template\n",
}


class Repo:
    """A throwaway git repository holding a catalog and its image files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return run(["git", *args], cwd=self.root, echo=False).stdout.strip()

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def edit(self, path: str, old: str, new: str) -> None:
        text = (self.root / path).read_text()
        assert old in text, f"{old!r} not in {path}"
        self.write(path, text.replace(old, new, 1))

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def plan(self, base: str, head: str | None = "HEAD", lookup: SourceLookup | None = None) -> Plan:
        return plan_between(self.root, base, head, source_lookup=lookup, now=NOW)


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must not depend on (or write to) the machine's git configuration.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "stamp tests")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "tests@example.invalid")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    made = Repo(tmp_path / "catalog-repo")
    made.write("catalog.yaml", CATALOG)
    for path, text in FILES.items():
        made.write(path, text)
    made.commit("initial catalog")
    return made


def summary(plan: Plan) -> dict[str, list[tuple[str, str]]]:
    return {item.name: [(r.kind, r.detail) for r in item.reasons] for item in plan.images}


def test_editing_a_base_script_rebuilds_base_then_its_children(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("images/base/scripts/10-upgrade.sh", "apt-get update", "apt-get update && apt-get -y upgrade")
    repo.commit("base: upgrade everything")

    result = repo.plan(base)

    assert summary(result) == {
        "base": [("file_changed", "images/base/scripts/10-upgrade.sh")],
        "app": [("parent_rebuilt", "base")],
        "web": [("parent_rebuilt", "base")],
    }
    assert result.order() == ["base", "app", "web"]
    assert result.layers() == [["base"], ["app", "web"]]
    assert result.publish_only == ()


def test_share_change_builds_nothing_but_lists_publish_only(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit(
        "catalog.yaml", 'share: {accounts: ["111122223333", "444455556666"]}', 'share: {accounts: ["111122223333"]}'
    )
    repo.commit("web: stop sharing with 444455556666")

    result = repo.plan(base)

    assert result.images == ()
    assert result.publish_only == (PublishOnly("web", (Reason("share_changed", "share.accounts: -444455556666"),)),)


def test_inherited_default_rebuilds_every_image(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("catalog.yaml", "  instance_type: t3.micro\n", "  instance_type: t3.small\n")
    repo.commit("bigger build instances")

    change = ("definition_changed", 'defaults.instance_type: "t3.micro" → "t3.small" (inherited)')
    assert summary(repo.plan(base)) == {
        "base": [change],
        "app": [change, ("parent_rebuilt", "base")],
        "web": [change, ("parent_rebuilt", "base")],
    }


def test_default_overridden_by_an_image_leaves_that_image_alone(repo: Repo) -> None:
    repo.edit(
        "catalog.yaml",
        "    description: Debian 12, patched\n",
        "    description: Debian 12, patched\n    instance_type: t3.large\n",
    )
    base = repo.commit("base builds on a large instance")
    repo.edit("catalog.yaml", "  instance_type: t3.micro\n", "  instance_type: t3.small\n")
    repo.commit("bigger build instances for the others")

    change = ("definition_changed", 'defaults.instance_type: "t3.micro" → "t3.small" (inherited)')
    assert summary(repo.plan(base)) == {"app": [change], "web": [change]}


def test_commit_touching_only_releases_builds_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit(
        "catalog.yaml",
        "  web:\n    - version: 1\n",
        "  web:\n"
        "    - version: 2\n"
        "      amis: {us-east-1: ami-0e00000000000000a, eu-west-1: ami-0e00000000000000b}\n"
        '      built_at: "2026-11-25T11:00:00Z"\n'
        "      commit: 2b3c4d5e6f70\n"
        "      build_id: web-2-dddddd\n"
        "      source: {image: base, version: 2}\n"
        "      verified: passed\n"
        "      status: current\n"
        "    - version: 1\n",
    )
    # The older release is no longer current: the line right before app's releases.
    repo.edit("catalog.yaml", "      status: current\n  app:\n", "      status: previous\n  app:\n")
    repo.commit("stamp record: web v2")

    result = repo.plan(base)

    assert result.images == ()
    assert result.publish_only == ()


def test_newer_vendor_image_rebuilds_base_and_children(repo: Repo) -> None:
    asked: list[tuple[str, str]] = []

    def lookup(image: Image, region: str) -> str | None:
        asked.append((image.name, region))
        return "ami-0ffffffffffffff01" if region == "us-east-1" else BASE_EU

    result = repo.plan("HEAD", lookup=lookup)

    assert summary(result) == {
        "base": [("new_source_image", f"us-east-1: {BASE_US} → ami-0ffffffffffffff01")],
        "app": [("parent_rebuilt", "base")],
        "web": [("parent_rebuilt", "base")],
    }
    # Only root images have a vendor source to look up.
    assert asked == [("base", "us-east-1"), ("base", "eu-west-1")]


def test_release_older_than_max_age_rebuilds_it_and_children(repo: Repo) -> None:
    repo.edit("catalog.yaml", 'built_at: "2026-11-20T10:00:00Z"', 'built_at: "2026-10-01T10:00:00Z"')
    repo.commit("an old base release")

    assert summary(repo.plan("HEAD")) == {
        "base": [("release_too_old", "v2 built 2026-10-01T10:00:00Z, 56 days ago (max_age_days: 30)")],
        "app": [("parent_rebuilt", "base")],
        "web": [("parent_rebuilt", "base")],
    }


def test_old_child_release_rebuilds_only_that_child(repo: Repo) -> None:
    repo.edit(
        "catalog.yaml",
        'built_at: "2026-11-20T11:00:00Z"\n      commit: 1a2b3c4d5e6f\n      build_id: web',
        'built_at: "2026-09-20T11:00:00Z"\n      commit: 1a2b3c4d5e6f\n      build_id: web',
    )
    repo.commit("an old web release")

    assert summary(repo.plan("HEAD")) == {
        "web": [("release_too_old", "v1 built 2026-09-20T11:00:00Z, 67 days ago (max_age_days: 30)")],
    }


def test_image_without_release_is_built(repo: Repo) -> None:
    repo.edit("catalog.yaml", "  app:\n    - version: 1\n", "  app: []\n  unused:\n    - version: 1\n")
    # Keep the catalog valid: the release list moved to an image name that is not defined is refused, so drop it.
    text = (repo.root / "catalog.yaml").read_text()
    repo.write("catalog.yaml", text[: text.index("  unused:\n")])
    repo.commit("app's release removed")

    assert summary(repo.plan("HEAD")) == {"app": [("no_release", "never released")]}


def test_reformatting_the_catalog_is_not_a_change(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("catalog.yaml", "  regions: [us-east-1, eu-west-1]\n", "  regions:\n    - us-east-1\n    - eu-west-1\n")
    repo.edit(
        "catalog.yaml",
        "    description: nginx\n    parent: base\n",
        "    parent: base      # built from base\n    description: 'nginx'\n",
    )
    repo.commit("reformat")

    assert repo.plan(base).images == ()


def test_template_change_rebuilds_every_image(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("tools/stamp/templates/image.pkr.hcl.j2", "# template, changed\n")
    repo.commit("template")

    path = "tools/stamp/templates/image.pkr.hcl.j2"
    assert summary(repo.plan(base)) == {
        "base": [("file_changed", path)],
        "app": [("file_changed", path), ("parent_rebuilt", "base")],
        "web": [("file_changed", path), ("parent_rebuilt", "base")],
    }


def test_files_folder_and_tests_count_as_used_files(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("images/web/files/index.html", "<p>changed</p>\n")
    repo.write("images/app/tests/test_more.py", "def test_more() -> None:\n    pass\n")
    repo.write("images/README.md", "not used by any build\n")
    repo.commit("site and a test")

    assert summary(repo.plan(base)) == {
        "app": [("file_changed", "images/app/tests/test_more.py")],
        "web": [("file_changed", "images/web/files/index.html")],
    }


def test_working_tree_changes_include_untracked_files(repo: Repo) -> None:
    repo.write("images/web/scripts/10-nginx.sh", "#!/usr/bin/env bash\nset -euo pipefail\necho changed\n")
    repo.write("images/web/files/new.css", "p {}\n")

    assert changed_paths(repo.root, "HEAD", None) == ["images/web/files/new.css", "images/web/scripts/10-nginx.sh"]
    assert summary(repo.plan("HEAD", head=None)) == {
        "web": [("file_changed", "images/web/files/new.css"), ("file_changed", "images/web/scripts/10-nginx.sh")],
    }


def test_changes_on_the_base_branch_after_the_fork_are_not_this_branchs(repo: Repo) -> None:
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("images/app/files/app.py", "print('feature')\n")
    repo.commit("feature: app change")
    repo.git("checkout", "-q", "main")
    repo.edit("catalog.yaml", "    description: nginx\n", "    description: nginx, on main\n")
    repo.write("images/base/scripts/20-sshd-hardening.sh", "#!/usr/bin/env bash\nset -euo pipefail\necho main\n")
    repo.commit("main moved on")

    assert changed_paths(repo.root, "main", "feature") == ["images/app/files/app.py"]
    assert summary(repo.plan("main", head="feature")) == {"app": [("file_changed", "images/app/files/app.py")]}


def test_new_image_is_built_with_both_reasons(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit(
        "catalog.yaml",
        "releases:\n",
        "  db:\n    parent: base\n    provision: [images/app/scripts/10-user.sh]\n\nreleases:\n",
    )
    repo.commit("db image")

    assert summary(repo.plan(base)) == {
        "db": [("definition_changed", "images.db is new"), ("no_release", "never released")],
    }


def test_definition_change_names_the_key(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit(
        "catalog.yaml",
        "    description: the app service\n",
        "    description: the app service, v2\n    volume_size_gb: 20\n",
    )
    repo.commit("app definition")

    assert summary(repo.plan(base)) == {
        "app": [
            ("definition_changed", 'images.app.description: "the app service" → "the app service, v2"'),
            ("definition_changed", "images.app.volume_size_gb: 8 → 20"),
        ],
    }


def test_retention_or_rebuild_policy_change_builds_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("catalog.yaml", "retention: {keep: 3, grace_days: 14}", "retention: {keep: 5, grace_days: 14}")
    repo.edit(
        "catalog.yaml",
        "rebuild: {max_age_days: 30, on_new_source: true}",
        "rebuild: {max_age_days: 60, on_new_source: true}",
    )
    repo.commit("keep more, rebuild less often")

    assert repo.plan(base).images == ()


def test_unknown_base_ref_says_how_to_fetch_it(repo: Repo) -> None:
    with pytest.raises(CatalogError) as caught:
        repo.plan("origin/main")
    assert "unknown git revision 'origin/main'" in str(caught.value)
    assert "git fetch origin main" in caught.value.hint


def test_catalog_at_reads_the_committed_file_and_none_before_it_existed(repo: Repo) -> None:
    first = repo.git("rev-parse", "HEAD")
    repo.write("catalog.yaml", CATALOG.replace("description: nginx", "description: nginx 2"))
    # Uncommitted edits are not part of the revision.
    at_first = catalog_at(repo.root, first)
    assert at_first is not None
    assert at_first.images["web"].description == "nginx"

    empty = Repo(repo.root.parent / "empty")
    empty.write("README.md", "nothing yet\n")
    empty.commit("no catalog yet")
    assert catalog_at(empty.root, "HEAD") is None


def test_catalog_added_since_base_builds_everything(repo: Repo) -> None:
    fresh = Repo(repo.root.parent / "fresh")
    fresh.write("README.md", "start\n")
    base = fresh.commit("start")
    for path, text in FILES.items():
        fresh.write(path, text)
    fresh.write("catalog.yaml", CATALOG)
    fresh.commit("catalog")

    result = fresh.plan(base)
    assert result.order() == ["base", "app", "web"]
    assert summary(result)["base"] == [
        ("definition_changed", "images.base is new"),
        ("file_changed", "images/base/scripts/10-upgrade.sh"),
        ("file_changed", "images/base/scripts/20-sshd-hardening.sh"),
        ("file_changed", "images/base/tests/test_base.py"),
        ("file_changed", "tools/stamp/templates/image.pkr.hcl.j2"),
    ]


def test_head_revision_checks_files_in_its_own_tree(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.git("rm", "-q", "images/web/scripts/10-nginx.sh")
    head = repo.commit("script removed but still referenced")
    # The working tree has it again: the check must look at the revision, not at the disk.
    repo.write("images/web/scripts/10-nginx.sh", "#!/usr/bin/env bash\n")

    with pytest.raises(CatalogProblems) as caught:
        repo.plan(base, head=head)
    assert caught.value.problems == [
        f"{head}:catalog.yaml:27:9: 'images/web/scripts/10-nginx.sh': no such file at this revision"
    ]


def test_old_revision_is_read_without_file_checks(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.git("mv", "images/app/scripts/10-user.sh", "images/app/scripts/10-account.sh")
    repo.edit("catalog.yaml", "images/app/scripts/10-user.sh", "images/app/scripts/10-account.sh")
    repo.commit("rename app's script")

    assert summary(repo.plan(base)) == {
        "app": [
            ("definition_changed", "images.app.provision changed"),
            ("file_changed", "images/app/scripts/10-account.sh"),
        ],
    }


def test_shallow_clone_without_the_base_says_to_fetch(repo: Repo) -> None:
    first = repo.git("rev-parse", "HEAD")
    repo.write("images/app/files/app.py", "print('two')\n")
    repo.commit("second")
    clone = repo.root.parent / "shallow"
    run(["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], echo=False)

    with pytest.raises(CatalogError) as caught:
        plan_between(clone, first, "HEAD", source_lookup=None, now=NOW)
    assert f"unknown git revision '{first}'" in caught.value.message
    assert "fetch-depth: 0" in caught.value.hint


def test_catalog_path_may_be_given_from_the_working_directory(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("images/app/files/app.py", "print('cwd')\n")
    repo.commit("app")
    monkeypatch.chdir(repo.root.parent)

    result = plan_between(
        repo.root, base, "HEAD", catalog_path=Path("catalog-repo/catalog.yaml"), source_lookup=None, now=NOW
    )
    assert summary(result) == {"app": [("file_changed", "images/app/files/app.py")]}
