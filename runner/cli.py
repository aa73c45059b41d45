"""transfer-kit: re-run "How transferable are features in deep neural networks?" in real Caffe.

Subcommands mirror the Makefile's targets: dataset, split-random, train,
plots, demo. Errors are one line (`error: problem; fix: ...`) and exit 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from runner.errors import KitError



def _common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--work", type=Path, default=Path("work"), help="work folder for data and runs")
    p.add_argument("--dataset", default="fa20", help="dataset (fa20: the embedded FA-20)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random split seed (the authors used 0..3)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="transfer-kit", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("dataset", help="build the embedded dataset and its contact sheet", formatter_class=fmt)
    _common(p, seed=False)
    p = sub.add_parser("split-random", help="random A/B class split with LMDBs and means", formatter_class=fmt)
    _common(p)
    p.add_argument("--force", action="store_true", help="rebuild the split's LMDBs and means")
    p = sub.add_parser("train", help="train one treatment (baseA, A3B, B5B+, ...)", formatter_class=fmt)
    _common(p)
    p.add_argument("--treatment", required=True, help="treatment name, e.g. baseA, A3B, A3B+")
    p.add_argument("--iters", type=int, default=None, help="iteration budget (default: the solver's max_iter)")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads for Caffe (default: all cores)")
    p.add_argument("--force", action="store_true", help="redo a finished run (the old one is moved aside)")
    p = sub.add_parser("plots", help="results table and figure from the runs' logs", formatter_class=fmt)
    _common(p)
    p = sub.add_parser("demo", help="split, 2 bases, 28 transfers, figure", formatter_class=fmt)
    _common(p)
    p.add_argument("--iters", type=int, default=None, help="iteration budget per run")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out one parsed command."""
    from data_prep.prepare import dataset_spec
    from data_prep.splits import check_seed
    dataset_spec(args.dataset)
    if hasattr(args, "seed"):
        check_seed(args.seed)
    if getattr(args, "iters", None) is not None and args.iters <= 0:
        raise KitError(f"--iters must be a positive number of iterations, got {args.iters}",
                       "pass e.g. --iters 300 (ITERS=300), or leave it out for the solver's max_iter")
    if getattr(args, "threads", None) is not None and args.threads <= 0:
        raise KitError(f"--threads must be positive, got {args.threads}", "pass e.g. --threads 1")
    if getattr(args, "jobs", None) is not None and args.jobs <= 0:
        raise KitError(f"--jobs must be positive, got {args.jobs}", "pass e.g. --jobs 2")
    if args.command == "dataset":
        from data_prep.fa20 import build_fa20, contact_sheet
        out = build_fa20(args.work / args.dataset / "dataset")
        sheet = contact_sheet(out, out / "contact_sheet.png")
        print(f"FA-20 in {out}; contact sheet {sheet}")
    elif args.command == "split-random":
        from data_prep.prepare import prepare_split
        print(f"split ready: {prepare_split(args.work, args.dataset, args.seed, force=args.force)}")
    elif args.command == "train":
        from generators.treatments import parse
        treatment = parse(args.treatment)
        from runner.train import RunSpec, train
        spec = RunSpec(args.work, args.dataset, args.seed, treatment, iters=args.iters, threads=args.threads)
        result = train(spec, force=args.force)
        print(f"{treatment.name}: score {result['score']:.4f} (mean of the 10 best test accuracies), "
              f"run folder {spec.run_dir}")
    elif args.command == "plots":
        from analysis.results import analyze_split
        outputs = analyze_split(args.work / args.dataset / f"random{args.seed}")
        for key, path in outputs.items():
            print(f"{key}: {path}")
    elif args.command == "demo":
        from runner.demo import demo
        demo(args.work, args.dataset, args.seed, iters=args.iters, jobs=args.jobs)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn a KitError into one line and exit status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return run(args)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
