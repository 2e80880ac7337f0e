"""Every option and positional argument of every `leukonet` command has help text, and
every command's --help renders (a stray % in a help string only fails when rendered)."""
import argparse

import pytest

from leukonet.cli import build_parser


def _subparsers(parser):
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _commands(parser, prefix=()):
    """(words, parser) of the top-level parser and every command and subcommand."""
    yield list(prefix), parser
    for action in _subparsers(parser):
        for name, sub in action.choices.items():
            yield from _commands(sub, (*prefix, name))


def _without_help(parser):
    missing = []
    for words, p in _commands(parser):
        for a in p._actions:
            if isinstance(a, (argparse._SubParsersAction, argparse._HelpAction)):
                continue
            if not a.help:
                name = "/".join(a.option_strings) or a.dest
                missing.append(" ".join(["leukonet", *words, name]))
    return missing


COMMANDS = [words for words, _ in _commands(build_parser())]


def test_every_argument_has_help():
    missing = _without_help(build_parser())
    assert not missing, f"{len(missing)} argument(s) without help text:\n" + "\n".join(missing)


def test_the_walk_sees_subcommands():
    assert ["manifest", "build"] in COMMANDS and ["fit"] in COMMANDS and ["ablate"] in COMMANDS


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "leukonet")
def test_help_renders(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*words, "--help"])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: leukonet")
    assert not captured.err


def test_the_walk_sees_a_missing_help():
    parser = argparse.ArgumentParser(prog="leukonet")
    sub = parser.add_subparsers().add_parser("x", help="a command")
    sub.add_argument("path")
    sub.add_argument("--seed", type=int, help="documented")
    sub.add_argument("--flag", action="store_true")
    assert _without_help(parser) == ["leukonet x path", "leukonet x --flag"]
