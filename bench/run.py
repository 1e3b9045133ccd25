"""`make bench`: each benchmark times stamp and a reference side by side in one run and prints the ratio."""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# publish_setup and gen_catalog sit beside this file: `python bench/run.py` puts this folder on sys.path. The
# signed apt repository the update check reads is the tests' own (tests/aptrepo.py).
import publish_setup
import site_bench
import usage_bench
import yaml
from gen_catalog import REGIONS, generate_catalog

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from aptrepo import AptRepo, Deb
from stamp.catalog import inventory as inv
from stamp.catalog.load import load_catalog
from stamp.catalog.models import ReleaseSource
from stamp.catalog.rebuilds import Plan, plan
from stamp.catalog.results import BuildResult
from stamp.cloud.sharing import publish
from stamp.commands.pending import update_lookup
from stamp.commands.record import record
from stamp.drivers.aptrepo import AptIndexes

ROUNDS = 3
# The benchmark catalog: 1,000 images, 10 releases each in 20 regions, about 11 MB.
RELEASES = 10
# A round trip to an AWS regional endpoint from CI takes tens of milliseconds; moto on this machine answers in
# about one. The wall-time benchmark adds this much before every request, so parallelism has something to hide.
MODELLED_LATENCY = 0.03


@dataclass(frozen=True)
class Result:
    name: str
    measured: str
    reference: str
    ratio: float
    target: float

    @property
    def ok(self) -> bool:
        return self.ratio <= self.target


@dataclass(frozen=True)
class Setup:
    """What the benchmarks share: the generated 1,000-image catalog, a scratch folder and a moto server."""

    catalog_path: Path
    scratch: Path
    endpoint: str


