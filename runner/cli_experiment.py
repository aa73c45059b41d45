"""The experiment subcommands of transfer-kit: experiment, experiment-status, store.

experiment runs the whole experiment as one graph (runner.experiment): here, make demo's graph for any
dataset (--engine local), or on Slurm (--engine slurm) as dependent jobs submitted in seconds
(runner.experiment_slurm); --dry-run prints the graph, the sbatch lines and what it costs
(runner.experiment_cost) and changes nothing. experiment-status tells the state of the last experiment
made in a work folder. store builds a dataset's whole-set store, the experiment's first step.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kitcore import layout
from kitcore.errors import KitError
from kitcore.profiles import profile
from kitcore.treatments import grid_names, parse
from runner.cli_common import add_common, add_mode_options, positive_int, subcommand


def _data_options(p: argparse.ArgumentParser) -> None:
    """--lists, --images, --encoded: a dataset whose splits come from Caffe's lists and an image folder."""
    p.add_argument("--lists", type=Path, default=None,
                   help="imagenet: folder with Caffe's synsets.txt, train.txt, val.txt (default: none)")
    p.add_argument("--images", type=Path, default=None,
                   help="imagenet: ILSVRC2012 folder with train/ and val/ (default: none)")
    p.add_argument("--encoded", action="store_true",
                   help="imagenet: store JPEG Datums (needs Caffe built with OpenCV: make caffe CAFFE_OPENCV=1)")


