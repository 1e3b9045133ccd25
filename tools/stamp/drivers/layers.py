"""Running work per image in dependency layers: parents before children, a failed parent skips its children."""

from __future__ import annotations

import secrets
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from stamp.catalog.load import Catalog
from stamp.catalog.results import BuildResult
from stamp.drivers.stopping import signal_packer, stop_builds
from stamp.errors import StampError
from stamp.output import say


@dataclass(frozen=True)
class Outcome:
    """What happened to one image in a multi-image run."""

    image: str
    result: BuildResult | None = None
    error: StampError | None = None
    skipped_because: str | None = None


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
        # A name of its own, so a stop can find and wait for every thread of this pool (see _stop_and_wait).
        prefix = f"stamp-build-{secrets.token_hex(4)}"
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix=prefix) as pool:
            futures: dict[str, Future[BuildResult]] = {}
            try:
                for name in ready:
                    futures[name] = pool.submit(work, name)
                for name, future in futures.items():
                    # Wait in short steps: a signal the kernel hands to a worker thread runs its Python handler
                    # in this thread only once this thread runs again; a blocking result() could be minutes.
                    while not wait([future], timeout=0.2).done:
                        pass
                    try:
                        outcomes[name] = Outcome(name, result=future.result())
                    except StampError as exc:
                        say(f"[{name}] failed: {exc}")
                        outcomes[name] = Outcome(name, error=exc)
            except BaseException:
                # SIGTERM (cli raises it here) or Ctrl-C: the work runs in worker threads, which no signal
                # reaches. Stop them, and wait while Packer cleans up, so nothing is left running unattended.
                _stop_and_wait(pool, prefix, futures)
                raise
    return [outcomes[n] for n in catalog.topo_order(wanted)]


def _stop_and_wait(pool: ThreadPoolExecutor, prefix: str, futures: dict[str, Future[BuildResult]]) -> None:
    """Stop the pool's builds and wait for its threads, re-signalling any Packer that started meanwhile.

    Threads are found by name, not through `futures`: an exception raised inside `submit` leaves a running
    thread that neither the caller nor the pool's own shutdown knows about.
    """
    stop_builds()
    pool.shutdown(wait=False, cancel_futures=True)  # what has not started never starts
    workers = [thread for thread in threading.enumerate() if thread.name.startswith(prefix)]
    while any(thread.is_alive() for thread in workers):
        for thread in workers:
            thread.join(timeout=1.0)
        signal_packer(signal.SIGTERM)  # a Packer that started just as the first signal was sent
    for name, future in futures.items():
        if future.done() and not future.cancelled() and isinstance(future.exception(), StampError):
            say(f"[{name}] failed: {future.exception()}")
