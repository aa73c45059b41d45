"""The run subcommands of transfer-kit: train, grid, status, demo, plots, publish.

train runs one treatment (runner.train), grid every treatment of a protocol
(runner.grid locally, runner.slurm with --engine slurm), status tells the
state of a grid's runs, demo runs the whole embedded experiment (runner.demo),
plots draws a random split's results (analysis.results) or, with --records,
everything the published run records give (analysis.report); publish turns a
work folder's finished grids into those records (runner.publish).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kitcore.errors import KitError
from kitcore.layout import check_mix, split_dir, split_name
from kitcore.profiles import profile
from runner.cli_common import (
    add_common,
    add_mode_options,
    dataset_flags,
    dataset_names,
    per_class_count,
    positive_int,
    replicate_number,
    subcommand,
)

log = logging.getLogger(__name__)


def mix_classes(text: str) -> int:
    """argparse type of --mix: m, a whole number >= 0 (kitcore.layout.check_mix; a share is make split-mix's)."""
    try:
        return check_mix(text)
    except KitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_options(p: argparse.ArgumentParser) -> None:
    """Options of a run beyond its treatment: the reduced and small protocols' k, and the toy-size settings."""
    p.add_argument("--per-class", type=per_class_count, default=None,
                   help="protocols reduced and small: k, the train images per class of split reduced{k} (make "
                        "split-reduced) or of half B of small{seed}k{k} (make split-small) (default: none; "
                        "those protocols need it)")
    p.add_argument("--mix", type=mix_classes, default=None,
                   help="protocol mix: m, the classes swapped between natman's halves in split mix{seed}m{m} (make "
                        "split-mix) (default: none; the mix protocol needs it)")
    p.add_argument("--batch", type=positive_int, default=None,
                   help="train and val batch instead of the net template's, for toy runs of the paper's CaffeNet "
                        "(default: the template's)")
    p.add_argument("--test-iter", type=positive_int, default=None,
                   help="test batches per test instead of the solver's (default: the solver's; FA-20: whole val set)")


def _spec_options(args: argparse.Namespace) -> dict:
    """RunSpec keyword arguments from _run_options (argparse has checked each is positive)."""
    return {"per_class": args.per_class, "batch": args.batch, "test_iter": args.test_iter, "mix": args.mix}


def _grid_options(p: argparse.ArgumentParser) -> None:
    """Which grid: a protocol's treatments, or a subset of them, and how many replicates of each."""
    p.add_argument("--protocol", default="random", help="protocol whose treatments form the grid (random, natman, ...)")
    p.add_argument("--treatments", default=None,
                   help="comma-separated subset of the protocol's treatments (default: all of them)")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="replicates of each treatment: r = 0..R-1 (runs/<treatment>.r<r> for r >= 1, another solver "
                        "seed each; a transfer's replicate starts from the r = 0 base)")


