"""The whole experiment as one graph: data preparation, every grid, the figures (make experiment).

A plan (`plan`) comes from a Definition, what `make experiment` was given (dataset, seeds, grids, k
of the reduced grid, m of the mix grid (each seed's), TREATMENTS, ITERS, REPEATS, MODE, LISTS, IMAGES, GROUPS):
- steps, each one `transfer-kit` command on CPUs: `store`, the dataset's whole-set store (FA-20
  built, ImageNet's images decoded once; a user's dataset has its store from make dataset), then
  each split's LMDBs and means after it (the command of its make split-* target), and `figures`
  (make plots) after every run, when the random split is among the grids;
- grids, one per split: make demo's runs (kitcore.treatments.grid_names: Figure 2's 30 of a random
  split, natman's bases and frozen AnB, BnA, whole's base and randfrozen1..7, reduced's base, mix's
  bases, AnB and AnB+), or of
  those only the names TREATMENTS lists (runner.cli_experiment.check_treatments: a toy or partial experiment), each
  treatment `repeats` times (r = 0..R-1).
A step is finished when what it makes is there: the store complete, a split's manifest.json naming
that split, the figures' results/outputs.json (written last) newer than every run they draw. Locally
(`run_local`) each unfinished step runs here in order and the runs go through runner.grid.run_specs,
as make demo's; on Slurm
runner.experiment_slurm submits the same graph. The definition is kept in
<work>/<dataset>/experiment/experiment.json beside the Slurm jobs of the steps (jobs.json) and their
logs, so `experiment-status` needs nothing but WORK and DATASET.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from kitcore import atomic, layout
from kitcore.errors import KitError
from kitcore.profiles import KIT, profile
from kitcore.treatments import grid_names, in_dependency_order, parse
from runner.finished import check_runs
from runner.train import RunSpec

log = logging.getLogger(__name__)
GRIDS = ("random", "natman", "whole", "reduced", "mix")  # every grid the experiment has, in this order
PAPER = GRIDS[:4]  # the paper's grids: GRIDS=all (mix, task distance as a curve, is asked for by name)
STATE = "experiment"  # <work>/<dataset>/experiment/: experiment.json, jobs.json, the steps' job logs
PLACEHOLDER = {"lists": "LISTS", "images": "IMAGES"}  # a dry run's stand-ins for the folders not given


@dataclass(frozen=True)
class Definition:
    """What the experiment was asked for (make experiment's variables), as experiment.json keeps it."""

    work: Path
    dataset: str
    seeds: tuple[int, ...] = (0,)
    grids: tuple[str, ...] = ("random",)
    per_class: tuple[int, ...] = layout.AUTHORS_PER_CLASS  # k of the reduced grid's splits
    mixes: tuple[int, ...] = ()  # m of the mix grid's splits, each seed's (mix<seed>m<m>)
    treatments: tuple[str, ...] | None = None  # each grid's runs of these names only (None: every run of the grid)
    iters: int | None = None
    repeats: int = 1
    gpu: bool = False
    batch: int | None = None
    test_iter: int | None = None
    lists: Path | None = None
    images: Path | None = None
    encoded: bool = False
    groups: Path | None = None
    engine: str = "local"
    slurm_config: Path | None = None

    def record(self) -> dict:
        """JSON-ready fields (paths as text)."""
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, record: dict) -> Definition:
        """The Definition an experiment.json holds."""
        paths = ("work", "lists", "images", "groups", "slurm_config")
        return cls(**{k: (Path(v) if k in paths and v is not None else tuple(v) if isinstance(v, list) else v)
                      for k, v in record.items()})

    def make_command(self) -> str:
        """The make command that (re)submits this experiment: the fix every failed step names."""
        words = ["make experiment", f"DATASET={self.dataset}", f"SEEDS={','.join(map(str, self.seeds))}",
                 f"GRIDS={','.join(self.grids)}"]
        if "reduced" in self.grids and self.per_class != layout.AUTHORS_PER_CLASS:
            words.append(f"PERCLASS={','.join(map(str, self.per_class))}")
        words += [f"MIX={','.join(map(str, self.mixes))}"] if "mix" in self.grids else []
        words += [f"TREATMENTS={','.join(self.treatments)}"] if self.treatments else []
        words += [f"ITERS={self.iters}"] if self.iters else []
        words += [f"REPEATS={self.repeats}"] if self.repeats > 1 else []
        words += ["MODE=gpu"] if self.gpu else []
        for var, value in (("LISTS", self.lists), ("IMAGES", self.images), ("GROUPS", self.groups),
                           ("SLURM_CONFIG", self.slurm_config)):
            words += [f"{var}={value}"] if value else []
        words += ["ENCODED=1"] if self.encoded else []
        words += [f"ENGINE={self.engine}"] if self.engine != "local" else []
        return " ".join(words + layout.work_setting(self.work))


