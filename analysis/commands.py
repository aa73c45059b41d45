"""The analysis subcommands of transfer-kit (runner/cli.py adds them): import-original, figures, table1, findings,
filters.

Imports of matplotlib and pycaffe happen inside the commands, so `--help` stays fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kitcore.errors import KitError

COMMANDS = ("import-original", "figures", "table1", "findings", "filters")


def add_parsers(sub, fmt) -> None:
    """import-original, figures, table1, filters: analysis of results tables and models."""
    p = sub.add_parser("import-original", formatter_class=fmt,
                       help="the authors' results/ folder (half0A/, transfer0A0B_1_3/, ...) -> a results table CSV")
    p.add_argument("path", type=Path, help="folder holding the authors' run folders with *.o<jobid>.gz logs")
    p.add_argument("--out", type=Path, required=True, help="results table CSV to write")
    p.add_argument("--jobs", type=int, default=None, help="processes parsing logs (default: all cores)")
    p.add_argument("--curves", type=Path, default=None, help="also write each run's curve CSVs under this folder")
    p.add_argument("--docs", type=Path, default=None,
                   help="also draw the authors' figures the README shows into DOCS/img and rewrite the README's "
                        "block of them (the kit's docs/ folder)")
    p = sub.add_parser("figures", formatter_class=fmt,
                       help="Figures 2 and 3 and Table 1 from a results table CSV alone")
    p.add_argument("results", type=Path, help="results table CSV (make plots, or import-original)")
    p.add_argument("--out", type=Path, required=True, help="folder for the figures and tables")
    p.add_argument("--original", type=Path, default=None, help="an authors' results table drawn as hollow markers")
    p.add_argument("--curves", type=Path, default=None,
                   help="folder of per-run curve folders (import-original --curves) for the training curves")
    p = sub.add_parser("table1", formatter_class=fmt, help="print the paper's Table 1 from a results table CSV")
    p.add_argument("results", type=Path, help="results table CSV (make plots, or import-original)")
    p.add_argument("--csv", action="store_true", help="print CSV instead of Markdown")
    p = sub.add_parser("findings", formatter_class=fmt,
                       help="the paper's five findings measured per seed, with mean and spread, from a results table")
    p.add_argument("results", type=Path, help="results table CSV (make plots, or import-original)")
    p = sub.add_parser("filters", formatter_class=fmt, help="conv1 filters of a .caffemodel as an image grid PNG")
    p.add_argument("model", type=Path, help="a .caffemodel (FA-20 1-channel or CaffeNet 3-channel conv1)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--scale", type=int, default=None, help="pixels per filter weight (default: about 48 per filter)")


def print_outputs(outputs: dict) -> None:
    """Print a {name: path} dict of outputs, and the absent pieces, one a line."""
    for key, value in outputs.items():
        if key == "absent":
            for note in value:
                print(f"absent: {note}")
        else:
            print(f"{key}: {value}")


def run_command(args: argparse.Namespace) -> int:
    """Carry out one of COMMANDS."""
    if getattr(args, "jobs", None) is not None and args.jobs <= 0:
        raise KitError(f"--jobs must be positive, got {args.jobs}", "pass e.g. --jobs 2")
    if args.command == "import-original":
        from analysis.original import import_to_csv
        table = import_to_csv(args.path, args.out, jobs=args.jobs, curves_dir=args.curves)
        print(f"results table: {table}")
        if args.docs is not None:
            from analysis.report import write_authors_docs
            from analysis.results import read_results_csv
            print_outputs(write_authors_docs(read_results_csv(table), args.docs))
    elif args.command == "figures":
        from analysis.figures import write_figures
        from analysis.results import read_results_csv
        original = read_results_csv(args.original) if args.original else None
        if args.curves is not None and not args.curves.is_dir():
            raise KitError(f"--curves {args.curves} is not a folder", "pass the folder import-original --curves wrote")
        curves = sorted((d.name, d) for d in args.curves.iterdir() if d.is_dir()) if args.curves else None
        print_outputs(write_figures(read_results_csv(args.results), args.out, original=original, curves=curves))
    elif args.command == "table1":
        from analysis.results import read_results_csv
        from analysis.table1 import table1, to_csv, to_markdown
        table = table1(read_results_csv(args.results))
        print(to_csv(table) if args.csv else to_markdown(table, f"Table 1 of {args.results}"), end="")
    elif args.command == "findings":
        from analysis.findings import to_markdown
        from analysis.results import read_results_csv
        print(to_markdown(read_results_csv(args.results), f"The paper's findings in {args.results}"), end="")
    elif args.command == "filters":
        if args.scale is not None and args.scale <= 0:
            raise KitError(f"--scale must be positive, got {args.scale}", "pass e.g. --scale 4")
        from analysis.filters import write_filters
        print(f"filters: {write_filters(args.model, args.out, args.scale)}")
    return 0