def add_parsers(sub, fmt) -> None:
    """train, grid, status, demo, plots, publish."""
    p = subcommand(sub, "train", fmt, "train one treatment (baseA, A3B, B5B+, ...)")
    add_common(p)
    p.add_argument("--treatment", required=True, help="treatment name, e.g. baseA, A3B, A3B+ (required)")
    p.add_argument("--iters", type=positive_int, default=None, help="iteration budget (default: the solver's max_iter)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="Caffe's compute threads (oneDNN's, or BLAS's without it) (default: all cores)")
    p.add_argument("--force", action="store_true", help="redo a finished run (the old one is moved aside)")
    add_mode_options(p)
    p.add_argument("--protocol", default="random", help="protocol the treatment belongs to (random, natman, ...)")
    p.add_argument("--repeat", type=replicate_number, default=0,
                   help="replicate number r: r >= 1 trains runs/<treatment>.r<r> with solver seed + 1000 * r (same "
                        "data, iterations and base model as r = 0)")
    _run_options(p)
    p.set_defaults(handler=_train)
    p = subcommand(sub, "grid", fmt, "every treatment of a protocol, bases first; local (--jobs) or Slurm")
    add_common(p)
    _grid_options(p)
    p.add_argument("--iters", type=positive_int, default=None,
                   help="iteration budget per run (default: the solver's max_iter)")
    p.add_argument("--jobs", type=positive_int, default=1, help="local runs at a time (compute threads: cores // jobs)")
    p.add_argument("--engine", choices=("local", "slurm"), default="local", help="run here, or submit with sbatch")
    p.add_argument("--slurm-config", type=Path, default=None,
                   help="TOML file overriding runner/slurm.toml (partition, time, cpus, gpus, ...) "
                        "(default: none, runner/slurm.toml as it is)")
    add_mode_options(p)
    _run_options(p)
    p.set_defaults(handler=_grid)
    p = subcommand(sub, "status", fmt, "state of every run of a grid (and its Slurm jobs)")
    add_common(p)
    _grid_options(p)
    p.add_argument("--iters", type=positive_int, default=None,
                   help="the grid's iteration budget per run: a finished run of another is 'other settings' "
                        "(default: the solver's max_iter)")
    _run_options(p)
    p.set_defaults(handler=_status)
    p = subcommand(sub, "demo", fmt,
                   "the embedded experiment: the random split's grid (--grids all: also natural/man-made and random "
                   "frozen weights), then the figures")
    add_common(p)
    p.add_argument("--seeds", default=None,
                   help="comma-separated random-split seeds, e.g. 0,1,2,3 (default: --seed); "
                        "natman and the random-weights grid run once")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="iteration budget per run (default: the solver's max_iter)")
    p.add_argument("--jobs", type=positive_int, default=2, help="runs at a time")
    p.add_argument("--grids", default=None,
                   help="grids to run: random (each seed's random split), natman, whole, comma-separated, or all "
                        "(default: random; Figure 3 needs all)")
    p.set_defaults(handler=_demo)
    p = subcommand(sub, "plots", fmt, "results table, Figures 2 and 3, Table 1, curves from the runs' logs")
    add_common(p)
    p.add_argument("--original", type=Path, default=None,
                   help="an imported authors' results table (import-original), drawn as hollow markers "
                        "(default: none)")
    p.add_argument("--records", type=Path, default=None,
                   help="draw from these published run records alone (results/fa20: no Caffe, no work folder's runs) "
                        "(default: none, the work folder's runs)")
    p.add_argument("--out", type=Path, default=None,
                   help="with --records: the folder to write into (default: WORK/DATASET/records)")
    p.add_argument("--docs", type=Path, default=None,
                   help="with --records: also write the figures' PNG and CSV into DOCS/img, DOCS/results.md and the "
                        "README's results block (default: none)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="pool runs of different protocol settings (with --records: also of different Caffe builds)")
    p.set_defaults(handler=_plots)
    p = subcommand(sub, "publish", fmt,
                   "publish a work folder's finished grids (a split's every run) as run records under results/")
    add_common(p, seed=False)
    p.add_argument("--records", type=Path, default=None, help="records folder (default: results/DATASET of the kit)")
    p.add_argument("--splits", default=None,
                   help="comma-separated split folders to publish, e.g. random0,natman (default: every split whose "
                        "grid is finished; with --repeats, every split with replicate runs)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="publish beside records of another Caffe build or protocol")
    p.add_argument("--repeats", action="store_true",
                   help="publish the splits' runs beyond their grids (replicates r >= 1, make grid REPEATS=R; "
                        "baseB2x) into RECORDS/extra/<split>/ instead of their grids")
    p.set_defaults(handler=_publish)


def _only(args: argparse.Namespace) -> list[str] | None:
    """The --treatments subset, or None for all of the protocol's."""
    return [n for n in args.treatments.split(",") if n] if args.treatments else None


def _train(args: argparse.Namespace) -> int:
    """Train one treatment and print its score."""
    from kitcore.treatments import parse
    treatment = parse(args.treatment, args.protocol)
    from runner.supervise import install_handlers
    from runner.train import RunSpec, train
    install_handlers()
    spec = RunSpec(args.work, args.dataset, args.seed, treatment, iters=args.iters, threads=args.threads,
                   gpu=args.gpu, repeat=args.repeat, **_spec_options(args))
    result = train(spec, force=args.force)
    if result.get("status") == "skipped":
        log.info("%s is finished; keeping it (FORCE=1 / --force redoes it)", spec.run_dir)
    print(f"{spec.run_dir.name}: score {result['score']:.4f} (mean of the 10 best test accuracies), "
          f"run folder {spec.run_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    """Print the state of every run of a grid."""
    if not args.work.is_dir():
        raise KitError(f"work folder {args.work} does not exist",
                       "pass the --work folder the grid ran in (make status WORK=DIR)")
    from runner import status
    print(status.format_status(status.status_rows(args.work, args.dataset, args.seed, args.protocol, _only(args),
                                                  repeats=args.repeats, iters=args.iters,
                                                  **_spec_options(args))))
    return 0


def _grid(args: argparse.Namespace) -> int:
    """Run a grid here, or submit it to Slurm."""
    from runner import grid
    only = _only(args)
    grid.treatments(args.protocol, only)  # an unknown protocol or treatment fails before any work
    if profile(args.dataset).embedded:  # the kit makes the split itself (a no-op when done)
        from data_prep.prepare import prepare_for
        prepare_for(args.work, args.dataset, args.protocol, args.seed, per_class=args.per_class, mix=args.mix)
    if args.engine == "slurm":
        from runner import slurm
        from runner.train import RunSpec
        config = slurm.load_config(args.slurm_config)
        specs = [RunSpec(args.work, args.dataset, args.seed, t, iters=args.iters, gpu=args.gpu, repeat=r,
                         **_spec_options(args))
                 for t in grid.treatments(args.protocol, only) for r in range(args.repeats)]
        for line in slurm.submit_grid(specs, config):
            print(line)
        return 0
    from runner.supervise import install_handlers
    install_handlers()
    grid.run_grid(args.work, args.dataset, args.seed, only, protocol=args.protocol, iters=args.iters,
                  jobs=args.jobs, gpu=args.gpu, repeats=args.repeats, **_spec_options(args))
    return 0


def _seeds(text: str | None, default: int, dataset: str) -> list[int]:
    """The seeds of --seeds '0,1,2,3' (default: [default]), each checked, no repeats."""
    if text is None:
        return [default]
    try:
        seeds = [profile(dataset).check_seed(int(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise KitError(f"bad --seeds {text!r}", "pass distinct non-negative integers separated by commas, "
                       "e.g. --seeds 0,1,2,3 (SEEDS=0,1,2,3)")
    return seeds


def _demo(args: argparse.Namespace) -> int:
    """The whole experiment on an embedded dataset."""
    if not profile(args.dataset).embedded:
        raise KitError(f"demo runs on an embedded dataset, not {args.dataset}",
                       f"pass {dataset_flags(dataset_names(embedded=True))}, or run its grids with make grid")
    seeds = _seeds(args.seeds, args.seed, args.dataset)
    from runner.demo import check_grids, demo
    grids = check_grids(args.grids)
    from runner.supervise import install_handlers
    install_handlers()
    demo(args.work, args.dataset, seeds, iters=args.iters, jobs=args.jobs, grids=grids)
    return 0


def _plots(args: argparse.Namespace) -> int:
    """Results table and figures of a random split, or of the published records."""
    from analysis.commands import print_outputs
    if args.records is not None:
        from analysis.report import write_report
        out = args.out if args.out is not None else args.work / args.dataset / "records"
        print_outputs(write_report(args.records, out, allow_mixed=args.allow_mixed, docs=args.docs))
        return 0
    if args.out is not None or args.docs is not None:
        raise KitError("--out and --docs go with --records", "add --records results/fa20 (RECORDS=...)")
    from analysis.results import analyze_split
    sdir = split_dir(args.work, args.dataset, split_name("random", args.seed))
    print_outputs(analyze_split(sdir, original=args.original, allow_mixed=args.allow_mixed))
    return 0


def _publish(args: argparse.Namespace) -> int:
    """Publish the finished grids of a work folder as run records."""
    from kitcore.profiles import KIT
    from runner.publish import publish
    records = args.records if args.records is not None else KIT / "results" / args.dataset
    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
    for line in publish(args.work, args.dataset, records, splits=splits, allow_mixed=args.allow_mixed,
                        repeats=args.repeats):
        print(line)
    return 0
