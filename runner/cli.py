"""transfer-kit: re-run "How transferable are features in deep neural networks?" in real Caffe.

Subcommands mirror the Makefile's targets: dataset, split-random (FA-20 or
ImageNet), split-natural and split-reduced (ImageNet), train, plots, demo;
compare-original checks the kit's CaffeNet files against the authors' run
folders. Errors are one line (`error: problem; fix: ...`) and exit 2.
"""
from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from kitcore.errors import KitError



def _common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--work", type=Path, default=Path("work"), help="work folder for data and runs")
    p.add_argument("--dataset", default="fa20",
                   help="dataset (fa20: the embedded FA-20; imagenet: ILSVRC2012 from --lists, --images)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random split seed (the authors used 0..3)")


def _imagenet_options(p: argparse.ArgumentParser, imagenet_only: bool = False) -> None:
    """Options of the ImageNet split commands (split-natural, -whole, -reduced default to ImageNet)."""
    if imagenet_only:
        p.set_defaults(dataset="imagenet")
        p.add_argument("--force", action="store_true", help="rewrite changed lists; rebuild the split's LMDBs and means")
    p.add_argument("--lists", type=Path, default=None,
                   help="imagenet: folder with Caffe's synsets.txt, train.txt, val.txt (FILE LABEL per line)")
    p.add_argument("--images", type=Path, default=None,
                   help="imagenet: ILSVRC2012 folder (train/<wnid>/*.JPEG, val/*.JPEG); builds LMDBs and means")
    p.add_argument("--jobs", type=int, default=1, help="imagenet: processes decoding images (first build only)")
    p.add_argument("--encoded", action="store_true",
                   help="imagenet: store JPEG Datums as convert_imageset --encoded (about 8x less disk; "
                        "needs Caffe built with OpenCV: make caffe CAFFE_OPENCV=1)")


def _imagenet_only_opts(args: argparse.Namespace) -> str:
    """'--lists/--images are' or '--encoded is': the ImageNet-only options given."""
    return "--lists/--images are" if args.lists or args.images else "--encoded is"


def _imagenet_split(args: argparse.Namespace) -> int:
    """split-random/-natural/-reduced of ImageNet: the lists, and with --images the LMDBs and means."""
    if args.dataset != "imagenet":
        if args.command == "split-random":
            raise KitError(f"{_imagenet_only_opts(args)} for --dataset imagenet, not {args.dataset}",
                           "pass --dataset imagenet (DATASET=imagenet), or leave them out")
        raise KitError(f"{args.command} is for ImageNet only, got --dataset {args.dataset}",
                       "pass --dataset imagenet (DATASET=imagenet)")
    if args.lists is None:
        raise KitError(f"{args.command} of imagenet needs the list folder",
                       "pass --lists DIR (LISTS=DIR) holding Caffe's synsets.txt, train.txt, val.txt")
    if args.jobs <= 0:
        raise KitError(f"--jobs must be positive, got {args.jobs}", "pass e.g. --jobs 2")
    from data_prep.imagenet import prepare_imagenet
    kind = {"split-random": "random", "split-natural": "natural", "split-reduced": "reduced",
            "split-whole": "whole"}[args.command]
    sdir = prepare_imagenet(args.work, args.lists, kind, seed=getattr(args, "seed", None),
                            per_class=getattr(args, "per_class", None), images=args.images, jobs=args.jobs,
                            force=args.force, encoded=args.encoded)
    print(f"split ready: {sdir}" + ("" if args.images else " (lists only; --images DIR builds LMDBs and means)"))
    return 0