@dataclass(frozen=True)
class Step:
    """A CPU step of the graph: one transfer-kit command, after the steps it needs."""

    name: str                # store, a split folder's name, figures
    kind: str                # store, split, figures
    args: tuple[str, ...]    # transfer-kit's arguments
    after: tuple[str, ...]   # names of the steps it waits for
    where: Path              # what it makes


@dataclass(frozen=True)
class Grid:
    """The runs of one split (its folder's name, which also says its seed, k and m)."""

    split: str
    protocol: str
    specs: list[RunSpec] = field(hash=False)


@dataclass(frozen=True)
class Plan:
    """The graph: preparation steps (store first), the grids, the figures step (or None)."""

    definition: Definition
    steps: list[Step]
    grids: list[Grid]
    figures: Step | None

    @property
    def folder(self) -> Path:
        """<work>/<dataset>/experiment: the experiment's own files."""
        return Path(self.definition.work) / self.definition.dataset / STATE


def grid_treatments(protocol: str, only: tuple[str, ...] | None) -> list[str]:
    """The runs of a grid's split (kitcore.treatments.grid_names), or those of them named in `only`."""
    return [n for n in grid_names(protocol) if only is None or n in only]


def missing_data(d: Definition) -> list[str]:
    """LISTS, IMAGES: those a dataset whose splits come from lists and images (its preparer) needs, not given."""
    if profile(d.dataset).preparer != "lists":
        return []
    return [k.upper() for k in PLACEHOLDER if getattr(d, k) is None]


def _data_args(d: Definition, cpus: int, dry: bool) -> list[str]:
    """The options of a dataset whose splits come from lists and images (its profile's preparer)."""
    if profile(d.dataset).preparer != "lists":
        return []
    missing = missing_data(d)
    if missing and not dry:
        raise KitError(f"the {d.dataset} experiment needs {' and '.join(missing)}",
                       "pass LISTS=dir (Caffe's synsets.txt, train.txt, val.txt) and IMAGES=dir (ILSVRC2012's "
                       "train/ and val/), or DRY_RUN=1 to see the graph and its cost without them")
    folder = {k: str(Path(getattr(d, k)).resolve()) if getattr(d, k) else PLACEHOLDER[k] for k in PLACEHOLDER}
    return ["--lists", folder["lists"], "--images", folder["images"], "--jobs", str(cpus)] + (
        ["--encoded"] if d.encoded else [])


def _split_args(d: Definition, protocol: str, seed: int, k: int | None, m: int | None, data: list[str]) -> list[str]:
    """The split command (make split-*'s subcommand) of one grid's split."""
    base = ["--work", str(d.work), "--dataset", d.dataset]
    groups = ["--groups", str(Path(d.groups).resolve())] if profile(d.dataset).user else []
    if protocol == "natman" and groups:
        return ["split-groups", *base, *groups]
    args = [layout.protocol_spec(protocol).target, *base]
    args += ["--seed", str(seed)] if protocol in ("random", "mix") else []
    args += ["--per-class", str(k)] if protocol == "reduced" else []
    args += ["--mix", str(m), *groups] if protocol == "mix" else []
    return args + data


def plan(d: Definition, cpus: int = 1, dry: bool = False) -> Plan:
    """The graph of an experiment; `cpus`: decoding processes of the store and split commands."""
    d = replace(d, work=Path(d.work).resolve())
    prof = profile(d.dataset)
    data = _data_args(d, cpus, dry)
    steps = []
    if prof.preparer != "folder":  # a user's dataset has its store from make dataset
        steps.append(Step("store", "store", ("store", "--work", str(d.work), "--dataset", d.dataset, *data), (),
                          layout.dataset_dir(d.work, d.dataset)))
    after = tuple(s.name for s in steps)
    s0 = d.seeds[0]  # the one-split grids' seed
    units = ([("random", s, None, None) for s in d.seeds] + [("natman", s0, None, None), ("whole", s0, None, None)]
             + [("reduced", s0, k, None) for k in d.per_class]
             + [("mix", s, None, m) for s in d.seeds for m in d.mixes])
    grids = []
    for protocol, seed, k, m in (u for u in units if u[0] in d.grids):
        name = layout.split_name(protocol, seed, k, m)
        steps.append(Step(name, "split", tuple(_split_args(d, protocol, seed, k, m, data)), after,
                          layout.split_dir(d.work, d.dataset, name)))
        treatments = in_dependency_order([parse(n, protocol) for n in grid_treatments(protocol, d.treatments)])
        specs = [RunSpec(d.work, d.dataset, seed, t, iters=d.iters, gpu=d.gpu, per_class=k, batch=d.batch,
                         test_iter=d.test_iter, repeat=r, mix=m) for t in treatments for r in range(d.repeats)]
        grids.append(Grid(name, protocol, specs))
    figures = None
    if "random" in d.grids:
        first = layout.split_dir(d.work, d.dataset, layout.split_name("random", d.seeds[0]))
        figures = Step("figures", "figures", ("plots", "--work", str(d.work), "--dataset", d.dataset, "--seed",
                                              str(d.seeds[0])), tuple(g.split for g in grids),
                       first / "results" / "outputs.json")  # written last (analysis.results.analyze_split)
    return Plan(d, steps, grids, figures)


