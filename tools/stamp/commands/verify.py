"""Verification: launch fresh instances of a built AMI, run the image's testinfra tests, always clean up."""

from __future__ import annotations

import argparse
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from stamp import output
from stamp.catalog.load import Catalog, Image
from stamp.catalog.results import BuildResult, write_result
from stamp.commands.common import catalog_of, target_of
from stamp.drivers import proc
from stamp.drivers.stopping import check_stop
from stamp.errors import CatalogError, VerifyError
from stamp.hosts.base import Host, Launcher
from stamp.output import say
from stamp.tags import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG

if TYPE_CHECKING:
    from stamp.hosts.base import Target


# Image tests run with testinfra's plugin alone (`-p testinfra.plugin`), not every plugin installed beside stamp:
# what a verification checks must not change with the environment (a reordering or rerunning plugin), and
# autoloading them all cost more than a small image's tests (0.65 s a run where hypothesis is installed). A tests
# folder that wants another plugin names it in its conftest.py (`pytest_plugins`). docs/catalog.md, `tests`.
# Nothing is written into the tests folder, which is the image's source: no cache (`-p no:cacheprovider`) and no
# bytecode, which `stamp plan` would otherwise see as a change to the image.
PYTEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
PYTEST_PLUGINS = ("-p", "testinfra.plugin")


@dataclass(frozen=True)
class TestReport:
    total: int
    failed: tuple[str, ...]
    junit: Path
    skipped: tuple[str, ...] = ()
    # Failed test -> the first line of its assertion (or error) message, where the report has one.
    why: Mapping[str, str] = field(default_factory=dict)
    # Seconds of the steps after the tests (inventory, security gate): result.json keeps them with the rest.
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        """Tests that ran and passed: a skipped test checked nothing, so it is not counted as passed."""
        return self.total - len(self.failed) - len(self.skipped)


def pytest_args(tests_dir: Path, host: Host, *, ssh_config: Path, junit: Path) -> list[str]:
    """The pytest command line that runs an image's tests against `host` over a real SSH connection."""
    return [
        sys.executable,
        "-m",
        "pytest",
        str(tests_dir),
        f"--hosts=ssh://{host.ssh_user}@{host.ssh_host}:{host.ssh_port}",
        f"--ssh-config={ssh_config}",
        f"--junitxml={junit}",
        *PYTEST_PLUGINS,
        "-p",
        "no:cacheprovider",
        # The image's tests are not the project's: don't pick up its pytest configuration or rootdir.
        "-c",
        "/dev/null",
        f"--rootdir={tests_dir}",
        "-q",
        "--color=no",
    ]


def read_junit(path: Path) -> TestReport:
    """Count tests and name the failed ones from a JUnit XML report."""
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - a report our own pytest run just wrote
    except (OSError, ET.ParseError) as exc:
        raise VerifyError(f"no readable test report at {path}: {exc}") from None
    total = 0
    failed: list[str] = []
    skipped: list[str] = []
    why: dict[str, str] = {}
    for case in root.iter("testcase"):
        total += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        problem = case.find("failure")
        problem = problem if problem is not None else case.find("error")
        if problem is not None:
            failed.append(name)
            why[name] = first_line(problem.get("message") or problem.text or "")
        elif case.find("skipped") is not None:
            skipped.append(name)
    return TestReport(total, tuple(failed), path, tuple(skipped), why)


