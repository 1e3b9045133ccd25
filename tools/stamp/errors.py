"""Every exception stamp raises on purpose, in one family; each kind carries its exit code (README, Exit codes)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A location in a YAML document: the keys and list indexes leading to a value.
YamlPath = tuple[str | int, ...]


class StampError(Exception):
    """Base of every error stamp reports to a user; `cli` turns it into a message and an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class CatalogError(StampError):
    """The catalog or another input file is invalid (exit 1)."""

    exit_code = 1


class UsageError(StampError):
    """The command line is wrong (exit 2)."""

    exit_code = 2


class BuildError(StampError):
    """Packer or the build environment failed (exit 3)."""

    exit_code = 3


class VerifyError(StampError):
    """Image tests failed (exit 4)."""

    exit_code = 4


class CloudError(StampError):
    """A cloud API call failed (exit 5)."""

    exit_code = 5


class MissingResource(CloudError):
    """The AMI, snapshot or parameter the call named does not exist in that region (exit 5)."""


class PolicyError(StampError):
    """Refused by policy: public share, retiring an image in use (exit 6)."""

    exit_code = 6


class PromotionRefused(PolicyError):
    """A promotion refused (exit 6); `why` is the reason alone, for `stamp promote --due`'s list."""

    def __init__(self, message: str, *, why: str, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.why = why


class CatalogProblems(CatalogError):
    """Several catalog problems found at once; each is one line `file:line:col: path: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Stopped(BuildError):
    """The build stopped because stamp was asked to (SIGTERM, Ctrl-C)."""


class PublishFailed(CloudError):
    """Some AMI-regions could not be reconciled; the rest were. Carries the report of what was applied.

    Regions run in parallel, so publish cannot apply all or nothing: a region that is throttled past the retry
    bound fails while others finish. What it guarantees instead: every change is a reconcile towards the
    catalog, so running `stamp publish` again applies exactly what is still missing (idempotent), and the
    message says per region what was applied and what was not.
    """

    def __init__(self, failures: Sequence[str], report: Any, regions: Mapping[str, tuple[int, int]]) -> None:
        applied = [
            f"{region}: {done} of {total} AMI(s) reconciled" for region, (done, total) in sorted(regions.items())
        ]
        super().__init__(
            "publish failed in part; not applied:\n  "
            + "\n  ".join(failures)
            + "\nper region:\n  "
            + "\n  ".join(applied),
            hint="fix the cause and run `stamp publish` again: it changes only what still differs from the catalog",
        )
        self.failures = list(failures)
        # The PublishReport of what was applied (typed loosely: this module sits below the commands).
        self.report = report
        self.regions = dict(regions)


class ProcessError(Exception):
    """A command exited non-zero (or could not start); carries the command, rc and output."""

    def __init__(
        self, args: Sequence[str], returncode: int, stdout: str, stderr: str, *, timed_out: bool = False
    ) -> None:
        self.args_ = tuple(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        tail = (stderr or stdout).strip().splitlines()[-15:]
        super().__init__(
            f"command failed (exit {returncode}): {shlex.join(args)}" + ("\n" + "\n".join(tail) if tail else "")
        )


class Terminated(BaseException):
    """SIGTERM arrived (a CI cancel, `kill`): raised in the main thread so that every `finally` runs."""


@dataclass(frozen=True)
class YamlProblem(Exception):
    """Something in the YAML text that stamp refuses; `line`/`column` are 1-based."""

    message: str
    line: int
    column: int
    path: YamlPath = ()
