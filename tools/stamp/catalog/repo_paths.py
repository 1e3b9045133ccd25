"""Whether a path the catalog names is a usable file or folder inside the repository: no way out of it, and none
into the folders that are no image's input."""

from __future__ import annotations

import os
from pathlib import Path

from stamp.catalog import yamlsafe

# Folders uploaded to the image (`files`) or run on the CI machine (`tests`) are walked for symlinks leading
# out of the repository, up to this many entries; a bigger folder is refused rather than half-checked.
MAX_FOLDER_ENTRIES = 10_000
# Folders of the repository that are no image's input, however a path or a symlink leads there: what they hold
# would be uploaded into an image (`files`), run on the CI machine (`tests`) or run as root (`provision`).
PRIVATE_FOLDERS = {
    ".git": "git's own folder",
    ".stamp": "stamp's state, with the local cloud's SSH key",
    ".venv": "stamp's Python environment",
    "build": "build outputs: Packer templates, logs and results",
}


def check_repo_path(root: Path, relative: str, *, want_dir: bool) -> str | None:
    """Why `relative` is not a usable file (or folder) inside the repository, or None when it is."""
    shown = yamlsafe.show(relative)
    if Path(relative).is_absolute() or "\\" in relative:
        return f"'{shown}' must be a path relative to the repository root"
    if ".." in Path(relative).parts:
        return f"'{shown}' must not leave the repository ('..')"
    target = root / relative
    try:
        resolved = target.resolve(strict=True)
    except (OSError, RuntimeError):
        return f"'{shown}' does not exist (paths are relative to the folder holding catalog.yaml)"
    if not resolved.is_relative_to(root):
        return f"'{shown}' resolves outside the repository (a symlink?)"
    private = _private_folder(root, resolved)
    if private is not None:
        return f"'{shown}' leads into {private}/ ({PRIVATE_FOLDERS[private]}), which stamp never uploads or runs"
    if want_dir and not resolved.is_dir():
        return f"'{shown}' must be a folder"
    if not want_dir and not resolved.is_file():
        return f"'{shown}' must be a file"
    return _escaping_link(root, resolved, shown) if want_dir else None


def _private_folder(root: Path, resolved: Path) -> str | None:
    """The name of the private folder (PRIVATE_FOLDERS) `resolved` is in, or None."""
    parts = resolved.relative_to(root).parts if resolved.is_relative_to(root) else ()
    return parts[0] if parts and parts[0] in PRIVATE_FOLDERS else None


def _escaping_link(root: Path, folder: Path, shown: str) -> str | None:
    """A symlink inside `folder` that leads out of the repository or into a private folder (Packer would upload
    what it points to), or a private folder inside `folder` (the repository root itself, say)."""
    count = 0
    for current, dirs, files in os.walk(folder):  # symlinked folders are listed, not entered
        for entry in (*dirs, *files):
            count += 1
            if count > MAX_FOLDER_ENTRIES:
                return (
                    f"'{shown}' holds more than {MAX_FOLDER_ENTRIES} files and folders; stamp does not upload that many"
                )
            path = Path(current) / entry
            is_link = path.is_symlink()
            real: Path | None = path  # os.walk enters no symlinked folder, so only a symlink can lead elsewhere
            if is_link:
                try:
                    real = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    real = None
                if real is None or not real.is_relative_to(root):
                    link = yamlsafe.show(str(path.relative_to(folder)))
                    return f"'{shown}' holds a symlink leading out of the repository or nowhere: {link}"
            private = _private_folder(root, real) if real is not None else None
            if private is not None:
                link = yamlsafe.show(str(path.relative_to(folder)))
                what = "a symlink leading into" if is_link else "the folder"
                return (
                    f"'{shown}' holds {what} {private}/ ({PRIVATE_FOLDERS[private]}), which stamp never uploads "
                    f"or runs: {link}"
                )
    return None