def _seeds(text: str | None, default: int) -> list[int]:
    """The seeds of --seeds '0,1,2,3' (default: [default]), each checked, no repeats."""
    if text is None:
        return [default]
    from data_prep.splits import check_seed
    try:
        seeds = [check_seed(int(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise KitError(f"bad --seeds {text!r}", "pass distinct non-negative integers separated by commas, "
                       "e.g. --seeds 0,1,2,3 (SEEDS=0,1,2,3)")
    return seeds


def _mode_options(p: argparse.ArgumentParser) -> None:
    """--gpu / --cpu: Caffe's mode (GPU mode passes -gpu 0: the device Slurm or CUDA_VISIBLE_DEVICES gives)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--gpu", dest="gpu", action="store_true", help="train in Caffe's GPU mode (device 0)")
    mode.add_argument("--cpu", dest="gpu", action="store_false", help="train in Caffe's CPU mode")


def _run_options(p: argparse.ArgumentParser) -> None:
    """Options of a run beyond its treatment: the reduced protocol's k, and the toy-size settings."""
    p.add_argument("--per-class", type=int, default=None,
                   help="protocol reduced: k, the train images per class of split reduced{k} (make split-reduced)")
    p.add_argument("--batch", type=int, default=None,
                   help="train and val batch instead of the net template's (toy runs of the paper's CaffeNet)")
    p.add_argument("--test-iter", type=int, default=None,
                   help="test batches per test instead of the solver's (default: the solver's; FA-20: whole val set)")


def _spec_options(args: argparse.Namespace) -> dict:
    """RunSpec keyword arguments from _run_options, each checked to be positive."""
    options = {"per_class": args.per_class, "batch": args.batch, "test_iter": args.test_iter}
    for key, value in options.items():
        if value is not None and value <= 0:
            flag = "--" + key.replace("_", "-")
            raise KitError(f"{flag} must be positive, got {value}", f"pass e.g. {flag} 4, or leave it out")
    return options


def _grid_options(p: argparse.ArgumentParser) -> None:
    """Which grid: a protocol's treatments, or a subset of them."""
    p.add_argument("--protocol", default="random", help="protocol whose treatments form the grid (random, natman, ...)")
    p.add_argument("--treatments", default=None,
                   help="comma-separated subset of the protocol's treatments (default: all of them)")


def _grid(args: argparse.Namespace) -> int:
    """grid and status."""
    from runner import grid
    only = [n for n in args.treatments.split(",") if n] if args.treatments else None
    if args.command == "status":
        print(grid.format_status(grid.status_rows(args.work, args.dataset, args.seed, args.protocol, only,
                                                  **_spec_options(args))))
        return 0
    grid.treatments(args.protocol, only)  # an unknown protocol or treatment fails before any work
    from data_prep.prepare import DATASETS, prepare_for
    if args.dataset in DATASETS:  # the embedded datasets: the grid prepares its split (a no-op when done)
        prepare_for(args.work, args.dataset, args.protocol, args.seed)
    if args.engine == "slurm":
        from runner import slurm
        from runner.train import RunSpec
        config = slurm.load_config(args.slurm_config)
        specs = [RunSpec(args.work, args.dataset, args.seed, t, iters=args.iters, gpu=args.gpu, **_spec_options(args))
                 for t in grid.treatments(args.protocol, only)]
        for line in slurm.submit_grid(specs, config):
            print(line)
        return 0
    from runner.supervise import install_handlers
    install_handlers()
    grid.run_grid(args.work, args.dataset, args.seed, only, protocol=args.protocol, iters=args.iters,
                  jobs=args.jobs, gpu=args.gpu, **_spec_options(args))
    return 0


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
    _imagenet_options(p)
    p = sub.add_parser("split-natural", formatter_class=fmt,
                       help="natural (A) / man-made (B) split (ImageNet: from WordNet, LMDBs and means with --images; "
                            "fa20: animals / Fashion-MNIST)")
    _common(p, seed=False)
    _imagenet_options(p, imagenet_only=True)
    p = sub.add_parser("split-whole", formatter_class=fmt,
                       help="all classes as one half 'all' (the 1000-class base and random frozen weights; "
                            "ImageNet: LMDBs and means with --images)")
    _common(p, seed=False)
    _imagenet_options(p, imagenet_only=True)
    p = sub.add_parser("split-reduced", formatter_class=fmt,
                       help="ImageNet: all classes, the first k train images of each; LMDBs and means with --images")
    _common(p, seed=False)
    p.add_argument("--per-class", type=int, default=None,
                   help="train images per class, k (the authors used 1 2 5 10 25 50 100 250 500 750 1000 1300)")
    _imagenet_options(p, imagenet_only=True)
    p = sub.add_parser("train", help="train one treatment (baseA, A3B, B5B+, ...)", formatter_class=fmt)
    _common(p)
    p.add_argument("--treatment", required=True, help="treatment name, e.g. baseA, A3B, A3B+")
    p.add_argument("--iters", type=int, default=None, help="iteration budget (default: the solver's max_iter)")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads for Caffe (default: all cores)")
    p.add_argument("--force", action="store_true", help="redo a finished run (the old one is moved aside)")
    _mode_options(p)
    p.add_argument("--protocol", default="random", help="protocol the treatment belongs to (random, natman, ...)")
    _run_options(p)
    p = sub.add_parser("grid", help="every treatment of a protocol, bases first; local (--jobs) or Slurm",
                       formatter_class=fmt)
    _common(p)
    _grid_options(p)
    p.add_argument("--iters", type=int, default=None, help="iteration budget per run")
    p.add_argument("--jobs", type=int, default=1, help="local runs at a time (BLAS threads: cores // jobs)")
    p.add_argument("--engine", choices=("local", "slurm"), default="local", help="run here, or submit with sbatch")
    p.add_argument("--slurm-config", type=Path, default=None,
                   help="TOML file overriding runner/slurm.toml (partition, time, cpus, gpus, ...)")
    _mode_options(p)
    _run_options(p)
    p = sub.add_parser("status", help="state of every run of a grid (and its Slurm jobs)", formatter_class=fmt)
    _common(p)
    _grid_options(p)
    _run_options(p)
    p = sub.add_parser("plots", help="results table, Figures 2 and 3, Table 1, curves from the runs' logs",
                       formatter_class=fmt)
    _common(p)
    p.add_argument("--original", type=Path, default=None,
                   help="an imported authors' results table (import-original), drawn as hollow markers")
    from analysis.commands import add_parsers as add_analysis_parsers
    add_analysis_parsers(sub, fmt)
    p = sub.add_parser("demo", formatter_class=fmt,
                       help="every grid (random split, natural/man-made, random frozen weights), then the figures")
    _common(p)
    p.add_argument("--seeds", default=None,
                   help="comma-separated random-split seeds, e.g. 0,1,2,3 (default: --seed); "
                        "natman and the random-weights grid run once")
    p.add_argument("--iters", type=int, default=None, help="iteration budget per run")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p = sub.add_parser("compare-original", formatter_class=fmt,
                       help="compare the kit's prototxt with authors' run folders (exit 1 on a difference not allowed)")
    p.add_argument("run_folders", nargs="*", type=Path, metavar="RUN_FOLDER",
                   help="authors' run folder(s) named like half0A, transfer-ft0A0B_1_3, nolearn_1_3")
    p.add_argument("--list-allowed", action="store_true", help="print the allowed differences with their reasons")
    return parser


def _compare_original(args: argparse.Namespace) -> int:
    """Print every difference per folder; 1 when any is not in the allowed list."""
    from generators.compare import ALLOWED, compare_folder
    if args.list_allowed:
        for allowed in ALLOWED:
            print(f"{allowed.key}: {allowed.reason}")
    if not args.run_folders and not args.list_allowed:
        raise KitError("no RUN_FOLDER given", "pass authors' run folders, e.g. ../shared/reference/original_runs/half0A")
    failed = 0
    for folder in args.run_folders:
        results = compare_folder(folder)
        bad = [d for d, allowed in results if allowed is None]
        for d, allowed in results:
            print(f"{folder.name}: {'allowed [' + allowed.key + ']' if allowed else 'NOT ALLOWED'}: {d}")
        print(f"{folder.name}: {len(results)} differences, {len(bad)} not allowed: {'FAIL' if bad else 'OK'}")
        failed += bool(bad)
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    """Carry out one parsed command."""
    if args.command == "compare-original":
        return _compare_original(args)
    from analysis.commands import COMMANDS as ANALYSIS_COMMANDS, print_outputs, run_command
    if args.command in ANALYSIS_COMMANDS:
        return run_command(args)
    if args.command in ("split-natural", "split-whole") and args.dataset != "imagenet":
        from data_prep.prepare import prepare_for
        if args.lists or args.images or args.encoded:
            raise KitError(f"{_imagenet_only_opts(args)} for --dataset imagenet, not {args.dataset}",
                           "pass --dataset imagenet (DATASET=imagenet), or leave them out")
        protocol = "natman" if args.command == "split-natural" else "whole"
        print(f"split ready: {prepare_for(args.work, args.dataset, protocol, force=args.force)}")
        return 0
    if args.command in ("split-natural", "split-reduced", "split-whole") or (
            args.command == "split-random" and (args.dataset == "imagenet" or args.lists or args.images
                                                or args.encoded)):
        return _imagenet_split(args)
    from data_prep.prepare import dataset_spec
    from data_prep.splits import check_seed
    if args.dataset != "imagenet" or args.command in ("dataset", "demo"):  # ImageNet: made by the split commands
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
    elif args.command in ("grid", "status"):
        return _grid(args)
    elif args.command == "train":
        from generators.treatments import parse
        treatment = parse(args.treatment, args.protocol)
        from runner.supervise import install_handlers
        from runner.train import RunSpec, train
        install_handlers()
        spec = RunSpec(args.work, args.dataset, args.seed, treatment, iters=args.iters, threads=args.threads,
                       gpu=args.gpu, **_spec_options(args))
        result = train(spec, force=args.force)
        print(f"{treatment.name}: score {result['score']:.4f} (mean of the 10 best test accuracies), "
              f"run folder {spec.run_dir}")
    elif args.command == "plots":
        from analysis.results import analyze_split
        outputs = analyze_split(args.work / args.dataset / f"random{args.seed}", original=args.original)
        print_outputs(outputs)
    elif args.command == "demo":
        from runner.demo import demo
        from runner.supervise import install_handlers
        install_handlers()
        demo(args.work, args.dataset, _seeds(args.seeds, args.seed), iters=args.iters, jobs=args.jobs)
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
        return getattr(exc, "exit_code", 2)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"error: disk full while writing {exc.filename or ''} ({exc.strerror}); "
              "fix: free space there (or use another --work), then rerun the same command", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
