"""The local build-verify loop for one child image after a provisioning change: stamp's answer to 5-15 min AMI builds.

Releases `base` once in a scratch workspace, then edits `web`'s provisioning script and times
`stamp build web` + `stamp verify web` on the local cloud, as a developer iterating on an image would.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from stamp import local
from stamp.catalog.load import load_catalog
from stamp.commands.build import build_image
from stamp.commands.demo import copy_repository
from stamp.commands.record import WORKSPACE_MARKER
from stamp.commands.release import release_images
from stamp.commands.verify import verify_result
from stamp.hosts.target import target_for

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 30.0


def main() -> int:
    workspace = Path(tempfile.mkdtemp(prefix="stamp-loop-"))
    try:
        copy_repository(REPO, workspace)
        (workspace / WORKSPACE_MARKER).parent.mkdir(parents=True, exist_ok=True)
        (workspace / WORKSPACE_MARKER).touch()
        catalog_path = workspace / "catalog.yaml"
        target = target_for("local", load_catalog(catalog_path))
        (outcome,) = release_images(catalog_path, ["base"], target, build_root=workspace / "build")
        if outcome.result is None:
            print(f"could not release base: {outcome.error}", file=sys.stderr)
            return 1
        script = workspace / "images" / "web" / "scripts" / "20-site.sh"
        with script.open("a", encoding="utf-8") as handle:
            handle.write('\necho "loop benchmark change" > /etc/stamp-loop-change\n')
        started = time.monotonic()
        catalog = load_catalog(catalog_path)
        result = build_image(catalog, "web", target, build_root=workspace / "build")
        verdict = verify_result(catalog, result, target, build_root=workspace / "build")
        seconds = time.monotonic() - started
    finally:
        local.down(workspace)
        shutil.rmtree(workspace, ignore_errors=True)
    ok = verdict.verified == "passed" and seconds < TARGET_SECONDS
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in verdict.timings.items())
    print(f"child image loop (edit web script -> build -> verify): {seconds:.1f} s ({phases})")
    print(f"  target < {TARGET_SECONDS:.0f} s: {'ok' if ok else 'MISSED'}; verification {verdict.verified}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
