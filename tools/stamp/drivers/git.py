"""git, as stamp reads it: changed paths between revisions, and the catalog as committed at a revision."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from stamp.catalog import yamlsafe
from stamp.catalog.load import Catalog, build_catalog, parse
from stamp.drivers.proc import run
from stamp.errors import CatalogError, CatalogProblems, ProcessError

CATALOG = Path("catalog.yaml")

_FETCH_HINT = (
    "fetch it first, e.g. `git fetch origin main` and use origin/main; CI checkouts are shallow by default "
    "(actions/checkout needs fetch-depth: 0)"
)


def changed_paths(repo: Path, base: str, head: str | None) -> list[str]:
    """Paths changed on `head` since it forked from `base` (`git diff base...head`), relative to `repo`.

    With `head=None` the working tree is compared instead, staged, unstaged and untracked files included,
    which is what a developer running `stamp plan` before committing expects.
    """
    base_id = resolve_ref(repo, base)
    head_id = resolve_ref(repo, head) if head is not None else None
    return diff_paths(repo, merge_base(repo, base_id, head_id or resolve_ref(repo, "HEAD"), base, head), head_id)


def catalog_at(repo: Path, ref: str, path: Path = CATALOG, *, check_files: bool = False) -> Catalog | None:
    """The catalog file as committed at `ref`, validated; None when the file did not exist there.

    Referenced files are checked against `ref`'s tree when `check_files` is set, never against the working
    tree, which belongs to another revision.
    """
    commit = resolve_ref(repo, ref)
    relative = repo_relative(repo, path)
    spec = f"{commit}:./{relative}"
    if run(["git", "cat-file", "-e", spec], cwd=repo, check=False, echo=False).returncode != 0:
        return None
    text = _git(repo, ["git", "cat-file", "blob", spec])
    if len(text) > yamlsafe.MAX_BYTES:
        raise CatalogError(f"{ref}:{relative}: larger than the {yamlsafe.MAX_BYTES}-byte limit")
    where = repo / relative
    try:
        data = parse(text, where)
        catalog = build_catalog(data, text, where, check_files=False)
        if check_files:
            _check_tree(repo, commit, catalog, text, where)
    except CatalogProblems as problems:
        # Name the revision: the same line in the working tree may say something else.
        raise CatalogProblems([f"{ref}:{line}" for line in problems.problems]) from None
    return catalog


def resolve_ref(repo: Path, ref: str) -> str:
    """The commit ID `ref` names; a clear error when it is unknown (a shallow clone, a branch not fetched)."""
    if not ref or ref.startswith("-"):
        raise CatalogError(f"'{ref}' is not a git revision")
    try:
        done = run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo, check=False, echo=False)
    except ProcessError as exc:
        raise CatalogError(f"cannot run git in {repo}: {exc}", hint="install git") from None
    if done.returncode != 0:
        _require_repository(repo)
        raise CatalogError(f"unknown git revision '{ref}' in {repo}", hint=_FETCH_HINT)
    return done.stdout.strip()


def merge_base(repo: Path, base_id: str, head_id: str, base: str = "", head: str | None = None) -> str:
    done = run(["git", "merge-base", base_id, head_id], cwd=repo, check=False, echo=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise CatalogError(
            f"'{base or base_id}' and '{head or 'HEAD'}' have no common ancestor here",
            hint="the clone is probably shallow: `git fetch --unshallow origin` (or fetch-depth: 0 in "
            "actions/checkout)",
        )
    return done.stdout.strip()


def diff_paths(repo: Path, fork: str, head_id: str | None) -> list[str]:
    # --no-renames lists both sides of a rename: the old path is a change too (a script moved away).
    # --relative keeps paths relative to the catalog's folder, which is what catalog paths are relative to.
    args = ["git", "-c", "core.quotepath=off", "diff", "--name-only", "--no-renames", "--relative", "-z", fork]
    if head_id is not None:
        args.append(head_id)
    paths = _split(_git(repo, [*args, "--"]))
    if head_id is None:
        # A new script not yet `git add`ed is a change too.
        paths += _split(_git(repo, ["git", "ls-files", "-z", "--others", "--exclude-standard"]))
    return sorted(set(paths))


def _check_tree(repo: Path, commit: str, catalog: Catalog, text: str, where: Path) -> None:
    listed = _split(_git(repo, ["git", "ls-tree", "-r", "-z", "--name-only", commit]))
    files = set(listed)
    folders = {str(parent) for name in listed for parent in PurePosixPath(name).parents}
    problems: list[str] = []
    for name, image in catalog.images.items():
        wanted: list[tuple[tuple[str | int, ...], str, set[str]]] = [
            (("images", name, "provision", i), p, files) for i, p in enumerate(image.provision)
        ]
        if image.files:
            wanted.append((("images", name, "files"), image.files, folders))
        if image.tests:
            wanted.append((("images", name, "tests"), image.tests, folders))
        for loc, relative, present in wanted:
            normal = str(PurePosixPath(relative))
            if normal not in present:
                kind = "file" if present is files else "folder"
                line, column = yamlsafe.locate(text, loc)
                problems.append(f"{where.name}:{line}:{column}: '{relative}': no such {kind} at this revision")
    if problems:
        raise CatalogProblems(problems)


def repo_relative(repo: Path, path: Path) -> str:
    """`path` relative to `repo`; a relative `path` is taken from the working directory when it exists there
    (as `--catalog` is), otherwise from `repo`."""
    root = repo.resolve()
    if path.is_absolute():
        candidate = path
    elif (Path.cwd() / path).exists() and (Path.cwd() / path).resolve().is_relative_to(root):
        candidate = Path.cwd() / path
    else:
        candidate = root / path
    try:
        return candidate.resolve().relative_to(root).as_posix()
    except ValueError:
        raise CatalogError(f"{path} is not inside the repository {repo}") from None


def _require_repository(repo: Path) -> None:
    if run(["git", "rev-parse", "--git-dir"], cwd=repo, check=False, echo=False).returncode != 0:
        raise CatalogError(f"{repo} is not inside a git repository", hint="stamp plan compares git revisions")


def _git(repo: Path, args: list[str]) -> str:
    try:
        return run(args, cwd=repo, echo=False).stdout
    except ProcessError as exc:
        raise CatalogError(str(exc)) from None


def _split(output: str) -> list[str]:
    return [item for item in output.split("\0") if item]
