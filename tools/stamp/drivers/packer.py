"""A small typed wrapper of the `packer` CLI: version, fmt, validate, console, build, and the manifest it writes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stamp import output
from stamp.drivers import proc
from stamp.drivers.hcl import BUILD_VARIABLES, PLUGINS_FILE
from stamp.errors import BuildError, ProcessError

PACKER = "packer"
INSTALL_HINT = (
    "install Packer: `apt-get install packer` on Debian and Ubuntu, or HashiCorp's packer package for your "
    "platform; stamp works with 1.6.6 and later"
)
# Packer reads AWS_MAX_ATTEMPTS as its waiter attempt count, where boto3 reads API retries
# (docs/facts.md, Packer 1.6.6); the template's aws_polling block is the one place polling is set. A blank
# value is what Go's os.Getenv gives for an unset one, and proc.run can only add to the environment, not
# remove from it.
BLANKED = ("AWS_MAX_ATTEMPTS", "AWS_POLL_DELAY_SECONDS")
# No call home for a version check: these machines may have no internet, and builds must not depend on it.
QUIET = {"CHECKPOINT_DISABLE": "1"}

# `packer version` answers at once; a Packer that hangs here is broken, and every command would hang with it.
VERSION_TIMEOUT = 30.0

_VERSION = re.compile(r"(?:Packer v|^v?)(\d+)\.(\d+)\.(\d+)", re.MULTILINE)


def packer_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment entries every Packer run gets on top of stamp's own."""
    return {**QUIET, **(env or {}), **dict.fromkeys(BLANKED, "")}


