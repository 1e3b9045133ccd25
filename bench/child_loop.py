"""The local build-verify loop for one child image after a provisioning change: stamp's answer to 5-15 min AMI builds.

Releases `base` once in a scratch workspace, then edits `web`'s provisioning script and times
`stamp build web` + `stamp verify web` on the local cloud, as a developer iterating on an image would.

`--compare N` measures side by side: N rounds, each timing the loop once without the local cloud's apt cache
(STAMP_LOCAL_APT_CACHE=off) and once with it, in alternating order, each in its own workspace and local cloud.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from stamp import local
from stamp.catalog.load import load_catalog
from stamp.commands.build import build_image
from stamp.commands.demo import copy_repository
from stamp.commands.record import WORKSPACE_MARKER
from stamp.commands.release import release_images
from stamp.commands.verify import verify_result
from stamp.hosts.target import target_for
from stamp.local.aptcache import SWITCH

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 8.0
# What reading the package inventory, writing the SBOM and the security gate may add to the loop.
INVENTORY_TARGET_SECONDS = 1.0


@dataclass(frozen=True)
class Loop:
    seconds: float
    verified: str
    timings: dict[str, float]
    apt_cache: str


def measure() -> Loop | None:
    """One loop in a new workspace and local cloud (the cloud reads STAMP_LOCAL_APT_CACHE when it starts)."""
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
            return None
        script = workspace / "images" / "web" / "scripts" / "20-site.sh"
        with script.open("a", encoding="utf-8") as handle:
            handle.write('\necho "loop benchmark change" > /etc/stamp-loop-change\n')
        started = time.monotonic()
        catalog = load_catalog(catalog_path)
        result = build_image(catalog, "web", target, build_root=workspace / "build")
        verdict = verify_result(catalog, result, target, build_root=workspace / "build")
        seconds = time.monotonic() - started
        cache = local.status(workspace)
        apt_cache = (cache.apt_cache_url if cache else "") or "none"
    finally:
        local.down(workspace)
        shutil.rmtree(workspace, ignore_errors=True)
    return Loop(seconds, verdict.verified, dict(verdict.timings), apt_cache)


def show(loop: Loop) -> str:
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in loop.timings.items())
    return f"{loop.seconds:.1f} s ({phases}; apt cache {loop.apt_cache})"


def compare(rounds: int) -> int:
    runs: dict[str, list[Loop]] = {"off": [], "on": []}
    for n in range(rounds):
        # Alternate which goes first, so a machine growing busier or quieter favours neither.
        for setting in ("off", "on") if n % 2 == 0 else ("on", "off"):
            os.environ[SWITCH] = setting
            loop = measure()
            if loop is None or loop.verified != "passed":
                return 1
            runs[setting].append(loop)
            print(f"  round {n + 1}, apt cache {setting}: {show(loop)}", file=sys.stderr)
    for setting, loops in runs.items():
        seconds = [loop.seconds for loop in loops]
        packer = [loop.timings.get("packer", 0.0) for loop in loops]
        print(
            f"apt cache {setting:>3}: loop median {statistics.median(seconds):.1f} s"
            f" (min {min(seconds):.1f}, max {max(seconds):.1f}); packer median {statistics.median(packer):.1f} s"
            f"; {len(loops)} runs"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compare", type=int, metavar="N", help="N rounds of the loop without and with the apt cache, side by side"
    )
    args = parser.parse_args()
    if args.compare:
        return compare(args.compare)
    loop = measure()
    if loop is None:
        return 1
    ok = loop.verified == "passed" and loop.seconds <= TARGET_SECONDS
    added = loop.timings.get("inventory", 0.0) + loop.timings.get("security_gate", 0.0)
    added_ok = 0 < added <= INVENTORY_TARGET_SECONDS
    print(f"child image loop (edit web script -> build -> verify): {show(loop)}")
    print(f"  target <= {TARGET_SECONDS:.0f} s: {'ok' if ok else 'MISSED'}; verification {loop.verified}")
    print(
        f"  inventory + SBOM + security gate add {added:.2f} s: target <= {INVENTORY_TARGET_SECONDS:.0f} s"
        f" {'ok' if added_ok else 'MISSED'}"
    )
    return 0 if ok and added_ok else 1


if __name__ == "__main__":
    sys.exit(main())
