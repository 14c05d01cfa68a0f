"""Every command example in README.md and docs/*.md works as written.

The convention (docs/development.md, "Writing documentation examples"): shell commands sit in
```console blocks, one command a line after `$ ` (a line ending in `\\` continues on the next);
other lines are sample output and are not compared. A block that cannot run here is preceded by
`<!-- doc-test: skip (REASON) -->`. A command expected to fail ends with a comment `# exit N`.
Each block runs in a fresh working directory (holding `train.py`, the script that made the runs)
against its own copy of a store holding two finished Keras runs of project `cifar10`:
`...-3f9a...` (lr=0.1) and `...-77c2...` (lr=0.01); its commands run in order, each in its own
`bash -c`.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, child_env

SCRIPT = os.path.join(ROOT, "tests", "docs_scripts", "train.py")
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
TAILS = {"3f9a1c0b5e": "0.1", "77c2d4e6a8": "0.01"}
COMMAND_TIMEOUT = 240

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
_SKIP = re.compile(r"^<!--\s*doc-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->\s*$")
_MARKER = re.compile(r"^<!--\s*doc-test\b")
_EXIT = re.compile(r"#\s*exit\s+(\d+)\b")
_SHELL_LANGUAGES = {"sh", "bash", "shell", "zsh", "shell-session", "shellsession"}
_COMMAND_WORDS = re.compile(r"^\s*(\$ |mlrepro |make |python3? |\.venv[^ ]*/bin/)")


@dataclasses.dataclass
class Command:
    line: int        # 1-based line of the `$ ` in the page
    text: str        # the command, continuation lines joined
    expect: int      # the exit status the docs promise


@dataclasses.dataclass
class Block:
    line: int
    commands: list
    skip: str | None


def parse(text: str, page: str) -> tuple[list, list]:
    """The page's console blocks, and its convention errors as 'page:line: what'."""
    blocks, errors = [], []
    lines = text.split("\n")
    i = 0
    skip, skip_line = None, 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if not fence:
            marker = _SKIP.match(line.strip())
            if marker:
                if not marker.group("reason").strip():
                    errors.append(f"{page}:{i + 1}: a doc-test skip needs a reason: "
                                  "<!-- doc-test: skip (needs AWS) -->")
                skip, skip_line = marker.group("reason").strip() or None, i + 1
            elif _MARKER.match(line.strip()):
                errors.append(f"{page}:{i + 1}: unknown doc-test marker {line.strip()!r}; "
                              "write <!-- doc-test: skip (REASON) -->")
            elif line.strip() and skip_line:
                errors.append(f"{page}:{skip_line}: a doc-test skip must be the line right "
                              "before a ```console block")
                skip, skip_line = None, 0
            i += 1
            continue
        ticks, language = fence.group(1), fence.group(2).lower()
        indent = len(line) - len(line.lstrip())    # a block inside a list item is indented
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith(ticks):
            text = lines[i]
            body.append(text[indent:] if text[:indent].strip() == "" else text)
            i += 1
        i += 1
        if skip_line and language != "console":
            errors.append(f"{page}:{skip_line}: a doc-test skip must be the line right "
                          "before a ```console block")
        if language == "console":
            commands = _commands(body, start + 2, page, errors)
            blocks.append(Block(start + 1, commands, skip if skip_line else None))
        elif language in _SHELL_LANGUAGES or (
                language == "" and any(_COMMAND_WORDS.match(b) for b in body)):
            errors.append(f"{page}:{start + 1}: shell commands go in a ```console block, "
                          f"one command a line after '$ ' (this block is ```{language})")
        skip, skip_line = None, 0
    return blocks, errors


def _commands(body: list, first: int, page: str, errors: list) -> list:
    commands = []
    n = 0
    while n < len(body):
        line = body[n]
        if line.startswith("$ "):
            at, text = first + n, line[2:]
            while text.endswith("\\") and n + 1 < len(body):
                n += 1
                text = text[:-1] + " " + body[n].strip()
            found = _EXIT.search(text)
            commands.append(Command(at, text.strip(), int(found.group(1)) if found else 0))
        elif not commands and line.strip():
            errors.append(f"{page}:{first + n}: a ```console block starts with a '$ ' command "
                          f"line, not output ({line.strip()[:40]!r})")
        n += 1
    if not commands:
        errors.append(f"{page}:{first - 1}: a ```console block without a '$ ' command")
    return commands


