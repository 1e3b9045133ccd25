"""One error family; each kind carries the exit code SPEC §3 gives it."""

from __future__ import annotations


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


class PolicyError(StampError):
    """Refused by policy: public share, retiring an image in use (exit 6)."""

    exit_code = 6


class CatalogProblems(CatalogError):
    """Several catalog problems found at once; each is one line `file:line:col: path: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
