"""`stamp build`: render, run Packer against AWS or the local cloud, and leave `build/<image>/result.json`."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stamp import local, packer, proc
from stamp.catalog import Catalog, Image
from stamp.clouds import Target
from stamp.errors import BuildError, CatalogError, StampError
from stamp.models import ReleaseSource
from stamp.render import MANIFEST_FILE, render_image, write_render
from stamp.results import BuildResult, write_result

UNKNOWN_COMMIT = "0000000"


@dataclass(frozen=True)
class Outcome:
    """What happened to one image in a multi-image run."""

    image: str
    result: BuildResult | None = None
    error: StampError | None = None
    skipped_because: str | None = None


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_build_id(image: str, now: datetime) -> str:
    """Unique per build; also the AMI name suffix, so two builds in one second never collide (FACTS)."""
    return f"{image}-{now.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"


def git_commit(repo: Path) -> str:
    done = proc.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=False, echo=False)
    return done.stdout.strip() if done.returncode == 0 else UNKNOWN_COMMIT


def resolve_source(catalog: Catalog, image: Image, target: Target) -> tuple[str, ReleaseSource]:
    """The AMI the build starts from in its build region, and the provenance recorded with the release."""
    region = image.regions[0]
    if image.parent is not None:
        release = catalog.current_release(image.parent)
        if release is None or region not in release.amis:
            raise CatalogError(
                f"image '{image.name}': parent '{image.parent}' has no current release in {region}",
                hint=f"release the parent first: stamp release {image.parent}",
            )
        return release.amis[region], ReleaseSource(image=image.parent, version=release.version)
    assert image.source is not None
    found = target.cloud.find_newest_image(region, name=image.source.filter.name, owners=image.source.filter.owners)
    if found is None:
        raise CatalogError(
            f"image '{image.name}': no vendor image named like '{image.source.filter.name}' owned by "
            f"{', '.join(image.source.filter.owners)} in {region}",
            hint=f"check images.{image.name}.source.filter, and that the account can see the image",
        )
    return found.ami_id, ReleaseSource(amis={region: found.ami_id})


def build_image(catalog: Catalog, name: str, target: Target, *, build_root: Path) -> BuildResult:
    """Build one image; the build container (local cloud) is removed whatever happens."""
    image = catalog.images[name]
    started = utc_now()
    build_id = new_build_id(name, started)
    source_ami, source = resolve_source(catalog, image, target)
    out = build_root / name
    packer_version = packer.detect_version()
    write_render(render_image(catalog, name, packer_version=packer_version), out)
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    packer.init(out, env=target.packer_env)
    variables = {"repo_root": str(catalog.root), "build_id": build_id}
    timings: dict[str, float] = {}
    say(f"[{name}] build {build_id} from {source_ami} in {image.regions[0]} ({target.kind})")
    container: local.Instance | None = None
    try:
        if target.local is not None:
            clock = time.monotonic()
            container = local.launch(
                target.local,
                source_ami,
                name=f"stamp-build-{build_id}",
                ssh_user=image.ssh_username,
                labels={"stamp:build-id": build_id},
            )
            timings["start_instance"] = round(time.monotonic() - clock, 2)
            variables |= {
                "ec2_endpoint": target.local.endpoint_url,
                "ssh_host": container.ssh_host,
                "ssh_port": str(container.ssh_port),
                "ssh_private_key_file": str(target.local.ssh_private_key),
                "poll_delay_seconds": "1",
                "poll_max_attempts": "120",
            }
        clock = time.monotonic()
        packer.build(out, env=target.packer_env, vars=variables, log=out / "packer.log", image=name)
        timings["packer"] = round(time.monotonic() - clock, 2)
        amis = packer.read_manifest(out / MANIFEST_FILE, build_id=build_id)
        if set(amis) != set(image.regions):
            raise BuildError(
                f"[{name}] Packer made AMIs in {', '.join(sorted(amis)) or 'no region'}, the catalog asks for "
                f"{', '.join(image.regions)}",
                hint=f"nothing was recorded or shared; `stamp gc` removes what build {build_id} created",
            )
        if image.parent is None:
            source = ReleaseSource(amis={image.regions[0]: _source_packer_used(target, image, amis, source_ami)})
        if target.local is not None and container is not None:
            clock = time.monotonic()
            local.commit(target.local, container.container_id, list(amis.values()))
            timings["commit"] = round(time.monotonic() - clock, 2)
    finally:
        if target.local is not None and container is not None:
            local.terminate(target.local, container.container_id)
    result = BuildResult(
        image=name,
        build_id=build_id,
        cloud=target.kind,
        amis=amis,
        source=source,
        commit=git_commit(catalog.root),
        started_at=iso(started),
        finished_at=iso(utc_now()),
        packer_version=".".join(map(str, packer_version)),
        timings=timings,
    )
    write_result(build_root, result)
    say(f"[{name}] built: " + ", ".join(f"{r} {a}" for r, a in amis.items()))
    return result


def _source_packer_used(target: Target, image: Image, amis: dict[str, str], looked_up: str) -> str:
    """The vendor AMI Packer resolved (its `stamp:source-ami` tag); the filter may have moved since our look-up."""
    region = image.regions[0]
    details = target.cloud.describe_image(region, amis[region])
    used = details.tags.get("stamp:source-ami", "") if details else ""
    return used if used.startswith("ami-") else looked_up


def _repo_relative(path: Path, root: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


def run_in_layers(
    catalog: Catalog,
    names: Sequence[str],
    work: Callable[[str], BuildResult],
    *,
    parallel: int = 1,
) -> list[Outcome]:
    """Run `work` per image, parents before children, up to `parallel` at once within a layer.

    An image whose parent failed in this run is skipped: building it from the old parent would hide the failure.
    """
    wanted = set(names)
    depth = {n: len(catalog.ancestors(n)) for n in wanted}
    outcomes: dict[str, Outcome] = {}
    for layer in sorted(set(depth.values())):
        ready: list[str] = []
        for name in sorted(n for n in wanted if depth[n] == layer):
            failed = next((a for a in catalog.ancestors(name) if a in outcomes and outcomes[a].result is None), None)
            if failed:
                outcomes[name] = Outcome(name, skipped_because=f"parent '{failed}' failed")
            else:
                ready.append(name)
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = {name: pool.submit(work, name) for name in ready}
            for name, future in futures.items():
                try:
                    outcomes[name] = Outcome(name, result=future.result())
                except StampError as exc:
                    say(f"[{name}] failed: {exc}")
                    outcomes[name] = Outcome(name, error=exc)
    return [outcomes[n] for n in catalog.topo_order(wanted)]


def say(message: str) -> None:
    print(message, file=sys.stderr)


def verify_result(catalog: Catalog, result: BuildResult, target: Target, *, build_root: Path) -> BuildResult:
    """Verify a build on fresh instances and store the verdict in its result.json."""
    from stamp.launchers import launcher_for
    from stamp.verify import verify_ami

    image = catalog.images[result.image]
    if image.tests is None:
        raise CatalogError(
            f"image '{image.name}' has no `tests` folder; stamp does not record unverified images",
            hint=f"add images/{image.name}/tests with testinfra tests and set images.{image.name}.tests",
        )
    clock = time.monotonic()
    report = verify_ami(
        launcher_for(target, image),
        image=image.name,
        ami_id=result.amis[image.regions[0]],
        tests_dir=catalog.root / image.tests,
        report_dir=build_root / image.name,
        ssh_user=image.ssh_username,
        build_id=result.build_id,
    )
    verdict = BuildResult.model_validate(
        result.model_dump()
        | {
            "verified": "failed" if report.failed else "passed",
            "failed_tests": list(report.failed),
            "verify_report": _repo_relative(report.junit, catalog.root),
            "timings": result.timings | {"verify": round(time.monotonic() - clock, 2)},
        }
    )
    write_result(build_root, verdict)
    return verdict
