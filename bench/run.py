"""`make bench`: each benchmark times stamp and a reference side by side in one run and prints the ratio."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

# Run as `python bench/run.py`, so this folder is on sys.path.
from gen_catalog import generate_catalog

from stamp.catalog import load_catalog

ROUNDS = 3


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


def bench_load(catalog_path: Path) -> Result:
    text = catalog_path.read_text()
    stamp_s, c_parse_s = interleaved(
        lambda: load_catalog(catalog_path), lambda: yaml.load(text, Loader=yaml.CSafeLoader)
    )
    return Result(
        "load + validate 1,000-image catalog",
        f"stamp {stamp_s:.2f}s",
        f"PyYAML CSafeLoader parse {c_parse_s:.2f}s",
        stamp_s / c_parse_s,
        1.5,
    )


BENCHMARKS: list[Callable[[Path], Result]] = [bench_load]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        catalog_path = generate_catalog(Path(tmp))
        size_mb = catalog_path.stat().st_size / 1e6
        print(f"generated catalog: 1,000 images x 10 releases x 20 regions, {size_mb:.1f} MB", file=sys.stderr)
        results = [bench(catalog_path) for bench in BENCHMARKS]
    width = max(len(r.name) for r in results)
    print(f"{'benchmark':<{width}}  {'stamp':<16} {'reference':<36} {'ratio':>6}  {'target':>7}")
    for r in results:
        verdict = "ok" if r.ok else "MISSED"
        print(f"{r.name:<{width}}  {r.measured:<16} {r.reference:<36} {r.ratio:>6.2f}  <= {r.target:<4} {verdict}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
