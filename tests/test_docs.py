"""Every `leukonet ...` command in the docs names a subcommand and flags that exist.

The READMEs are logs of exact commands (the accuracy log too): a renamed flag would
leave them lying. Only the parser is checked; nothing is run.
"""
import argparse
import re
import shlex
from pathlib import Path

import pytest

from leukonet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "benchmarks/results/accuracy_cpu.md", "benchmarks/results/pbc.md",
        "benchmarks/results/transfer.md",
        "data_manifests/blood-cells/README.md",
        "data_manifests/pbc/README.md", "leukonet/weights/simple_cnn_wide.pbc_v1/README.md"]


def doc_commands(path):
    """(line number, tokens) of each `leukonet` command in the file's bash blocks,
    continuation lines joined, comments and placeholders like `[--tta 4]` unwrapped."""
    out, in_bash, pending, start = [], False, "", 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_bash = not in_bash and line.strip() in ("```bash", "```sh")
            continue
        if not in_bash:
            continue
        text = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if not pending:
            start = n
        pending += " " + text.rstrip("\\")
        if text.endswith("\\"):
            continue
        command, pending = pending.strip(), ""
        for part in re.split(r"\s*(?:&&|;|\|\||\bdo\b)\s*", command):
            part = part.strip().removeprefix("$ ")
            part = re.sub(r"^/usr/bin/time( -v)?\s+", "", part)
            if part.startswith("leukonet "):
                tokens = shlex.split(part.replace("[", " ").replace("]", " "))
                out.append((start, tokens[1:]))
    return out


def _subparsers(parser):
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _check(tokens):
    parser, words = build_parser(), list(tokens)
    sub = _subparsers(parser)
    while sub is not None and words and not words[0].startswith("-"):
        name = words.pop(0)
        if name not in sub.choices:
            return f"unknown subcommand {name!r}"
        parser = sub.choices[name]
        sub = _subparsers(parser)
    known = set(parser._option_string_actions)
    bad = [w.split("=")[0] for w in words if re.match(r"^--?[a-zA-Z]", w) and w.split("=")[0] not in known]
    return f"unknown option(s) {', '.join(bad)}" if bad else None


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_parse(doc):
    commands = doc_commands(ROOT / doc)
    assert commands, f"{doc}: no leukonet commands found (has the format changed?)"
    problems = [f"{doc}:{n}: leukonet {' '.join(t)}: {why}" for n, t in commands if (why := _check(t))]
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_renamed_flag(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\nleukonet fit --preset blood-cells-cpu \\\n    --val-manifst v.csv  # typo\n"
                    "leukonet evaluate runs/a --manifest t.csv --data-root d [--tta 4]\n```\n"
                    "leukonet fit --not-in-a-code-block\n")
    (n1, first), (n2, second) = doc_commands(page)
    assert (n1, n2) == (2, 4)
    assert _check(first) == "unknown option(s) --val-manifst"
    assert _check(second) is None
    assert _check(["manifest", "buld", "x"]) == "unknown subcommand 'buld'"
