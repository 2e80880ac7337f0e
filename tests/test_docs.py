"""Every `leukonet ...` command in the docs names a subcommand and flags that exist, and
the user guide holds together: README.md stays a short guide (<= 12 KB) that links every
docs/ page, and no relative link in README.md or docs/ points at a missing file.

README.md, the docs/ pages and the research logs are full of exact commands: a renamed
flag would leave them lying. Only the parser is checked; nothing is run.
"""
import argparse
import re
import shlex
from pathlib import Path

import pytest

from leukonet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
DOCS = ["README.md", "benchmarks/results/accuracy_cpu.md", "benchmarks/results/pbc.md",
        "benchmarks/results/transfer.md",
        "data_manifests/blood-cells/README.md",
        "data_manifests/pbc/README.md", "leukonet/weights/simple_cnn_wide.pbc_v1/README.md"] + PAGES
# docs pages whose bash blocks hold no `leukonet` command (python scripts, the test run)
NO_LEUKONET_COMMANDS = {"docs/examples.md", "docs/layout.md"}
README_LIMIT = 12 * 1024


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
    if doc in NO_LEUKONET_COMMANDS:
        assert "\n```bash\n" in (ROOT / doc).read_text(encoding="utf-8"), f"{doc}: no bash example"
    else:
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


def test_readme_is_a_short_guide_that_links_every_docs_page():
    readme = ROOT / "README.md"
    size = readme.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size:,} bytes; move detail into docs/ (limit {README_LIMIT:,})"
    assert "docs/README.md" in PAGES and len(PAGES) >= 5, PAGES
    linked = {target.partition("#")[0] for _, target in links(readme)}
    missing = [page for page in PAGES if page not in linked]
    assert not missing, f"README.md does not link {', '.join(missing)}"


def test_readme_keeps_the_lines_ci_and_the_demo_script_read():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    # .ci/run runs README's first line that starts with "python -m pytest"
    assert next(line for line in lines if re.match(r"^(\$ )?python -m pytest", line)) == "python -m pytest -q"
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && leukonet fit --demo"
            in lines)
    # the demo's output is regenerated between these markers
    assert lines.count("<!-- demo:begin -->") == 1 and lines.count("<!-- demo:end -->") == 1
    assert lines.index("<!-- demo:begin -->") < lines.index("<!-- demo:end -->")


def _slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def links(path):
    """(line number, target) of each relative Markdown link outside code blocks, the target
    resolved to a repository path (with its #anchor, if any)."""
    out, in_code = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http(s)://, mailto:
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path.resolve()  # "#x": this page
            try:
                rel = resolved.relative_to(ROOT).as_posix()
            except ValueError:
                rel = str(resolved)
            out.append((n, rel + (f"#{anchor}" if anchor else "")))
    return out


@pytest.mark.parametrize("doc", ["README.md"] + PAGES)
def test_relative_links_point_at_existing_files(doc):
    problems = []
    for n, target in links(ROOT / doc):
        file, _, anchor = target.partition("#")
        path = ROOT / file
        if not path.exists():
            problems.append(f"{doc}:{n}: {target}: no such file")
        elif anchor and path.suffix == ".md":
            text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
            headings = [_slug(h) for h in re.findall(r"^#+\s+(.*)$", text, re.M)]
            if anchor not in headings:
                problems.append(f"{doc}:{n}: {target}: no heading with that anchor")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", ["README.md"] + PAGES)
def test_table_cells_stay_short(doc):
    # a table is a summary: detail goes into prose below it (the old README had a 3,218-character cell)
    long = [f"{doc}:{n}: {len(cell)} characters: {cell[:60]}..."
            for n, line in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), 1)
            if line.startswith("|") for cell in line.strip().strip("|").split(" | ") if len(cell) > 200]
    assert not long, "\n".join(long)


def test_the_link_checker_sees_a_broken_link(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "a.md").write_text("# A\n## Two words\n")
    page = tmp_path / "docs" / "p.md"
    page.write_text("[ok](../a.md#two-words) [bad](../b.md) [web](https://x.org) [here](#top)\n"
                    "`[code](../c.md)`\n```\n[in a block](../d.md)\n```\n")
    assert links(page) == [(1, "a.md#two-words"), (1, "b.md"), (1, "docs/p.md#top")]