def first_line(message: str) -> str:
    """The first line of an assertion message, without pytest's `AssertionError: ` in front."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0].removeprefix("AssertionError: ") if lines else ""


@contextmanager
def launched(
    launcher: Launcher, ami_id: str, *, names: Sequence[str], ssh_user: str, build_id: str
) -> Iterator[list[Host]]:
    """Instances started side by side (each boots on its own), terminated whatever happens, Ctrl-C included.

    A launch still under way when Ctrl-C arrives is not waited for: its instance carries the build ID, so
    `stamp gc` finds it.
    """
    futures: list[Future[Host]] = []
    hosts: list[Host] | None = None
    try:
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="launch") as pool:
            futures = [
                pool.submit(launcher.launch, ami_id, name=name, ssh_user=ssh_user, labels={BUILD_ID_TAG: build_id})
                for name in names
            ]
        hosts = [future.result() for future in futures if future.exception() is None]
        for future in futures:
            if (error := future.exception()) is not None:
                raise error
        # The caller may terminate some itself: it takes them out of this list.
        yield hosts
    finally:
        if hosts is None:  # interrupted while launching: whatever did start
            hosts = [f.result() for f in futures if f.done() and not f.cancelled() and f.exception() is None]
        # Side by side too (removing a local instance's container takes ~0.4 s); each is tried, then the first
        # failure is raised.
        if hosts:
            with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="terminate") as pool:
                ended = [pool.submit(launcher.terminate, host) for host in hosts]
            for termination in ended:
                termination.result()


def identity_problems(launcher: Launcher, hosts: Sequence[Host]) -> list[str]:
    """Instances stamped from one image must not share SSH host keys or a machine ID."""
    keys = [launcher.run(h, "cat /etc/ssh/ssh_host_*_key.pub | sort | sha256sum") for h in hosts]
    machine_ids = [launcher.run(h, "cat /etc/machine-id") for h in hosts]
    problems = []
    if len(set(keys)) < len(keys):
        problems.append("two instances of the image have the same SSH host keys (remove them at build end)")
    if len(set(machine_ids)) < len(machine_ids) or any(not m.strip() for m in machine_ids):
        problems.append("two instances of the image share /etc/machine-id (truncate it at build end)")
    return problems


def verify_ami(
    launcher: Launcher,
    *,
    image: str,
    ami_id: str,
    tests_dir: Path,
    report_dir: Path,
    ssh_user: str,
    build_id: str,
) -> TestReport:
    """Launch two instances of `ami_id`, run the tests on the first, check they differ in identity."""
    junit = report_dir / "verify-junit.xml"
    junit.unlink(missing_ok=True)
    # pytest's own output, and the commands run: build/<image>/logs/, on stderr only with -v.
    log = report_dir / "logs" / "verify.log"
    log.unlink(missing_ok=True)
    started = time.monotonic()
    names = [f"stamp-verify-{build_id}-{i}" for i in (1, 2)]
    timings: dict[str, float] = {}
    with output.logging_to(report_dir / "logs" / "verify-commands.log"), ExitStack() as instances:
        with output.step(image, f"launch {len(names)} instances of {ami_id}"):
            hosts = instances.enter_context(
                launched(launcher, ami_id, names=names, ssh_user=ssh_user, build_id=build_id)
            )
        shown = hosts[0].instance_id if hosts[0].instance_id.startswith("i-") else hosts[0].instance_id[:12]
        from stamp.commands import inventory

        # While the tests run on the first instance: the identity check of both, and the first one's package
        # inventory, read-only commands that would otherwise wait for the tests (docs/inventory.md).
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify") as pool:
            identity_check = pool.submit(identity_problems, launcher, hosts)
            contents = pool.submit(inventory.read, launcher, hosts[0], image=image)
            with output.step(image, f"tests on {shown}") as step:
                proc.run_logged(
                    pytest_args(tests_dir, hosts[0], ssh_config=launcher.ssh_config, junit=junit),
                    log=log,
                    env=PYTEST_ENV,
                    prefix=f"[{image} verify] ",
                    check=False,
                    on_line=lambda line: step.update(line.strip()[:60]) if line.strip() else None,
                )
                identity = identity_check.result()
        if not identity and (tests := read_junit(junit)).total and not tests.failed:
            # Passed: what is inside the image is kept (docs/inventory.md).
            tick = time.monotonic()
            inventory.take(
                contents.result(),
                image=image,
                instance=hosts[0].instance_id,
                ami_id=ami_id,
                build_id=build_id,
                out=report_dir,
            )
            timings["inventory"] = round(time.monotonic() - tick, 2)
    report = read_junit(junit)
    failed = report.failed + tuple(f"stamp::instance-identity: {p}" for p in identity)
    if report.total == 0:
        failed += (f"stamp::no-tests: no tests ran from {tests_dir}",)
    report = TestReport(report.total + 1, failed, junit, report.skipped, report.why, timings)
    for name in report.skipped:
        output.say(f"[{image}] skipped (checked nothing): {name}")
    for name in report.failed:
        output.say(f"[{image}] FAILED {name}" + (f": {report.why[name]}" if report.why.get(name) else ""))
    output.say(
        f"[{image}] {report.passed}/{report.total} checks passed"
        + (f", {len(report.skipped)} skipped" if report.skipped else "")
        + f" in {output.elapsed(time.monotonic() - started)}"
        + ("" if not report.failed else f"; pytest's output: {log}")
    )
    return report


def verify_result(catalog: Catalog, result: BuildResult, target: Target, *, build_root: Path) -> BuildResult:
    """Verify a build on fresh instances and store the verdict in its result.json."""
    image = catalog.images[result.image]
    check_stop(image.name, result.build_id)
    if image.tests is None:
        raise CatalogError(
            f"image '{image.name}' has no `tests` folder; stamp does not record unverified images",
            hint=f"add images/{image.name}/tests with testinfra tests and set images.{image.name}.tests",
        )
    tick = time.monotonic()
    report = verify_ami(
        target.launcher(image),
        image=image.name,
        ami_id=result.amis[image.regions[0]],
        tests_dir=catalog.root / image.tests,
        report_dir=build_root / image.name,
        ssh_user=image.ssh_username,
        build_id=result.build_id,
    )
    if not report.failed:
        report = _security_gate(catalog, image, report, build_root / image.name)
    verdict = BuildResult.model_validate(
        result.model_dump()
        | {
            "verified": "failed" if report.failed else "passed",
            "failed_tests": list(report.failed),
            "verify_report": _repo_relative(report.junit, catalog.root),
            "timings": result.timings | {"verify": round(time.monotonic() - tick, 2)} | dict(report.timings),
        }
    )
    if not report.failed:
        # The tag is what `stamp record` trusts, not result.json, which anyone with the workspace can edit.
        for region, ami_id in sorted(result.amis.items()):
            target.cloud.create_tags(region, [ami_id], {VERIFIED_TAG: VERIFIED})
    write_result(build_root, verdict)
    # Stopped while the tests ran: the verdict is kept, but nothing after verification (record, publish) runs.
    check_stop(image.name, result.build_id)
    return verdict


def _security_gate(catalog: Catalog, image: Image, report: TestReport, folder: Path) -> TestReport:
    """A build that passed its tests still fails while security updates are pending (docs/inventory.md)."""
    from stamp.catalog.inventory import PACKAGES_FILE, read_inventory
    from stamp.commands.pending import security_gate

    tick = time.monotonic()
    with output.step(image.name, "pending security updates"):
        problems = security_gate(catalog, image, read_inventory(folder / PACKAGES_FILE))
    for problem in problems:
        output.say(f"[{image.name}] FAILED {problem}")
    return replace(
        report,
        total=report.total + 1,
        failed=report.failed + tuple(problems),
        timings={**report.timings, "security_gate": round(time.monotonic() - tick, 2)},
    )


def _repo_relative(path: Path, root: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


def run(args: argparse.Namespace) -> int:
    from stamp.catalog.results import read_result

    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    build_root = Path(args.out)
    result = read_result(build_root, name)
    from stamp.commands.build import rerun_options

    # Instances are terminated on the way out; verifying again launches fresh ones.
    with output.interruptible(f"stamp verify {name}", options=rerun_options(args)):
        verdict = verify_result(catalog, result, target_of(args, catalog), build_root=build_root)
    if verdict.failed_tests:
        # verify_ami listed them, one line each with its assertion.
        raise VerifyError(
            f"image '{name}' failed verification ({len(verdict.failed_tests)} failed); it stays unrecorded and"
            " unshared",
            hint=f"JUnit report: {verdict.verify_report}",
        )
    say(f"{name}: verification passed ({verdict.verify_report})")
    return 0
