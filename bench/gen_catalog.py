"""Generates a large catalog (1,000 images, 10 releases each across 20 regions) for the benchmarks."""

from __future__ import annotations

import hashlib
from pathlib import Path

REGIONS = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "eu-west-1", "eu-west-2", "eu-west-3",
    "eu-central-1", "eu-north-1", "eu-south-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
    "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "sa-east-1", "me-south-1", "af-south-1",
]  # fmt: skip


def _ami(seed: str) -> str:
    return "ami-" + hashlib.sha256(seed.encode()).hexdigest()[:17]


def generate_catalog(
    root: Path, images: int = 1000, releases: int = 10, regions: int = 20, *, family: int = 10
) -> Path:
    """Write `catalog.yaml` plus the files it references under `root`; return the catalog path.

    Every `family`-th image is a root image; the ones after it, up to the next root, are its children.
    """
    script = root / "images" / "shared" / "provision.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\necho hi\n")
    (root / "images" / "shared" / "tests").mkdir(exist_ok=True)
    region_names = REGIONS[:regions]
    out: list[str] = [
        "version: 1",
        "defaults:",
        f"  regions: [{', '.join(region_names)}]",
        "  instance_type: t3.micro",
        "  ssh_username: admin",
        "  retention: {keep: 3}",
        "images:",
    ]
    for i in range(images):
        out.append(f"  img-{i:04d}:")
        out.append(f"    description: generated image {i}")
        if i % family == 0:
            out.append('    source: {filter: {name: "debian-12-amd64-*", owners: ["136693071363"]}}')
        else:
            out.append(f"    parent: img-{i - i % family:04d}")
        out.append("    provision: [images/shared/provision.sh]")
        out.append("    tests: images/shared/tests")
        out.append('    share: {accounts: ["111122223333", "444455556666"]}')
    out.append("releases:")
    for i in range(images):
        out.append(f"  img-{i:04d}:")
        for v in range(releases, 0, -1):
            status = "current" if v == releases else "previous"
            out.append(f"    - version: {v}")
            out.append("      amis:")
            for region in region_names:
                out.append(f"        {region}: {_ami(f'{i}-{v}-{region}')}")
            out.append(f'      built_at: "2026-11-{(v % 28) + 1:02d}T12:00:00Z"')
            out.append("      commit: 1a2b3c4d5e6f")
            out.append(f"      build_id: img-{i:04d}-{v}-abcdef")
            if i % family == 0:
                out.append(f"      source: {{amis: {{us-east-1: {_ami(f'src-{v}')}}}}}")
            else:
                out.append(f"      source: {{image: img-{i - i % family:04d}, version: {v}}}")
            out.append("      verified: passed")
            out.append(f"      status: {status}")
    path = root / "catalog.yaml"
    path.write_text("\n".join(out) + "\n")
    return path
