"""The command line explains itself: every option of every subcommand has help text, every subcommand's help
ends with an example; `stamp release` refuses option combinations it would otherwise ignore (exit 2)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from stamp.cli import build_parser, main


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(sub.choices)


VERBS = sorted(subcommands())


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    return [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]


def test_the_walk_covers_every_subcommand_and_the_options_easy_to_miss() -> None:
    found = subcommands()
    assert set(found) >= {
        "validate",
        "render",
        "plan",
        "build",
        "verify",
        "record",
        "publish",
        "release",
        "lookup",
        "launch",
        "prune",
        "revoke",
        "restore",
        "rollback",
        "gc",
        "demo",
        "local",
        "schema",
    }
    options = {verb: {s for a in p._actions for s in a.option_strings} for verb, p in found.items()}
    assert "--keep-verified" in options["gc"] and "--at" in options["revoke"]


def test_the_top_level_options_have_help() -> None:
    assert undocumented(build_parser()) == []


@pytest.mark.parametrize("verb", VERBS)
def test_every_option_and_argument_has_help(verb: str) -> None:
    assert undocumented(subcommands()[verb]) == [], f"stamp {verb}: options without help"


@pytest.mark.parametrize("verb", VERBS)
def test_the_help_ends_with_an_example(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"example: stamp {verb}" in subcommands()[verb].format_help()
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith(f"example: stamp {verb}"), out


@pytest.mark.parametrize("verb", VERBS)
def test_the_example_parses(verb: str) -> None:
    """The example is a command line stamp accepts (shell redirections aside)."""
    help_text = subcommands()[verb].format_help()
    example = help_text.rstrip().splitlines()[-1].removeprefix("example: stamp ").split(" > ")[0]
    args = build_parser().parse_args(shlex.split(example))
    assert args.command == verb


RELEASE_MISUSE = {
    "--changed without --base": (["--changed"], "--changed needs --base REF"),
    "--changed with --head but no --base": (["--changed", "--head", "HEAD"], "--changed needs --base REF"),
    "--base with image names": (["web", "--base", "origin/main"], "--base is for --changed only"),
    "--head with image names": (["web", "--head", "HEAD"], "--head is for --changed only"),
    "--base and --head with image names": (
        ["web", "app", "--base", "origin/main", "--head", "HEAD"],
        "--base and --head are for --changed only; with image names they would be ignored",
    ),
    "--no-source-check with image names": (["web", "--no-source-check"], "--no-source-check is for --changed only"),
    "--base without --changed or names": (["--base", "origin/main"], "did you mean --changed?"),
    "image names and --changed": (["web", "--changed", "--base", "origin/main"], "image names or --changed, not both"),
    "nothing to release": ([], "name the images to release"),
}


@pytest.mark.parametrize("case", sorted(RELEASE_MISUSE))
def test_release_misuse_is_a_usage_error(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, fragment = RELEASE_MISUSE[case]
    # No catalog at all: the command line is judged first, so the answer is exit 2, not the catalog's exit 1.
    code = main(["release", *argv, "--catalog", str(tmp_path / "catalog.yaml")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("stamp release: ") and fragment in err, err
    assert "Traceback" not in err