@pytest.fixture(scope="module")
def fixture_store(tmp_path_factory):
    """Two real finished Keras runs of project cifar10 with the ids the examples name."""
    base = tmp_path_factory.mktemp("docs-store")
    work = base / "project"
    work.mkdir()
    shutil.copy(SCRIPT, work / "train.py")
    env = child_env(MLREPRO_STORE=base / "store", MLREPRO_SPOOL=base / "spool",
                    MLREPRO_CACHE=base / "cache", TF_CPP_MIN_LOG_LEVEL="2")
    for tail, lr in TAILS.items():
        proc = subprocess.run([sys.executable, "train.py", "--lr", lr], cwd=work,
                              env={**env, "DOCS_RUN_TAIL": tail}, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT)
        assert proc.returncode == 0 and f"-{tail}" in proc.stdout, proc.stderr[-3000:]
    return str(base / "store")


def run_page(page: str, text: str, store: str, scratch: str) -> tuple[list, int]:
    """Run the page's examples; the failures as 'page:line: ...', and how many ran."""
    blocks, failures = parse(text, page)
    env = child_env(COLUMNS="100", TF_CPP_MIN_LOG_LEVEL="2")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    ran = 0
    for number, block in enumerate(b for b in blocks if b.skip is None):
        workdir = os.path.join(scratch, f"block-{number}")
        os.makedirs(workdir)
        shutil.copy(SCRIPT, os.path.join(workdir, "train.py"))
        copy = os.path.join(scratch, f"store-{number}")
        shutil.copytree(store, copy)
        block_env = {**env, "MLREPRO_STORE": copy,
                     "MLREPRO_SPOOL": os.path.join(scratch, f"spool-{number}")}
        for command in block.commands:
            ran += 1
            try:
                proc = subprocess.run(["bash", "-c", command.text], cwd=workdir, env=block_env,
                                      capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                failures.append(f"{page}:{command.line}: `{command.text}` ran past "
                                f"{COMMAND_TIMEOUT} s")
                continue
            if proc.returncode != command.expect:
                said = (proc.stderr.strip() or proc.stdout.strip())[-600:]
                failures.append(f"{page}:{command.line}: `{command.text}` exited "
                                f"{proc.returncode}, the docs expect {command.expect}: {said}")
    return failures, ran


@pytest.mark.parametrize("page", PAGES)
def test_the_page_follows_the_example_convention(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as fh:
        _blocks, errors = parse(fh.read(), page)
    assert errors == []


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_command_example_on_the_page_works(page, fixture_store, tmp_path):
    with open(os.path.join(ROOT, page), encoding="utf-8") as fh:
        failures, _ran = run_page(page, fh.read(), fixture_store, str(tmp_path))
    assert failures == [], "\n".join(failures)


def test_the_checker_flags_examples_that_escape_the_convention():
    text = "\n".join([
        "```sh",                                   # 1: shell outside ```console
        "mlrepro runs",
        "```",
        "<!-- doc-test: skip () -->",              # 4: a skip without a reason
        "```console",
        "$ mlrepro push",
        "```",
        "```console",                              # 8: output before any command
        "ID  STATUS",
        "$ mlrepro runs",
        "```",
        "<!-- doc-test: skip (needs AWS) -->",     # 12: a skip that skips nothing
        "",
        "text",
        "<!-- doc-test: skipped -->",              # 15: a misspelt marker
    ])
    _blocks, errors = parse(text, "x.md")
    assert [e.split(":")[1] for e in errors] == ["1", "4", "9", "12", "15"], errors


def test_the_checker_reads_commands_continuations_skips_and_exit_codes():
    text = "\n".join([
        "<!-- doc-test: skip (needs AWS credentials) -->",
        "```console",
        "$ mlrepro push   # every local run",
        "```",
        "",
        "```console",
        "$ mlrepro launch train.py \\",
        "      --hp lr=0.1 --dry-run",
        "wrote spec",
        "$ mlrepro trace nothing.h5   # exit 1: no run made it",
        "```",
        "```python",
        "mlrepro.start_run()",
        "```",
        "- in a list:",
        "",
        "  ```console",
        "  $ mlrepro runs",
        "  ```",
    ])
    blocks, errors = parse(text, "x.md")
    assert errors == []
    assert [b.skip for b in blocks] == ["needs AWS credentials", None, None]
    assert [(c.line, c.text) for c in blocks[2].commands] == [(18, "mlrepro runs")]
    assert [(c.line, c.text, c.expect) for c in blocks[1].commands] == [
        (7, "mlrepro launch train.py  --hp lr=0.1 --dry-run", 0),
        (10, "mlrepro trace nothing.h5   # exit 1: no run made it", 1)]


@pytest.mark.tf
@pytest.mark.slow
def test_a_failing_example_is_reported_with_its_page_and_line(fixture_store, tmp_path):
    text = "\n".join([
        "Runs:",
        "```console",
        "$ mlrepro show 3f9a",                     # 3: works
        "$ mlrepro show 0000                # exit 2",   # 4: works: no such run, exit 2
        "$ mlrepro show 77c2 > shown.txt",        # 5: works
        "$ grep -q 0.01 shown.txt",                # 6: the same working dir, in order
        "$ mlrepro show ffff",                     # 7: fails: no such run
        "$ mlrepro report 3f9a 77c2 -o r.html   # exit 1",   # 8: fails: it succeeds
        "```",
    ])
    failures, ran = run_page("x.md", text, fixture_store, str(tmp_path))
    assert ran == 6
    assert [f.split(":")[1] for f in failures] == ["7", "8"], failures
    assert "exited 2, the docs expect 0" in failures[0]
    assert "exited 0, the docs expect 1" in failures[1]


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(text: str) -> set:
    """The anchors GitHub gives a page's headings (lower case, punctuation out, spaces to -)."""
    found, fence = set(), None
    for line in text.split("\n"):
        mark = _FENCE.match(line)
        if mark and (fence is None or mark.group(1).startswith(fence)):
            fence = None if fence else mark.group(1)
            continue
        heading = re.match(r"#{1,6} (.*)", line)
        if heading and fence is None:
            found.add(re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-"))
    return found


def broken_links(text: str, page: str) -> list:
    """The page's links to files or headings (of this repository) that are not there."""
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue                                # http(s):, mailto:
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in anchors(text):
                broken.append(f"{target}: no heading with that anchor")
            continue
        file = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path))
        if not os.path.exists(file):
            broken.append(f"{target}: no file {os.path.relpath(file, ROOT)}")
        elif anchor and file.endswith(".md"):
            with open(file, encoding="utf-8") as fh:
                if anchor not in anchors(fh.read()):
                    broken.append(f"{target}: no heading with that anchor")
    return broken


@pytest.mark.parametrize("page", PAGES)
def test_every_link_on_the_page_resolves(page):
    """After the README split, a link to a file or a section must still land somewhere."""
    with open(os.path.join(ROOT, page), encoding="utf-8") as fh:
        assert broken_links(fh.read(), page) == []


def test_the_link_check_finds_a_moved_section():
    text = ("# Keras\n\n## Which process continues a run\n\n[ok](#which-process-continues-a-run) "
            "[ok](keras.md#restarts-and-exact-resume) [ok](../README.md) [ok](https://x.org/#y)\n"
            "[gone](#restarts-and-exact-resume) [gone](keras.md#no-such-section) [gone](nope.md)\n")
    assert broken_links(text, "docs/keras.md") == [
        "#restarts-and-exact-resume: no heading with that anchor",
        "keras.md#no-such-section: no heading with that anchor",
        "nope.md: no file docs/nope.md"]
