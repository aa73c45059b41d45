"""Every command the README and docs/ show is one the kit has: make targets and variables, transfer-kit
subcommands and their flags, the files they name.

Commands are read from code blocks and `inline code`: `make TARGET... VAR=value` (options in [brackets]
too) must name targets of the Makefile and variables it reads (or the build scripts' environment); every
`transfer-kit SUBCOMMAND --flag` must name a subcommand and flags its parser takes. Each `](path)` link to a
file of the kit must point at one that exists.
"""
from __future__ import annotations

import re

import pytest

from runner.cli import build_parser

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAKEFILE = (ROOT / "Makefile").read_text()
TARGETS = set(re.findall(r"^([a-z][a-z0-9-]*):", MAKEFILE, re.M))
# variables a make command may set: the Makefile's own, and the environment its scripts read
SCRIPTS = "".join(p.read_text() for p in [*(ROOT / "caffe_build").glob("*.sh"), ROOT / "bench" / "gpu_check.sh"])
CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.S)
STOP = {"#", "&&", ";", "||", "|", ">", "2>&1"}


def _snippets(text: str) -> list[str]:
    """Every line of a code block and every inline code span."""
    out = []
    for block, inline in CODE.findall(text):
        out += block.splitlines() if block else [inline]
    return out


def _words_after(line: str, start: int) -> list[str]:
    words = []
    for word in line[start:].replace("[", " ").replace("]", " ").split():
        if word in STOP or word.startswith("#"):
            break
        words.append(word)
    return words


def _commands(start: str) -> list[tuple[str, str, list[str]]]:
    """(page, the command, its words after the `start` pattern) of every command shown that matches it."""
    found = []
    for page in PAGES:
        for line in _snippets(page.read_text()):
            for m in re.finditer(start, line):
                found.append((page.name, line.strip(), _words_after(line, m.end())))
    return found


def make_commands() -> list[tuple[str, str, list[str]]]:
    """Every make command shown, its words after `make`."""
    return _commands(r"(?:^|[\s(;&])make (?=[a-zA-Z])")


def kit_commands() -> list[tuple[str, str, list[str]]]:
    """Every transfer-kit command shown, its words after `transfer-kit`."""
    return _commands(r"transfer-kit (?=[a-z])")


def test_the_pages_show_commands():
    assert len(make_commands()) > 60 and len(kit_commands()) > 5


@pytest.mark.parametrize("page,command,words", make_commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_a_make_command_names_targets_and_variables_the_makefile_has(page, command, words):
    for word in words:
        if "=" in word:
            var = word.split("=", 1)[0]
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", var), f"{page}: {command!r}: {word!r}"
            assert re.search(rf"\b{var}\b", MAKEFILE + SCRIPTS), f"{page}: {command!r}: no variable {var}"
        elif re.fullmatch(r"[a-z][a-z0-9-]*", word):
            assert word in TARGETS, f"{page}: {command!r}: no make target {word!r}"
        else:
            break  # prose or a placeholder after the command


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001 (argparse keeps them there)
    return action.choices


@pytest.mark.parametrize("page,command,words", kit_commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_a_transfer_kit_command_names_a_subcommand_and_its_flags(page, command, words):
    subs = _subparsers()
    if not words or words[0] in ("<command>", "SUBCOMMAND"):
        return
    assert words[0] in subs, f"{page}: {command!r}: no subcommand {words[0]!r}"
    flags = {s for a in subs[words[0]]._actions for s in a.option_strings}  # noqa: SLF001
    for word in words[1:]:
        if word.startswith("--"):
            assert word.split("=", 1)[0] in flags, f"{page}: {command!r}: {words[0]} has no flag {word}"


def test_links_to_the_kits_files_exist():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which is not there"