def add_parsers(sub, fmt) -> None:
    """experiment, experiment-status, store."""
    p = subcommand(sub, "experiment", fmt, "the whole experiment as one graph: data preparation, every grid, the "
                   "figures; here, or submitted to Slurm in seconds (--dry-run: the graph and its cost only)")
    add_common(p, seed=False)
    p.add_argument("--seeds", default="0", help="comma-separated random-split seeds, e.g. 0,1,2,3")
    p.add_argument("--grids", default=None,
                   help="grids: random (each seed's), natman, whole, reduced (one per k), mix (one per seed and m), "
                        "comma-separated, or all (every grid of the paper the dataset has) (default: random)")
    p.add_argument("--per-class", default=None,
                   help="the reduced grid's k, comma-separated (default: the authors' 1,2,5,10,25,50,100,250,500,"
                        "750,1000,1300)")
    p.add_argument("--mix", default=None,
                   help="the mix grid's m, classes swapped between natman's halves, comma-separated, each seed's "
                        "(default: fa20's every m, 0..5; required elsewhere)")
    p.add_argument("--treatments", default=None,
                   help="only these runs of each grid, comma-separated names, each grid keeping at least one and "
                        "every transfer its base, e.g. baseA,baseB,A1B,base (default: every run of each grid)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="iteration budget per run (default: the solver's max_iter)")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="replicates of each treatment: r = 0..R-1 (another solver seed each)")
    add_mode_options(p)
    p.add_argument("--batch", type=positive_int, default=None,
                   help="train and val batch instead of the template's, for toy runs (default: the template's)")
    p.add_argument("--test-iter", type=positive_int, default=None,
                   help="test batches per test instead of the solver's (default: the profile's policy)")
    _data_options(p)
    p.add_argument("--groups", type=Path, default=None,
                   help="your dataset's natman grid: CSV of class,group lines, as make split-groups (default: none)")
    p.add_argument("--engine", choices=("local", "slurm"), default="local",
                   help="run here (make demo's way), or submit one Slurm job graph and return")
    p.add_argument("--slurm-config", type=Path, default=None,
                   help="TOML file overriding runner/slurm.toml, its [prepare] table too (default: none)")
    p.add_argument("--jobs", type=positive_int, default=2, help="local engine: runs at a time")
    p.add_argument("--dry-run", action="store_true",
                   help="print the graph, the commands or sbatch lines and the cost; run and submit nothing")
    p.add_argument("--gpu-check", type=Path, default=None,
                   help="a make gpu-check measurement (gpu_check.json, or its OUT folder) for the projected "
                        "GPU-hours (default: WORK/gpu-check)")
    p.set_defaults(handler=_experiment)
    p = subcommand(sub, "experiment-status", fmt, "the state of the last experiment made in a work folder: each "
                   "preparation step and grid, finished / running / pending / failed / not submitted, with its jobs")
    add_common(p, seed=False)
    p.set_defaults(handler=_status)
    p = subcommand(sub, "store", fmt, "build a dataset's whole-set store: FA-20's arrays, or ImageNet's images "
                   "decoded once (the experiment's first preparation step)")
    add_common(p, seed=False)
    _data_options(p)
    p.add_argument("--jobs", type=positive_int, default=1, help="imagenet: processes decoding images")
    p.set_defaults(handler=_store)


def _numbers(text: str, what: str, fix: str, check) -> tuple[int, ...]:
    """Distinct integers of a comma-separated list, each passed through `check`, or a KitError."""
    try:
        values = tuple(check(int(x)) for x in text.split(",") if x.strip())
    except (ValueError, KitError):
        values = ()
    if not values or len(set(values)) != len(values):
        raise KitError(f"bad {what} {text!r}", fix)
    return values


def _positive(k: int) -> int:
    if k < 1:
        raise ValueError(k)
    return k


def definition(args: argparse.Namespace):
    """The experiment's Definition from the parsed options (each checked)."""
    from runner.experiment import Definition
    seeds = _numbers(args.seeds, "--seeds", "pass distinct non-negative integers separated by commas, e.g. "
                     "--seeds 0,1,2,3 (SEEDS=0,1,2,3)", profile(args.dataset).check_seed)
    per_class = layout.AUTHORS_PER_CLASS if args.per_class is None else _numbers(
        args.per_class, "--per-class", "pass distinct positive integers, e.g. PERCLASS=1,10,100", _positive)
    grids = check_grids(args.grids, args.dataset, args.groups)
    return Definition(work=args.work, dataset=args.dataset, seeds=seeds, grids=grids, per_class=per_class,
                      mixes=check_mixes(args.mix, args.dataset, grids),
                      treatments=check_treatments(args.treatments, grids),
                      iters=args.iters, repeats=args.repeats, gpu=args.gpu, batch=args.batch,
                      test_iter=args.test_iter, lists=args.lists, images=args.images, encoded=args.encoded,
                      groups=args.groups, engine=args.engine, slurm_config=args.slurm_config)


def _experiment(args: argparse.Namespace) -> int:
    """Run the experiment here, submit it to Slurm, or (dry run) say what either would do and cost."""
    from runner import experiment_cost
    d = definition(args)
    p = (_local if args.engine == "local" else _slurm)(d, args)
    if p is not None:
        print("\n".join(experiment_cost.size_lines(p, experiment_cost.measurement_file(args.gpu_check, args.work))))
    return 0


def _local(d, args: argparse.Namespace):
    """Run the graph here (dry run: print its steps); return the plan for its size, None when it ran."""
    import os

    from runner import experiment
    p = experiment.plan(d, cpus=len(os.sched_getaffinity(0)), dry=args.dry_run)
    if not args.dry_run:
        from runner.supervise import install_handlers
        install_handlers()
        done = experiment.run_local(p, jobs=args.jobs)
        print(f"experiment done: {done['runs']} runs" + (f"; figures in {done['figures']}" if done["figures"] else ""))
        if d.mixes:  # analysis.distance draws from records, beside the random splits'
            publish = " ".join(["make publish", *layout.work_setting(d.work), f"DATASET={d.dataset}"])
            splits = {k: ",".join(g.split for g in p.grids if g.protocol == k) for k in ("mix", "random")}
            print(f"task distance is drawn from run records: {publish} RECORDS=results/{d.dataset}/mix "
                  f"SPLITS={splits['mix']}" + (f" and {publish} SPLITS={splits['random']}" if splits["random"] else
                                               " (and the random splits' beside them)")
                  + f", then make plots RECORDS=results/{d.dataset}")
        return None
    print(f"experiment {d.dataset} here (ENGINE=local, DRY_RUN=1: nothing runs); each step, in order:")
    for step in p.steps + ([p.figures] if p.figures else []):
        state = "finished" if experiment.step_done(p, step) else "to run"
        print(f"  {step.name:14s} {state:9s} transfer-kit {' '.join(_quote(list(step.args)))}")
    print(f"  then {sum(len(g.specs) for g in p.grids)} runs of {len(p.grids)} grid(s), {args.jobs} at a time "
          "(bases first)" + (", before the figures" if p.figures else ""))
    return p


def _slurm(d, args: argparse.Namespace):
    """Submit the graph (dry run: print the graph and the sbatch lines); return the plan."""
    from runner import experiment, experiment_slurm, slurm
    config = slurm.load_config(args.slurm_config)
    p = experiment.plan(d, cpus=slurm.prepare_config(config)["cpus"], dry=args.dry_run)
    dry = [] if args.dry_run else None
    lines = experiment_slurm.submit(p, config, dry=dry)
    if dry is not None:
        print(f"experiment {d.dataset} on Slurm (DRY_RUN=1: nothing is submitted)\n"
              f"graph: {len(dry)} job(s) to submit, each after the jobs named (afterok, --kill-on-invalid-dep=yes):")
        print("\n".join(_graph(dry)))
    print("\n".join(lines))
    if dry is not None:
        print("sbatch lines:\n" + "\n".join(" ".join(_quote(cmd)) for _, cmd in dry))
        if experiment.missing_data(d):
            print(f"{' and '.join(experiment.missing_data(d))} not given: the lines name them by those words; "
                  "a submission needs them")
    return p


def _quote(cmd: list[str]) -> list[str]:
    import shlex
    return [shlex.quote(c) for c in cmd]


def _graph(dry: list) -> list[str]:
    """One line per job a dry run would submit: its name, array size and the jobs it waits for."""
    lines = []
    for name, cmd in dry:
        size = next((int(c.rsplit("-", 1)[1]) + 1 for c in cmd if c.startswith("--array=0-")), 0)
        dep = next((c.split(":", 1)[1] for c in cmd if c.startswith("--dependency=afterok:")), "")
        deps = [x.strip("<>") for x in dep.split(":")] if dep else []
        shown = ", ".join(deps) if len(deps) <= 3 else f"{', '.join(deps[:2])}, ... ({len(deps)} jobs)"
        label = f"{name} [array of {size}]" if size else name
        lines.append(f"  {label:34s}" + (f" after {shown}" if deps else ""))
    return lines


def _status(args: argparse.Namespace) -> int:
    """Print the state of the last experiment made in the work folder."""
    from runner import experiment, experiment_slurm
    d = experiment.load(args.work, args.dataset)
    print("\n".join(experiment_slurm.status_lines(experiment.plan(d, dry=True))))
    return 0


def _store(args: argparse.Namespace) -> int:
    """Build the whole-set store of a dataset (a no-op when it is complete)."""
    prof = profile(args.dataset)
    where = layout.dataset_dir(args.work, args.dataset)
    if prof.embedded:
        if args.lists or args.images or args.encoded:
            raise KitError(f"--lists/--images/--encoded are not options of {args.dataset}", "leave them out")
        from data_prep.prepare import dataset_spec
        dataset_spec(args.dataset).build(where)
    elif prof.user:
        from runner.experiment import store_ready
        if not store_ready(args.work, args.dataset):
            raise KitError(f"{args.dataset}'s store {where} is not complete",
                           f"add its images again: make dataset DATASET={args.dataset} IMAGES=DIR FORCE=1")
    else:
        if args.lists is None or args.images is None:
            raise KitError(f"the store of {args.dataset} needs --lists and --images",
                           "pass LISTS=dir (synsets.txt, train.txt, val.txt) and IMAGES=dir (train/, val/)")
        from data_prep.image_lists import load_lists
        from data_prep.image_store import build_whole_set
        build_whole_set(args.work, load_lists(args.lists), args.images, jobs=args.jobs, encoded=args.encoded)
    print(f"store ready: {where}")
    return 0


def check_grids(text: str | None, dataset: str, groups: Path | None = None) -> tuple[str, ...]:
    """The grids of 'random,natman' ('all': every grid of the paper the dataset has; None: random), or a KitError."""
    from runner.experiment import GRIDS, PAPER
    prof = profile(dataset)
    have = [g for g in GRIDS if g in prof.protocols]
    if text is None:
        return ("random",)
    names = tuple(g for g in have if g in PAPER) if text.strip() == "all" else tuple(
        n.strip() for n in text.split(",") if n.strip())
    if not names or any(n not in have for n in names) or len(set(names)) != len(names):
        raise KitError(f"bad GRIDS {text!r} for {dataset}", f"pass all or distinct names of: {', '.join(have)} "
                       "(GRIDS=all, GRIDS=random,natman)")
    for grid in ("natman", "mix"):
        if grid in names and prof.user and groups is None:
            raise KitError(f"the {grid} grid of {dataset} needs its two groups of classes",
                           f"pass GROUPS=file.csv (class,group lines, as make split-groups), or leave {grid} out "
                           "of GRIDS")
    return tuple(g for g in GRIDS if g in names)


def check_mixes(text: str | None, dataset: str, grids: tuple[str, ...]) -> tuple[int, ...]:
    """m of the mix grid's splits from --mix '0,1,2' (None: an embedded dataset's every m), () without the
    mix grid, or a KitError."""
    from data_prep.splits import mix_classes
    if "mix" not in grids:
        if text is not None:
            raise KitError("MIX is the mix grid's, which GRIDS leaves out", "add mix to GRIDS (GRIDS=random,mix), "
                           "or leave MIX out")
        return ()
    sizes = None  # an embedded dataset's group sizes: its m are checked here as make split-mix checks them
    if profile(dataset).embedded:
        from data_prep.natman import GROUPS
        from data_prep.prepare import dataset_spec
        sizes = tuple(dataset_spec(dataset).kinds.count(g) for g in GROUPS)
    top = None if sizes is None else mix_classes(*sizes, "50%")  # 50%: the largest m
    if text is None:
        if top is None:
            raise KitError(f"the mix grid of {dataset} needs MIX, the classes moved of each of its splits",
                           "pass MIX=m,... whole numbers, e.g. MIX=0,56,112,224 (a share P% is make split-mix's)")
        return tuple(range(top + 1))

    def check(m: int) -> int:
        return layout.check_mix(m) if sizes is None else mix_classes(*sizes, layout.check_mix(m))
    return _numbers(text, "MIX", "pass distinct whole numbers of classes moved, e.g. MIX=0,1,2"
                    + (f" (0..{top} on {dataset})" if top is not None else "") + " (a share P% is make split-mix's)",
                    check)


def check_treatments(text: str | None, grids: tuple[str, ...]) -> tuple[str, ...] | None:
    """The TREATMENTS subset ('baseA,A1B,base': each grid keeps the runs so named), None for all, or a KitError."""
    if text is None:
        return None
    from runner.experiment import grid_treatments
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    known = list(dict.fromkeys(n for g in grids for n in grid_names(g)))
    unknown = [n for n in names if n not in known]
    if not names or unknown or len(set(names)) != len(names):
        raise KitError(f"bad TREATMENTS {text!r}" + (f": {', '.join(unknown)} is in none of the grids "
                                                      f"{','.join(grids)}" if unknown else ""),
                       f"pass distinct names of the grids' runs ({','.join(known)}), or leave TREATMENTS out "
                       "for every run")
    for g in grids:
        kept = grid_treatments(g, names)
        if not kept:
            raise KitError(f"TREATMENTS {text!r} leaves the {g} grid without runs",
                           f"add one of its runs (e.g. {grid_names(g)[0]}) or leave {g} out of GRIDS")
        for t in (parse(n, g) for n in kept):
            if t.base_name and t.base_name not in kept:
                raise KitError(f"TREATMENTS {text!r} keeps {t.name} of the {g} grid without its base "
                               f"{t.base_name}", f"add {t.base_name} to TREATMENTS")
    return names
