"""Every numeric option of every subcommand is bounded: argparse refuses a value out of range in one sentence.

The parsers are found by introspection: each subcommand of ``pipeline`` (the table in
:mod:`framework.commands`) is run with ``parse_args`` intercepted, and every option of the
parser it builds (and of its sub-parsers) is checked. A new option that takes a number
without a :class:`framework.cli.Bounded` type fails ``test_every_numeric_option_is_bounded``.
"""
from __future__ import annotations

import argparse
from unittest import mock

import pytest

from framework import cli
from framework.commands import SUBCOMMANDS
from framework.commands.pipeline import load

# (subcommand, argv prefix that reaches the parser holding the option, the option's flag, its action)
Option = tuple[str, tuple[str, ...], str, argparse.Action]


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def _parser_of(name: str) -> argparse.ArgumentParser:
    """The parser subcommand ``name`` builds, caught when it is asked to parse."""
    def intercept(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Captured(self)

    main = load(name)
    with mock.patch.object(argparse.ArgumentParser, "parse_args", intercept):
        try:
            main([])
        except _Captured as captured:
            return captured.parser
    raise AssertionError(f"subcommand {name!r} did not parse its arguments with argparse")


def _options(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str,
                                                                                           argparse.Action]]:
    found: list[tuple[tuple[str, ...], str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _options(sub, prefix + (sub_name,))
        elif action.option_strings and action.nargs != 0:
            found.append((prefix, max(action.option_strings, key=len), action))
    return found


def _numeric(action: argparse.Action) -> bool:
    """Does this option take a number (by its type, or by its default)?"""
    if isinstance(action.type, cli.Bounded) or action.type in (int, float):
        return True
    return isinstance(action.default, (int, float)) and not isinstance(action.default, bool)


PARSERS = {name: _parser_of(name) for name in SUBCOMMANDS}
NUMERIC: list[Option] = [(name, prefix, flag, action) for name, parser in PARSERS.items()
                         for prefix, flag, action in _options(parser) if _numeric(action)]
BOUNDED = [o for o in NUMERIC if isinstance(o[3].type, cli.Bounded)]
IDS = [f"{name} {' '.join(prefix)} {flag}".replace("  ", " ") for name, prefix, flag, _ in NUMERIC]


def test_the_introspection_sees_the_options_the_issue_names():
    flags = {(name, flag) for name, _, flag, _ in NUMERIC}
    for expected in [("api", "--port"), ("api", "--delay"), ("game-api", "--port"), ("game-api", "--ack-timeout"),
                     ("game-load", "--rate"), ("game-load", "--players"), ("produce", "--runs"),
                     ("bench", "--rate"), ("bench", "--records"), ("bench", "--partitions"), ("admin", "--partitions"),
                     ("consume", "--timeout"), ("run", "--delay"), ("tables", "--retain-last")]:
        assert expected in flags, expected
    assert len(NUMERIC) >= 45


@pytest.mark.parametrize("name, prefix, flag, action", NUMERIC, ids=IDS)
def test_every_numeric_option_is_bounded(name, prefix, flag, action):
    assert isinstance(action.type, cli.Bounded), (
        f"`pipeline {name} {flag}` takes a number without bounds; give it type=cli.bounded_int/bounded_float/"
        "bounded_list/port")
    if action.default is not None:  # the default is itself in range
        text = ",".join(map(str, action.default)) if isinstance(action.default, tuple) else str(action.default)
        assert action.type(text) == action.default


def _out_of_range(bounds: cli.Bounded) -> list[str]:
    low, high = bounds.low, bounds.high
    values = [str(int(low) - 1) if bounds.kind is int else (f"{low:g}" if not bounds.low_inclusive else
                                                             f"{low - 1:g}")]
    values.append(str(int(high) + 1) if bounds.kind is int else f"{high * 10:g}")
    values.append("1e10" if bounds.kind is int else "inf")  # a whole number cannot be written 1e10
    if bounds.kind is float:
        values.append("nan")
    return values


CASES = [(name, prefix, flag, action, value) for name, prefix, flag, action in BOUNDED
         for value in _out_of_range(action.type)]


@pytest.mark.parametrize("name, prefix, flag, action, value", CASES,
                         ids=[f"{c[0]} {c[2]} {c[4]}" for c in CASES])
def test_a_value_out_of_range_is_refused_in_one_sentence(name, prefix, flag, action, value, capsys):
    with pytest.raises(SystemExit) as info:
        PARSERS[name].parse_args([*prefix, flag, value])
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    bounds = action.type
    assert f"error: argument {flag}: " in error and value in error, error
    assert f"use {bounds.allowed}" in error and error.count(". ") == 0, error


@pytest.mark.parametrize("argv, sentence", [
    (["game-load", "--rate", "-1"], "argument --rate: -1 is out of range; use a number from 0 to 1000000"),
    (["bench", "--rate", "-1"], "argument --rate: -1 is out of range; use a number from 0 to 1000000000"),
    (["produce", "chat-sim", "--runs", "1e10"],
     "argument --runs: '1e10' is not a whole number; use a whole number from 1 to 1000000"),
    (["produce", "chat-sim", "--runs", "0"],
     "argument --runs: 0 is out of range; use a whole number from 1 to 1000000"),
    (["api", "--delay", "inf"], "argument --delay: inf is out of range; use a number from 0 to 3600"),
    (["api", "--port", "70000"], "argument --port: 70000 is out of range; use a whole number from 0 to 65535"),
    (["game-api", "--port", "70000"], "argument --port: 70000 is out of range; use a whole number from 0 to 65535"),
    (["dashboard", "--port", "0"], "argument --port: 0 is out of range; use a whole number from 1 to 65535"),
    (["bench", "--partitions", "1,0"],
     "argument --partitions: 0 is out of range; use a whole number from 1 to 10000 (in the list 1,0)"),
])
def test_the_issue_examples_through_the_pipeline_command(argv, sentence, capsys):
    from framework.commands.pipeline import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"pipeline {argv[0]}: error: {sentence}", err


def test_bounded_types_accept_their_range():
    assert cli.bounded_int(1, 9)("9") == 9 and cli.bounded_float(0, 1, low_inclusive=False)("1") == 1.0
    assert cli.bounded_list(0, 20)(" 0, 20 ") == (0, 20) and cli.port()("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="^0 is out of range; use a number above 0 and at most 1$"):
        cli.bounded_float(0, 1, low_inclusive=False)("0")
