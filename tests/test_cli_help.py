"""`mlrepro --help` and each command's help: described, every option explained, exit codes."""

from __future__ import annotations

import argparse
import re

import pytest

from mlrepro.cli import build_parser, main
from mlrepro.compare.verdict import EXIT_CODES as VERDICT_EXIT_CODES
from mlrepro.errors import CheckFailed, MlreproError


def _commands(parser: argparse.ArgumentParser, prefix: str = "mlrepro"):
    """Every (name, parser) under `parser`, sub-commands of sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{prefix} {name}", child
                yield from _commands(child, f"{prefix} {name}")


COMMANDS = list(_commands(build_parser()))


def test_the_parser_walk_finds_every_command():
    names = {name for name, _p in COMMANDS}
    assert {"mlrepro runs", "mlrepro show", "mlrepro diff", "mlrepro reproduce",
            "mlrepro remote add", "mlrepro launch", "mlrepro index"} <= names
    assert len(names) >= 19


@pytest.mark.parametrize("name,parser", COMMANDS, ids=[n for n, _p in COMMANDS])
def test_every_command_has_a_description_and_every_option_a_help(name, parser):
    assert parser.description and parser.description.strip(), f"{name} has no description"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        what = "/".join(action.option_strings) or action.dest
        assert action.help and action.help is not argparse.SUPPRESS, \
            f"{name} {what} has no help string"
        if not action.option_strings:   # one positional style: RUN, RUN_A RUN_B, PATH, ...
            assert re.fullmatch(r"[A-Z][A-Z_]*", action.metavar or ""), \
                f"{name} positional {action.dest} is shown as {action.metavar!r}, not upper case"
    parser.format_help()  # a bad %-format in any help string raises here


def test_runs_share_one_name_across_commands():
    shown = {}
    for name, parser in COMMANDS:
        for action in parser._actions:
            if not action.option_strings and action.dest in ("run", "runs"):
                shown[name] = action.metavar
    assert set(shown.values()) == {"RUN"} and len(shown) >= 7, shown


def test_main_help_lists_the_exit_codes_the_cli_returns(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    section = out.split("exit codes:")[1]
    codes = {int(m) for m in re.findall(r"^  (\d+) ", section, flags=re.M)}
    # what the code returns: errors, failed checks, reproduce's verdicts, Ctrl-C
    assert {MlreproError.exit_code, CheckFailed.exit_code, *VERDICT_EXIT_CODES.values(),
            130, 0} == codes
    assert re.search(r"^  2 +bad input", section, flags=re.M)
    assert re.search(r"^  1 +a check failed: reproduce diverged", section, flags=re.M)
    assert "MLREPRO_DEBUG=1" in section


def test_a_command_help_shows_the_positional_names(capsys):
    with pytest.raises(SystemExit):
        main(["diff", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.rstrip().endswith("RUN_A RUN_B")


def test_a_command_group_without_its_command_says_which_to_give(capsys):
    assert main(["remote"]) == 2
    err = capsys.readouterr().err
    assert "needs a command: add, list or remove" in err and len(err.strip().splitlines()) == 1