def parse_version(text: str) -> tuple[int, int, int]:
    match = _VERSION.search(text)
    if match is None:
        raise BuildError(f"cannot read Packer's version from {text.strip()[:200]!r}", hint=INSTALL_HINT)
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def detect_version(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """The installed Packer's version; a clear BuildError when there is none."""
    try:
        done = proc.run([PACKER, "version"], env=packer_env(env), echo=False, timeout=VERSION_TIMEOUT)
    except ProcessError as exc:
        if exc.returncode == 127:
            raise BuildError("packer is not installed (not found on PATH)", hint=INSTALL_HINT) from None
        if exc.timed_out:
            raise BuildError(
                f"`packer version` did not answer within {VERSION_TIMEOUT:g} s; it was stopped",
                hint=f"check the `packer` found on PATH (`command -v packer`); {INSTALL_HINT}",
            ) from None
        raise BuildError(f"`packer version` failed (exit {exc.returncode}): {exc.stderr.strip()}") from None
    return parse_version(done.stdout + done.stderr)


def init(directory: Path, env: Mapping[str, str] | None = None) -> bool:
    """`packer init .` where the render asks for plugins (Packer 1.7+); False, and nothing run, where it does not."""
    if not (directory / PLUGINS_FILE).exists():
        return False
    try:
        proc.run([PACKER, "init", "."], cwd=directory, env=packer_env(env), timeout=600)
    except ProcessError as exc:
        raise BuildError(
            f"`packer init` failed in {directory}: {_one_line(exc.stderr or exc.stdout)}",
            hint="it downloads the amazon plugin: it needs the network, or a plugin already in Packer's plugin folder",
        ) from None
    return True


def fmt_check(directory: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Files in `directory` that `packer fmt` would rewrite (names relative to it); empty when all are canonical."""
    done = proc.run([PACKER, "fmt", "-check", "."], cwd=directory, env=packer_env(env), check=False, timeout=120)
    if done.returncode == 0:
        return []
    if done.returncode == 3:  # Packer's "some files need formatting"; it lists them on stdout.
        return sorted(line.strip() for line in done.stdout.splitlines() if line.strip())
    raise BuildError(
        f"`packer fmt -check` failed in {directory} (exit {done.returncode}): {_one_line(done.stderr or done.stdout)}"
    )


def validate(
    directory: Path, env: Mapping[str, str] | None = None, *, variables: Mapping[str, str] | None = None
) -> list[str]:
    """Problems `packer validate` finds in `directory`, one line each; empty when the template is valid."""
    args = [PACKER, "validate", *var_args(variables or {}), "."]
    done = proc.run(args, cwd=directory, env=packer_env(env), check=False, timeout=300)
    if done.returncode == 0:
        return []
    problems = split_problems(done.stderr + "\n" + done.stdout)
    return problems or [f"packer validate failed (exit {done.returncode}) with no message"]


def build(
    directory: Path,
    *,
    env: Mapping[str, str] | None = None,
    var_files: Iterable[Path] = (),
    vars: Mapping[str, str] | None = None,
    log: Path,
    image: str | None = None,
    on_error: str = "cleanup",
) -> None:
    """`packer build` inside `directory`: *.auto.pkrvars.json files load only when Packer is given a folder.

    Packer's output goes to `log` (and to stderr with `-v`); stderr gets one step line, `[image] packer build
    … 5.1 s`, whose live note on a terminal follows Packer's phases and provisioning scripts. A failure names
    what failed (a provisioning script and its last lines, else Packer's last error). `on_error="abort"` is
    Packer's `-on-error=abort`: a failed build leaves its instance running.
    """
    name = image or directory.name
    args = [PACKER, *build_args(var_files=var_files, variables=vars or {}, on_error=on_error)]
    repo_root = (vars or {}).get("repo_root", "")
    progress = Progress(directory, roots=(Path(repo_root),) if repo_root else ())
    try:
        with output.step(name, "packer build") as step:
            progress.step = step
            proc.run_logged(
                args, log=log, prefix=f"[{name}] ", cwd=directory, env=packer_env(env), on_line=progress.feed
            )
    except ProcessError as exc:
        if exc.returncode == 127:
            raise BuildError("packer is not installed (not found on PATH)", hint=INSTALL_HINT) from None
        raise BuildError(
            f"packer build of image '{name}' failed (exit {exc.returncode}): {progress.diagnosis(exc.stdout)}",
            hint=f"the full log is in {log}",
        ) from None


def build_args(*, var_files: Iterable[Path] = (), variables: Mapping[str, str], on_error: str = "cleanup") -> list[str]:
    """The arguments after `packer` for a build run inside the rendered folder."""
    # Absolute, because Packer runs in the build folder and a relative path would be read from there.
    files = [f"-var-file={Path(path).resolve()}" for path in var_files]
    keep = [f"-on-error={on_error}"] if on_error != "cleanup" else []
    return ["build", "-color=false", "-timestamp-ui", *keep, *files, *var_args(variables), "."]


# Packer's UI lines (1.6.6, `-color=false -timestamp-ui`): `<time>: ==> <build>: <phase>` for a phase and
# `<time>:     <build>: <text>` for what a provisioner's command printed; tests/test_build_failures.py runs one.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: ")
_PHASE = re.compile(r"^==> [\w.-]+: (?P<text>.*)$")
_OUTPUT = re.compile(r"^    [\w.-]+: ?(?P<text>.*)$")
_SCRIPT = "Provisioning with shell script: "
_SCRIPT_EXIT = re.compile(r"Script exited with non-zero exit status: (?P<code>-?\d+)")
# The shell provisioner runs `inline` commands from a temporary file of its own.
_INLINE = re.compile(r"^/tmp/(?:packer-shell|script_)\d*")
TAIL_LINES = 30


@dataclass
class Progress:
    """Follows Packer's output: the phase it is in (for the step's live note), and each script's output."""

    cwd: Path
    roots: Sequence[Path] = ()
    step: output.Step | None = None
    script: str = ""
    script_lines: list[str] = field(default_factory=list)
    exit_code: str = ""

    def feed(self, raw: str) -> None:
        line = _TIMESTAMP.sub("", raw.rstrip("\r\n"))
        phase = _PHASE.match(line)
        if phase is not None:
            text = phase.group("text")
            if text.startswith(_SCRIPT):
                self.script, self.script_lines = self.shown(text.removeprefix(_SCRIPT).strip()), []
                text = f"provisioning {self.script}"
            if self.step is not None:
                self.step.update(text[:80])
            return
        found = _OUTPUT.match(line)
        if found is not None and self.script:
            self.script_lines.append(found.group("text"))
        code = _SCRIPT_EXIT.search(line)
        if code is not None and not self.exit_code:
            self.exit_code = code.group("code")

    def shown(self, path: str) -> str:
        """A script's path as the catalog names it (relative to the repository), where it is under a root."""
        if _INLINE.match(path):
            return "inline shell commands"
        for root in (*self.roots, self.cwd):
            try:
                return str((self.cwd / path).resolve().relative_to(root.resolve()))
            except (ValueError, OSError):
                continue
        return path

    def diagnosis(self, text: str) -> str:
        """What failed: the provisioning script, its exit code and last lines; else Packer's last error."""
        if self.script and self.exit_code:
            tail = output.last_lines(self.script_lines, TAIL_LINES)
            return f"provisioning script {self.script} exited {self.exit_code}" + (
                f"\nits last {min(TAIL_LINES, len(tail.splitlines()))} lines of output:\n{tail}" if tail else ""
            )
        return _last_error(text)


def var_args(variables: Mapping[str, str]) -> list[str]:
    unknown = sorted(set(variables) - set(BUILD_VARIABLES))
    if unknown:
        raise ValueError(f"not a build-time template variable: {', '.join(unknown)} (known: {BUILD_VARIABLES})")
    return [f"-var={key}={variables[key]}" for key in sorted(variables)]


def read_manifest(path: Path, *, build_id: str | None = None) -> dict[str, str]:
    """Region → AMI ID from the manifest post-processor's entry for Packer's last run.

    The post-processor appends one entry per run; only `last_run_uuid` says which is this one. With
    `build_id`, an entry carrying another build's ID (a stale manifest after a failed run) is refused.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(
            f"{path}: no Packer manifest; the build did not get as far as creating an image",
            hint="see the build log next to it",
        ) from None
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path}: not a readable Packer manifest: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("builds"), list):
        raise BuildError(f"{path}: not a Packer manifest (no `builds` list)")
    run_uuid = data.get("last_run_uuid")
    entries: list[dict[str, Any]] = [
        entry for entry in data["builds"] if isinstance(entry, dict) and entry.get("packer_run_uuid") == run_uuid
    ]
    if not run_uuid or not entries:
        raise BuildError(f"{path}: no build entry for the last run ({run_uuid!r})")
    amis: dict[str, str] = {}
    for entry in entries:
        found = entry.get("custom_data") or {}
        if build_id is not None and found.get("build_id") != build_id:
            raise BuildError(
                f"{path}: the last run is build {found.get('build_id')!r}, not {build_id!r}",
                hint="the manifest is left over from an earlier build; this one made no image",
            )
        for region, ami in parse_artifact_id(str(entry.get("artifact_id", ""))).items():
            if amis.get(region, ami) != ami:
                raise BuildError(f"{path}: two AMIs for {region} in one run: {amis[region]} and {ami}")
            amis[region] = ami
    return dict(sorted(amis.items()))


def parse_artifact_id(artifact_id: str) -> dict[str, str]:
    """`us-east-1:ami-1,eu-west-1:ami-2` → {region: AMI ID}."""
    amis: dict[str, str] = {}
    for part in artifact_id.split(","):
        region, sep, ami = part.strip().partition(":")
        if not sep or not region or not ami.startswith("ami-"):
            raise BuildError(f"unexpected artifact ID from Packer: {artifact_id!r} (want region:ami-…,…)")
        amis[region] = ami
    return amis


def split_problems(output: str) -> list[str]:
    """Packer's error blocks (`Error: …` and its detail lines, wrapped at 80 columns), one line each."""
    problems: list[list[str]] = []
    for raw in output.splitlines():
        line = raw.strip()
        if raw.startswith("Error:"):
            problems.append([])
            line = line.removeprefix("Error:").strip()
        if not problems or not line or line in _NOISE or _COUNT.match(line):
            continue
        problems[-1].append(line)
    return [" ".join(parts) for parts in problems if parts]


_NOISE = {"(source code not available)"}
_COUNT = re.compile(r"^\d+ error\(s\) occurred:$")


_BUILD_ERROR = re.compile(r"^(?:--> [\w.-]+: |Build '[^']*' errored(?: after [^:]*)?: )(?P<text>.+)$")


def _last_error(text: str) -> str:
    """Packer's own summary of what failed (`--> build: …`), else its last line that mentions an error."""
    lines = [_TIMESTAMP.sub("", line).strip() for line in text.splitlines()]
    summaries: list[str] = []
    for index, found in enumerate(map(_BUILD_ERROR.match, lines)):
        if found is None:
            continue
        summary = found.group("text")
        if _COUNT.match(summary):
            # `1 error(s) occurred:` says nothing by itself: the `* …` lines after it are the errors.
            items = [line for line in lines[index + 1 : index + 6] if line.startswith("* ")]
            summary = " ".join([summary, *items])
        summaries.append(summary)
    if summaries:
        return summaries[-1]
    errors = [line for line in lines if "error" in line.lower() and "didn't complete successfully" not in line]
    return errors[-1] if errors else _one_line(text)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