def best_of(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    """The fastest of a few runs: the least disturbed by other work on a shared machine."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(a: Callable[[], object], b: Callable[[], object]) -> tuple[float, float]:
    """Time two things alternately so a noisy neighbour hurts both alike."""
    ta, tb = [], []
    for _ in range(ROUNDS):
        ta.append(best_of(a, 1))
        tb.append(best_of(b, 1))
    return min(ta), min(tb)


def c_parse(text: str) -> Callable[[], object]:
    return lambda: yaml.load(text, Loader=yaml.CSafeLoader)


def bench_load(setup: Setup) -> Result:
    text = setup.catalog_path.read_text()
    stamp_s, c_parse_s = interleaved(lambda: load_catalog(setup.catalog_path), c_parse(text))
    return Result(
        "load + validate 1,000-image catalog",
        f"stamp {stamp_s:.2f}s",
        f"PyYAML CSafeLoader parse {c_parse_s:.2f}s",
        stamp_s / c_parse_s,
        1.5,
    )


def bench_record(setup: Setup) -> Result:
    """`stamp record` of one release into the big catalog: a surgical edit that must not re-read all of it."""
    text = setup.catalog_path.read_text()
    work = setup.scratch / "record"
    work.mkdir(exist_ok=True)
    target = work / "catalog.yaml"
    result = BuildResult(
        image="img-0505",
        build_id="img-0505-bench",
        cloud="aws",
        amis={region: f"ami-{n:017x}" for n, region in enumerate(REGIONS)},
        source=ReleaseSource(image="img-0500", version=RELEASES),
        commit="0123456789ab",
        started_at="2026-11-26T15:00:00Z",
        finished_at="2026-11-26T15:20:00Z",
        packer_version="1.9.4",
        verified="passed",
    )
    times = []
    for _ in range(ROUNDS):
        shutil.copyfile(setup.catalog_path, target)  # a fresh copy each time, outside the timing
        start = time.perf_counter()
        record(target, [result], now=datetime(2026, 11, 26, 16, tzinfo=UTC))
        times.append(time.perf_counter() - start)
    _, c_parse_s = interleaved(lambda: None, c_parse(text))
    record_s = min(times)
    return Result(
        "record one release into it",
        f"stamp {record_s:.2f}s",
        f"PyYAML CSafeLoader parse {c_parse_s:.2f}s",
        record_s / c_parse_s,
        0.5,
    )


def bench_plan(setup: Setup) -> Result:
    """`stamp plan` with a one-line change: both revisions parsed and validated, then the plan."""
    old_path = setup.catalog_path
    text = old_path.read_text()
    new_path = old_path.with_name("catalog-changed.yaml")
    changed = text.replace("    description: generated image 505\n", "    description: generated image 505, patched\n")
    assert changed != text
    new_path.write_text(changed)
    now = datetime(2026, 11, 27, tzinfo=UTC)

    def stamp_plan() -> Plan:
        return plan(load_catalog(old_path), load_catalog(new_path), ["catalog.yaml"], source_lookup=None, now=now)

    built = stamp_plan()
    assert "img-0505" in built.order(), "the one-line change must show in the plan"
    stamp_s, c_parse_s = interleaved(stamp_plan, c_parse(text))
    return Result(
        "plan a one-line change (2 loads + plan)",
        f"stamp {stamp_s:.2f}s",
        f"2 x CSafeLoader parse {2 * c_parse_s:.2f}s",
        stamp_s / (2 * c_parse_s),
        1.5,
    )


# The update check's benchmark: 200 root images (one in five), each with an inventory of this many packages from
# two shared apt sources, a main suite of MAIN_PACKAGES and a security suite updating one package in 500.
ROOT_FAMILY = 5
INSTALLED = 200
MAIN_PACKAGES = 5000


def bench_plan_updates(setup: Setup) -> Result:
    """`stamp plan` as the scheduled drift check runs it: no file changed, every root image's current release
    checked for pending updates against signed indexes served on loopback, each fetched once per plan."""
    root = setup.scratch / "updates"
    catalog_path = generate_catalog(root, releases=RELEASES, family=ROOT_FAMILY)
    text = catalog_path.read_text()
    repo = AptRepo(root / "apt")
    main = [Deb(f"pkg-{n:04d}", "1.0-1") for n in range(MAIN_PACKAGES)]
    repo.publish("bookworm", main)
    repo.publish("bookworm-security", [Deb(f"pkg-{n:04d}", "1.0-1+deb12u1") for n in range(0, MAIN_PACKAGES, 500)])
    catalog = load_catalog(catalog_path)
    build_root = root / "build"
    now = datetime(2026, 11, 27, tzinfo=UTC)
    with repo.serve() as uri:
        sources = [
            inv.AptSource(file="/etc/apt/sources.list", type="deb", uri=uri, suite=suite, components=["main"])
            for suite in ("bookworm", "bookworm-security")
        ]
        roots = [name for name, image in catalog.images.items() if image.parent is None]
        for number, name in enumerate(roots):
            release = catalog.current_release(name)
            assert release is not None
            # A different slice of the archive per image, so that some images have a security update and some not.
            first = (number * 7) % (MAIN_PACKAGES - INSTALLED)
            packages = [
                inv.Package(name=d.name, version=d.version, arch="amd64", source=d.name, source_version=d.version)
                for d in main[first : first + INSTALLED]
            ]
            found = inv.Inventory(
                image=name, build_id=release.build_id, ami="ami-0123456789abcdef0", collected_at="2026-11-26T12:00:00Z",
                packager="dpkg", kernel="6.1.0-28-cloud-amd64", sources=sources, packages=packages,
            )  # fmt: skip
            inv.write_json(inv.history_path(build_root, name, release.build_id), found.model_dump_json())
        fetches: list[int] = []

        def stamp_plan() -> Plan:
            # A cold cache each time: the plan fetches and parses both indexes, as the first run of a day does.
            with tempfile.TemporaryDirectory() as cache:
                repo.requests.clear()
                indexes = AptIndexes([repo.keyring], cache=Path(cache))
                lookup = update_lookup(load_catalog(catalog_path), build_root, None, indexes=indexes)
                made = plan(
                    load_catalog(catalog_path),
                    load_catalog(catalog_path),
                    [],
                    source_lookup=None,
                    now=now,
                    update_lookup=lookup,
                )
                fetches.append(len(repo.requests))
                return made

        built = stamp_plan()
        planned = {item.name for item in built.images if item.reasons[0].kind == "updates_available"}
        assert 0 < len(planned) < len(roots), "some root images, not all, have a pending security update"
        stamp_s, c_parse_s = interleaved(stamp_plan, c_parse(text))
    repo.close()
    assert set(fetches) == {4}, f"each InRelease and index fetched once per plan, not {fetches}"
    return Result(
        f"plan with update checks ({len(roots)} roots, {len(planned)} to patch; 4 fetches)",
        f"stamp {stamp_s:.2f}s",
        f"2 x CSafeLoader parse {2 * c_parse_s:.2f}s",
        stamp_s / (2 * c_parse_s),
        1.5,
    )


def minimum_publish_calls(images: int, regions: int) -> int:
    """The fewest API calls a first publish can make: every image has one current release with an AMI in every
    region, none shared yet.

    Per region: DescribeImages for the AMIs (100 IDs a call), DescribeSnapshots for their snapshots (100 a call)
    to refuse any on the default aws/ebs key (AWS's DescribeImages says `Encrypted` and saves it; moto's does
    not), GetParameters for the current-AMI parameters (10 names a call), and one DescribeImages of the
    account's own stamp AMIs to find images removed from the catalog (docs/custody.md); per AMI one
    DescribeImageAttribute (there is no batch read of launch permissions), one ModifyImageAttribute (additions
    for all 30 principals in one call) and one DescribeSnapshotAttribute (every snapshot is reconciled, so one
    shared outside stamp is found); per image one PutParameter.
    """
    per_region = math.ceil(images / 100) * 2 + math.ceil(images / 10) + 1 + images * 3 + images
    return per_region * regions


def bench_publish_calls(setup: Setup) -> Result:
    images, regions, principals = 50, REGIONS[:20], 30
    publish_setup.reset(setup.endpoint)
    amis = publish_setup.make_amis(setup.endpoint, regions, images)
    catalog = publish_setup.publish_catalog(setup.scratch, amis, regions, publish_setup.principals(principals))
    cloud = publish_setup.cloud(setup.endpoint)
    publish(catalog, cloud, None, dry_run=False)
    made = sum(cloud.call_counts().values())
    minimum = minimum_publish_calls(images, len(regions))
    return Result(
        f"publish API calls, {images} images x {len(regions)} regions x {principals} principals",
        f"stamp {made} calls",
        f"minimum {minimum} calls",
        made / minimum,
        1.0,
    )


def bench_publish_wall(setup: Setup) -> Result:
    """The same first publish with the default workers and with one worker (one region, one AMI at a time)."""
    images, regions = 5, REGIONS[:20]
    share = publish_setup.principals(30)

    def timed(workers: int | None) -> float:
        publish_setup.reset(setup.endpoint)
        amis = publish_setup.make_amis(setup.endpoint, regions, images)
        catalog = publish_setup.publish_catalog(setup.scratch, amis, regions, share)
        cloud = publish_setup.cloud(setup.endpoint, latency=MODELLED_LATENCY)
        start = time.perf_counter()
        if workers is None:
            publish(catalog, cloud, None, dry_run=False)
        else:
            publish(catalog, cloud, None, dry_run=False, workers=workers)
        return time.perf_counter() - start

    parallel, serial = [], []
    for _ in range(2):
        parallel.append(timed(None))
        serial.append(timed(1))
    ms = f"{MODELLED_LATENCY * 1000:.0f} ms"
    return Result(
        f"publish wall time, {len(regions)} regions ({ms} modelled latency per call)",
        f"stamp {min(parallel):.2f}s",
        f"same work, workers=1: {min(serial):.2f}s",
        min(parallel) / min(serial),
        0.3,
    )


def bench_usage_calls(setup: Setup) -> Result:
    """`stamp usage` of 5 images in 20 regions, shared with 10 consumer accounts: calls made against the fewest."""
    regions = REGIONS[:20]
    publish_setup.reset(setup.endpoint)
    amis = publish_setup.make_amis(setup.endpoint, regions, usage_bench.IMAGES)
    found = usage_bench.catalog(setup.scratch, amis, regions)
    cloud = publish_setup.cloud(setup.endpoint)
    usage_bench.run_usage(found, cloud, workers=32)
    made = sum(cloud.call_counts().values())
    least = usage_bench.minimum_calls(len(regions), len(usage_bench.ACCOUNTS), usage_bench.IMAGES)
    return Result(
        f"usage API calls, {usage_bench.IMAGES} images x {len(regions)} regions x 11 accounts",
        f"stamp {made} calls",
        f"minimum {least}",
        made / least,
        1.0,
    )


def bench_usage_wall(setup: Setup) -> Result:
    """The same `stamp usage` with its accounts and regions side by side, and one call at a time."""
    regions = REGIONS[:20]
    publish_setup.reset(setup.endpoint)
    amis = publish_setup.make_amis(setup.endpoint, regions, usage_bench.IMAGES)
    found = usage_bench.catalog(setup.scratch, amis, regions)

    def timed(workers: int) -> float:
        cloud = publish_setup.cloud(setup.endpoint, latency=MODELLED_LATENCY)
        start = time.perf_counter()
        usage_bench.run_usage(found, cloud, workers=workers)
        return time.perf_counter() - start

    parallel, serial = interleaved(lambda: timed(32), lambda: timed(1))
    return Result(
        f"usage wall time ({MODELLED_LATENCY * 1000:.0f} ms modelled latency per call)",
        f"stamp {parallel:.2f}s",
        f"same work, one at a time: {serial:.2f}s",
        parallel / serial,
        0.3,
    )


def bench_site(setup: Setup) -> Result:
    """`stamp site` for the big catalog: load, view model, one dot run for the lineage, pages, feeds, folder."""
    text = setup.catalog_path.read_text()
    out = setup.scratch / "site"
    how = site_bench.generate(setup.catalog_path, out)
    site_bench.check(out, 1000)
    stamp_s, c_parse_s = interleaved(lambda: site_bench.generate(setup.catalog_path, out), c_parse(text))
    return Result(
        f"site for it: 1,000 pages, index.json, feed.atom (lineage {how})",
        f"stamp {stamp_s:.2f}s",
        f"PyYAML CSafeLoader parse {c_parse_s:.2f}s",
        stamp_s / c_parse_s,
        1.0,
    )


BENCHMARKS: list[Callable[[Setup], Result]] = [
    bench_load,
    bench_record,
    bench_plan,
    bench_plan_updates,
    bench_publish_calls,
    bench_publish_wall,
    bench_usage_calls,
    bench_usage_wall,
    bench_site,
]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        catalog_path = generate_catalog(scratch / "big", releases=RELEASES)
        size_mb = catalog_path.stat().st_size / 1e6
        print(f"generated catalog: 1,000 images x {RELEASES} releases x 20 regions, {size_mb:.1f} MB", file=sys.stderr)
        with publish_setup.moto_server(scratch) as endpoint:
            setup = Setup(catalog_path, scratch, endpoint)
            results = []
            for bench in BENCHMARKS:
                results.append(bench(setup))
                print(f"  done: {results[-1].name}", file=sys.stderr)
    name_w = max(len(r.name) for r in results)
    stamp_w = max(len(r.measured) for r in results)
    ref_w = max(len(r.reference) for r in results)
    print(f"{'benchmark':<{name_w}}  {'stamp':<{stamp_w}}  {'reference':<{ref_w}}  {'ratio':>6}  {'target':>7}")
    for r in results:
        verdict = "ok" if r.ok else "MISSED"
        print(
            f"{r.name:<{name_w}}  {r.measured:<{stamp_w}}  {r.reference:<{ref_w}}  {r.ratio:>6.2f}  "
            f"<= {r.target:<4} {verdict}"
        )
    print(
        f"publish benchmarks run against a moto server in its own process; the wall-time one adds "
        f"{MODELLED_LATENCY * 1000:.0f} ms before each request to model the round trip to AWS."
    )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
