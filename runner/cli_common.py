"""Pieces every area of the `transfer-kit` CLI shares: the parser class, the help formatter, the option types.

`KitParser` turns every argparse error (a bad value, an unknown flag, a missing
argument) into the kit's one-line `error: problem; fix: ...` with exit status 2.
`HelpFormatter` shows each option's default once: help that already says its
default (or what an unset value means) is left alone, an unset None or an off
switch is never printed as "(default: None)" or "(default: False)".
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kitcore.errors import KitError
from kitcore.layout import AUTHORS_PER_CLASS
from kitcore.profiles import PROFILES


class KitParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are KitErrors (one line, exit 2) instead of usage text."""

    def error(self, message: str):
        """Raise the argparse error as a KitError; its fix is the type's own, or the subcommand's --help."""
        problem, _, fix = message.partition("; fix: ")
        see = f"see {self.prog} --help"
        raise KitError(problem, f"{fix} ({see})" if fix else see)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """ArgumentDefaultsHelpFormatter that never repeats a default the help already gives, nor shows None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS):
            return text
        if action.nargs == 0:  # a switch: on when given
            return f"{text} (default: {'on' if action.default else 'off'})"
        return super()._get_help_string(action)


def _positive(text: str, fix: str) -> int:
    """An integer above 0 read from `text`, else argparse's type error with `fix`."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}; fix: {fix}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer above 0 for a count with a default (iterations, threads, jobs, batches)."""
    return _positive(text, "pass a whole number above 0, or leave the flag out for its default")


def per_class_count(text: str) -> int:
    """argparse type: k, the train images per class (--per-class), an integer above 0; it has no default
    (the protocols that read it need it), so the fix never offers to leave it out."""
    return _positive(text, "pass k, the train images per class, a whole number above 0, e.g. --per-class 10 "
                           f"(PERCLASS=10; the authors used {' '.join(map(str, AUTHORS_PER_CLASS))})")


def replicate_number(text: str) -> int:
    """argparse type: a replicate number r, an integer >= 0 (0: the run as it always was)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}; "
                                         "fix: pass e.g. --repeat 1 (REPEAT=1), or leave it out for replicate 0")
    return value


def dataset_names(embedded: bool) -> list[str]:
    """The registered datasets that are (or are not) embedded: the kit builds them itself."""
    return sorted(name for name, p in PROFILES.items() if p.embedded == embedded)


def dataset_flags(names: list[str]) -> str:
    """'--dataset imagenet (DATASET=imagenet)' for each of `names`, joined by 'or'."""
    return " or ".join(f"--dataset {n} (DATASET={n})" for n in names)


def subcommand(sub, name: str, fmt, text: str) -> argparse.ArgumentParser:
    """Add subcommand `name` with `text` as both its one-line help and its description."""
    return sub.add_parser(name, help=text, description=text, formatter_class=fmt)


def add_common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """--work, --dataset and (seed=True) --seed."""
    p.add_argument("--work", type=Path, default=Path("work"), help="work folder for data and runs")
    p.add_argument("--dataset", default="fa20",
                   help="dataset (fa20: the embedded FA-20; imagenet: ILSVRC2012 from --lists, --images)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random split seed (the authors used 0..3)")


def add_mode_options(p: argparse.ArgumentParser) -> None:
    """--gpu / --cpu: Caffe's mode (GPU mode passes -gpu 0: the device Slurm or CUDA_VISIBLE_DEVICES gives)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--gpu", dest="gpu", action="store_true", help="train in Caffe's GPU mode (device 0)")
    mode.add_argument("--cpu", dest="gpu", action="store_false", help="train in Caffe's CPU mode (the default)")
