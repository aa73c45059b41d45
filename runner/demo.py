"""The embedded experiment: every grid of the paper on one dataset, then the figures.

`demo` prepares the splits and trains, as one dependency graph, the grids asked
for (`grids`; `make demo` runs the random split only, GRIDS=all every grid):
- the random A/B split of each seed: baseA, baseB and the 28 transfers of
  Figure 2 (BnB, BnB+, AnB, AnB+ for n = 1..7);
- the natural/man-made split `natman`: baseA (natural), baseB (man-made) and
  the 14 frozen transfers AnB, BnA of Figure 3;
- the whole dataset `all`: its base net and randfrozen1..7 (Figure 3's random
  frozen weights).
Bases go first, so that both cores stay busy from the start; then
analysis.results.analyze_split writes the figures and Table 1 of the first
seed's split from every split's runs. The runs go through runner.grid.run_specs
(`jobs` at a time, cores // jobs compute threads each, skip finished, resume
unfinished, one summary line per run with the ETA).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from kitcore import layout
from kitcore.errors import KitError
from kitcore.profiles import profile
from kitcore.treatments import grid_names, in_dependency_order, parse
from runner.grid import run_specs, threads_per_job
from runner.train import RunSpec

log = logging.getLogger(__name__)
GRIDS = ("random", "natman", "whole")  # every grid of the demo, in the order it runs them
# What `make demo` runs unless GRIDS= says more: the random split of each seed (30 runs, 51.7 min on 2 cores
# for seed 0, README); GRIDS=all adds natman and the whole dataset (24 runs more) for Figure 3.
DEFAULT_GRIDS = ("random",)


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def check_grids(text: str | None) -> tuple[str, ...]:
    """The grids of --grids 'random,natman' ('all': every grid; None: DEFAULT_GRIDS), or a KitError."""
    if text is None:
        return DEFAULT_GRIDS
    names = GRIDS if text.strip() == "all" else tuple(n.strip() for n in text.split(",") if n.strip())
    if not names or any(n not in GRIDS for n in names) or len(set(names)) != len(names):
        raise KitError(f"bad --grids {text!r}", f"pass 'all' or distinct names of: {', '.join(GRIDS)} "
                       "(GRIDS=all, GRIDS=random,natman)")
    return tuple(g for g in GRIDS if g in names)  # the random split first


def demo_grids(seeds: list[int], grids: tuple[str, ...] = DEFAULT_GRIDS) -> list[tuple[str, int, list[str]]]:
    """(protocol, seed, treatment names) of every grid of the demo: the random split of each seed, then
    (when asked) natman and the whole dataset, once."""
    every = ([("random", s, grid_names("random")) for s in seeds]
             + [("natman", seeds[0], grid_names("natman")), ("whole", seeds[0], grid_names("whole"))])
    return [g for g in every if g[0] in grids]


def demo_specs(work: Path, dataset: str, seeds: list[int], iters: int | None, jobs: int,
               gpu: bool = False, grids: tuple[str, ...] = DEFAULT_GRIDS) -> list[RunSpec]:
    """Every run of the demo, bases of all splits first, each group in dependency order."""
    specs = [RunSpec(Path(work), dataset, seed, t, iters=iters, threads=threads_per_job(jobs), gpu=gpu)
             for protocol, seed, names in demo_grids(seeds, grids)
             for t in in_dependency_order([parse(n, protocol) for n in names])]
    return sorted(specs, key=lambda s: s.treatment.kind != "base")  # stable: keeps each group's order


def _pictures(split_dir: Path, dataset: str) -> dict:
    """The dataset's contact sheet (datasets the kit builds) and the conv1 filters of the split's baseA,
    into its results folder."""
    from analysis.filters import write_filters
    from data_prep.prepare import dataset_spec
    out = {}
    builder = dataset_spec(dataset) if profile(dataset).embedded else None
    if builder is not None and builder.contact_sheet is not None:
        out["contact_sheet_png"] = builder.contact_sheet(layout.dataset_dir(split_dir.parent.parent, dataset),
                                                         split_dir / "results" / "contact_sheet.png")
    run = layout.run_dir(split_dir, "baseA")
    model = run / layout.read_result(run)["model"]
    out["conv1_baseA_png"] = write_filters(model, split_dir / "results" / "conv1_baseA.png")
    return out


def demo(work: Path, dataset: str, seeds: list[int], iters: int | None = None, jobs: int = 2,
         grids: tuple[str, ...] = DEFAULT_GRIDS) -> dict:
    """Prepare the splits, train the grids asked for, write the figures; return paths and wall time."""
    from analysis.results import analyze_split
    from data_prep.prepare import prepare_for
    start = time.time()
    split_dirs = [prepare_for(Path(work), dataset, protocol, seed) for protocol, seed, _ in demo_grids(seeds, grids)]
    _say(f"splits ready: {', '.join(d.name for d in split_dirs)} ({time.time() - start:.0f} s)")
    specs = demo_specs(work, dataset, seeds, iters, jobs, grids=grids)
    _say(f"training {len(specs)} runs, {jobs} at a time")
    run_specs(specs, jobs)
    outputs = analyze_split(split_dirs[0])
    outputs.update(_pictures(split_dirs[0], dataset))
    wall = time.time() - start
    _say(f"demo done in {wall / 60:.1f} min; figures and tables in {Path(outputs['figure_png']).parent} "
         f"(figure2.png, figure2_bottom.png, table1.md, findings.md, conv1_baseA.png"
         + (", figure3.png)" if set(GRIDS) <= set(grids) else
            "; Figure 3 needs GRIDS=all: the natural/man-made split and random frozen weights)"))
    return {"outputs": outputs, "wall_seconds": wall}
