"""transfer-kit: re-run "How transferable are features in deep neural networks?" in real Caffe.

Subcommands (most mirror a Makefile target):
  data      dataset, split-random, split-natural, split-whole, split-reduced, split-small,
            split-groups (runner/cli_data.py)
  verify    verify, publish-evidence: check a prepared split's files against its manifest.json; publish a
            build's runs that ended in their records' models (runner/cli_verify.py)
  runs      train, grid, status, demo, plots, publish (runner/cli_runs.py)
  analysis  import-original, figures, table1, findings, filters (analysis/commands.py)
  compare   compare-original: the kit's CaffeNet files against the authors' run folders (runner/cli_compare.py)
`transfer-kit SUBCOMMAND --help` tells each one's options. Errors are one
line (`error: problem; fix: ...`) and exit 2.
"""
from __future__ import annotations

import argparse
import errno
import logging
import sys

from kitcore.errors import KitError
from kitcore.profiles import load_user_profiles, profile
from runner import cli_compare, cli_data, cli_runs, cli_verify
from runner.cli_common import HelpFormatter, KitParser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand, each area adding its own."""
    from analysis import commands as analysis
    parser = KitParser(prog="transfer-kit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail (default: off)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for area in (cli_data, cli_verify, cli_runs, analysis, cli_compare):
        area.add_parsers(sub, HelpFormatter)
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
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        return run(args)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"error: disk full while writing {exc.filename or ''} ({exc.strerror}); "
              "fix: free space there (or use another --work), then rerun the same command", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