def store_ready(work: Path, dataset: str) -> bool:
    """Whether a dataset's whole-set store is complete (FA-20's arrays; the LMDBs of a decoded store)."""
    where = layout.dataset_dir(work, dataset)
    if profile(dataset).embedded:
        from data_prep.fa20 import is_complete
        return is_complete(where)
    from data_prep.image_store import read_whole_meta
    return read_whole_meta(where) is not None


def split_ready(where: Path, dataset: str) -> bool:
    """Whether a split folder's manifest.json (written last) is there and names this split of this dataset."""
    try:
        manifest = json.loads((Path(where) / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("dataset") == dataset and manifest.get("split", {}).get("name") == Path(where).name


def figures_ready(p: Plan) -> bool:
    """Whether the figures are newer than every run of the plan, all finished."""
    if p.figures is None or not p.figures.where.is_file():
        return False
    made = p.figures.where.stat().st_mtime
    runs = [s.run_dir for g in p.grids for s in g.specs]
    return all(layout.is_finished(r, check_model=False) and (r / "result.json").stat().st_mtime <= made
               for r in runs)


def step_done(p: Plan, step: Step) -> bool:
    """Whether a step's output is there (store_ready, split_ready, figures_ready)."""
    if step.kind == "store":
        return store_ready(p.definition.work, p.definition.dataset)
    if step.kind == "split":
        return split_ready(step.where, p.definition.dataset)
    return figures_ready(p)


def save(p: Plan) -> Path:
    """Keep the definition in <work>/<dataset>/experiment/experiment.json (for experiment-status)."""
    return atomic.write_json(p.folder / "experiment.json", p.definition.record())


def load(work: Path, dataset: str) -> Definition:
    """The definition of the last experiment made in a work folder, or a KitError naming the command."""
    path = Path(work).resolve() / dataset / STATE / "experiment.json"
    try:
        return Definition.from_record(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise KitError(f"no experiment of {dataset} in {work} ({path}: {exc.__class__.__name__})",
                       f"start one: make experiment DATASET={dataset} [SEEDS=0,1] [GRIDS=all] [ENGINE=slurm]"
                       f"{' ' + ' '.join(layout.work_setting(work)) if layout.work_setting(work) else ''}") from exc


def kit_command(args) -> list[str]:
    """The transfer-kit command line of a step's arguments, with this Python."""
    return [sys.executable, "-m", "runner.cli", *args]


def run_local(p: Plan, jobs: int = 2) -> dict:
    """Run the graph here: each unfinished step in order, every run `jobs` at a time (runner.grid), the figures."""
    from runner.grid import run_specs, threads_per_job
    check_runs([s for g in p.grids for s in g.specs])  # before the definition is saved or any step runs
    save(p)
    for step in p.steps:
        if step_done(p, step):
            log.info("%s: finished (%s)", step.name, step.where)
            continue
        _run_step(step)
    specs = [replace(s, threads=threads_per_job(jobs)) for g in p.grids for s in g.specs]
    specs.sort(key=lambda s: s.treatment.kind != "base")  # stable: every split's bases first, as make demo
    log.info("training %d runs, %d at a time", len(specs), jobs)
    results = run_specs(specs, jobs)
    if p.figures is not None and not step_done(p, p.figures):
        _run_step(p.figures)
    return {"runs": len(results), "figures": p.figures.where.parent if p.figures else None}


def _run_step(step: Step) -> None:
    """Run one step's command here (its output on this terminal); a KitError if it fails."""
    log.info("%s: %s", step.name, " ".join(step.args[:1]))
    proc = subprocess.run(kit_command(step.args), cwd=KIT, check=False)
    if proc.returncode != 0:
        raise KitError(f"step {step.name} failed (transfer-kit {step.args[0]} exited {proc.returncode})",
                       "see its error above; fix it, then rerun the same command (finished steps are kept)")
