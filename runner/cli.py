"""transfer-kit: re-run "How transferable are features in deep neural networks?" in real Caffe.

Subcommands (most mirror a Makefile target):
  data      dataset, split-random, split-natural, split-whole, split-reduced, split-small,
            split-mix, split-groups (runner/cli_data.py)
  verify    verify, publish-evidence: check a prepared split's files against its manifest.json; publish a
            build's runs that ended in their records' models (runner/cli_verify.py)
  runs      train, grid, status, demo, plots, publish (runner/cli_runs.py)
  experiment  experiment, experiment-status, store: the whole experiment as one graph, here or on Slurm
            (runner/cli_experiment.py)
  analysis  import-original, figures, table1, findings, filters (analysis/commands.py)
  compare   compare-original: the kit's CaffeNet files against the authors' run folders (runner/cli_compare.py)
`transfer-kit SUBCOMMAND --help` tells each one's options. Errors are one
line (`error: problem; fix: ...`) and exit 2.

Quiet by default: Caffe's output goes to each run's train.log only (pycaffe's in
this process is off: kitcore.caffe_env), and the kit logs its short progress
lines at INFO, each written above any progress bar (tqdm.write). --verbose
(before or after the subcommand; make VERBOSE=1) shows Caffe's output as well
and the kit's DEBUG lines (surgery audit, every LMDB and mean written, ...).
"""
from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from kitcore import diskspace
from kitcore.caffe_env import set_verbose
from kitcore.errors import KitError
from kitcore.profiles import load_user_profiles, profile
from runner import cli_compare, cli_data, cli_experiment, cli_runs, cli_verify
from runner.cli_common import HelpFormatter, KitParser

VERBOSE_HELP = "show Caffe's output (glog) and the kit's debug lines on the terminal"


class _AboveBars(logging.StreamHandler):
    """A stderr handler that writes each record with tqdm.write, above any progress bar, never into one."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's own contract: report, never raise
            self.handleError(record)


def setup_logging(verbose: bool) -> None:
    """The kit's INFO lines (verbose: DEBUG too, and Caffe's output) on stderr, above progress bars."""
    set_verbose(verbose)
    handler = _AboveBars(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand, each area adding its own."""
    from analysis import commands as analysis
    parser = KitParser(prog="transfer-kit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP + " (default: off)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for area in (cli_data, cli_verify, cli_runs, cli_experiment, analysis, cli_compare):
        area.add_parsers(sub, HelpFormatter)
    for p in sub.choices.values():  # SUPPRESS: an absent flag leaves the top-level one as it is
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help=VERBOSE_HELP + " (default: off, Caffe's output only in each run's train.log)")
    for name in analysis.COMMANDS:
        sub.choices[name].set_defaults(handler=analysis.run_command)
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out one parsed command: register the work folder's own datasets, check the dataset and seed,
    then call its area's handler."""
    if getattr(args, "work", None) is not None:
        load_user_profiles(args.work)  # the datasets a user added under this work folder (make dataset)
    adding = args.command == "dataset" and getattr(args, "images", None) is not None  # names a new dataset
    if getattr(args, "dataset", None) is not None and not adding:
        dataset = profile(args.dataset)
        if getattr(args, "seed", None) is not None:
            dataset.check_seed(args.seed)
    return args.handler(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn a KitError into one line and exit status 2."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose)
        return run(args)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:  # a full disk where no step of the kit named the file: the file, else the work folder
        if exc.errno != errno.ENOSPC:
            raise
        where = exc.filename or getattr(args, "work", None) or Path.cwd()
        print(f"error: {diskspace.disk_full(where, exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
