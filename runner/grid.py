"""The grid of one split: every treatment of a protocol, bases first, then each transfer after its base.

`run_grid` trains locally with `jobs` runs at a time, each caffe limited to
cores // jobs compute threads (oneDNN's, or BLAS's on a build without it).
Finished runs are skipped, unfinished ones resume (runner.train). Each run
ends with one summary line (treatment, status, score, wall time) on stderr;
while it works, tqdm bars on stderr show the grid (in iterations, with its
ETA) and every running caffe, read live from its log.
Bars are drawn when stderr is a terminal or TRANSFER_KIT_PROGRESS=1.
The state of a grid's runs (`transfer-kit status`) is runner.status's, which
reads run folders (runner.runstate) and Slurm's queue (runner.slurm).
The treatment names come from kitcore.treatments.valid_names(protocol),
so new protocols plug in without changes here. With `repeats` R, every
treatment is trained R times, r = 0..R-1 (runner.train's `repeat`: folders
`<treatment>.r<r>`, another solver seed); a transfer's replicate starts from
the r = 0 base, so it waits for that one only. Summary lines and the status
table name a run by its folder.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from kitcore.errors import KitError
from kitcore.layout import is_finished
from kitcore.treatments import Treatment, in_dependency_order, parse, valid_names
from runner import snapshots, supervise
from runner.finished import check_runs
from runner.train import RunSpec, budget, train

log = logging.getLogger(__name__)
BAR = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} it [{elapsed} < ETA {remaining}]"


def treatments(protocol: str = "random", only: list[str] | None = None) -> list[Treatment]:
    """The treatments of a protocol's grid (or the subset `only`), in dependency order."""
    names = valid_names(protocol)
    for name in only or []:
        if name not in names:
            parse(name, protocol)  # raises the one-line error that lists valid names
    chosen = [parse(n, protocol) for n in (only or names)]
    by_name = {t.name for t in chosen}
    for t in chosen:
        if t.base_name and t.base_name not in by_name:
            log.debug("%s needs %s, which is not in this grid: it must be finished already", t.name, t.base_name)
    return in_dependency_order(chosen)


def _show_bars() -> bool:
    return sys.stderr.isatty() or os.environ.get("TRANSFER_KIT_PROGRESS") == "1"


class _Progress:
    """The grid bar (iterations left over all runs, with ETA) and one bar per running caffe."""

    def __init__(self, total: int, slots: int):
        self.lock = threading.Lock()
        self.free = list(range(1, slots + 1))
        self.grid = tqdm(total=total, desc="grid", bar_format=BAR, file=sys.stderr, position=0,
                         disable=not _show_bars(), mininterval=1.0, dynamic_ncols=True)

    def start(self, name: str, first: int, total: int):
        """A bar for one run; returns (on_iter callback, close function)."""
        with self.lock:
            slot = self.free.pop(0) if self.free else len(self.free) + 1
        bar = tqdm(total=total, initial=first, desc=f"{name:6s}", bar_format=BAR, file=sys.stderr,
                   position=slot, leave=False, disable=self.grid.disable, mininterval=1.0, dynamic_ncols=True)
        last = [first]

        def on_iter(it: int) -> None:
            with self.lock:
                step = max(0, min(it, total) - last[0])
                last[0] += step
                bar.update(step)
                self.grid.update(step)

        def close() -> None:
            with self.lock:
                bar.close()
                self.free.append(slot)
                self.free.sort()
        return on_iter, close

    def say(self, line: str) -> None:
        """One summary line, printed above the bars."""
        with self.lock:
            tqdm.write(line, file=sys.stderr)


def _summary(name: str, status: str, score, seconds: float, width: int = 10) -> str:
    shown = f"{score:.4f}" if isinstance(score, float) else "-"
    return f"{name:{width}s} {status:11s} score {shown:6s}  wall {seconds:7.1f} s"


def _eta(done: int, total: int, start: float) -> str:
    """`[done/total] elapsed, ETA` for a summary line (ETA from the mean wall time per run so far)."""
    elapsed = time.time() - start
    left = elapsed / done * (total - done) if done else 0.0
    return f"  [{done}/{total}; elapsed {elapsed / 60:.1f} min, ETA {left / 60:.1f} min]"


def run_grid(work: Path, dataset: str, seed: int, names: list[str] | None = None, protocol: str = "random",
             iters: int | None = None, jobs: int = 1, gpu: bool = False, repeats: int = 1,
             **options) -> dict[str, dict]:
    """Train a grid on one split, bases first, `jobs` at a time, `repeats` replicates of each treatment;
    return results by run folder name (`A3B`, `A3B.r1`, ...).

    `options`: further RunSpec fields (per_class, batch, test_iter)."""
    todo = treatments(protocol, names)
    specs = [RunSpec(Path(work), dataset, seed, t, iters=iters, threads=threads_per_job(jobs), gpu=gpu, repeat=r,
                     **options) for t in todo for r in range(repeats)]
    log.info("grid of %d runs (%s, %s seed %d, %d replicate(s) each): %d at a time, %d BLAS thread(s) each",
             len(specs), protocol, dataset, seed, repeats, jobs, threads_per_job(jobs))
    return {spec.run_dir.name: result for spec, result in run_specs(specs, jobs).items()}


def threads_per_job(jobs: int) -> int:
    """Compute threads of each of `jobs` concurrent runs: the cores this process may use, divided evenly."""
    return max(1, len(os.sched_getaffinity(0)) // jobs)


def run_specs(specs: list[RunSpec], jobs: int = 1) -> dict[RunSpec, dict]:
    """Train runs (of one or several splits) `jobs` at a time, each after its base; return results by spec.

    A transfer (any replicate) waits for the r = 0 base of its own split when
    that base is among `specs`, and otherwise needs it finished already
    (runner.train checks). Runs are keyed by (split folder, run folder name).
    """
    def key(spec: RunSpec):
        return spec.split_dir, spec.run_dir.name

    by_key = {key(s): s for s in specs}

    def base_of(spec: RunSpec):
        return None if spec.treatment.base_name is None else (spec.split_dir, spec.treatment.base_name)

    several = len({s.split_dir for s in specs}) > 1  # then a summary line names the split too
    names = {s: f"{s.split_dir.name}/{s.run_dir.name}" if several else s.run_dir.name for s in specs}
    width = max([10] + [len(n) for n in names.values()])
    check_runs(specs)  # a run folder with other settings than asked: refused before anything runs
    budgets = {s: budget(s) for s in specs}
    first = {s: 0 if is_finished(s.run_dir) else ((snapshots.peek_newest(s.run_dir) or (0,))[0]
                                                  if s.run_dir.is_dir() else 0) for s in specs}
    total = sum(budgets[s] - first[s] for s in specs if not is_finished(s.run_dir))
    progress = _Progress(total, jobs)
    results: dict[RunSpec, dict] = {}
    failed: dict[tuple, str] = {}
    done_keys: set = set()
    pending, running = list(specs), {}
    grid_start = time.time()

    def job(spec: RunSpec) -> dict:
        on_iter, close = progress.start(names[spec], first[spec], budgets[spec])
        try:
            return train(spec, on_iter=on_iter)
        finally:
            close()

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for s in [s for s in pending if base_of(s) in failed]:
                pending.remove(s)
                failed[key(s)] = f"base {s.treatment.base_name} failed"
                progress.say(_summary(names[s], "blocked", None, 0.0, width)
                             + f"  (base {s.treatment.base_name} failed)")
            ready = [s for s in pending if base_of(s) is None or base_of(s) in done_keys
                     or (base_of(s) not in by_key and base_of(s) not in failed)]
            for s in ready[: jobs - len(running)] if not supervise.stop_requested() else []:
                pending.remove(s)
                running[pool.submit(job, s)] = (s, time.time())
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                s, t0 = running.pop(fut)
                try:
                    res = fut.result()
                    results[s] = res
                    done_keys.add(key(s))
                    progress.say(_summary(names[s], res.get("status", "trained"), res.get("score"),
                                          time.time() - t0, width)
                                 + _eta(len(results) + len(failed), len(specs), grid_start))
                except KitError as exc:
                    failed[key(s)] = str(exc)
                    status = "interrupted" if isinstance(exc, supervise.Interrupted) else "failed"
                    progress.say(_summary(names[s], status, None, time.time() - t0, width)
                                 + _eta(len(results) + len(failed), len(specs), grid_start) + f"  {exc}")
    progress.grid.close()
    if supervise.stop_requested():
        raise supervise.Interrupted(f"grid stopped on request: {len(results)} of {len(specs)} runs finished",
                                    "rerun the same command to resume", supervise.stop_requested())
    if failed:
        failed_names = sorted(names[by_key[k]] for k in failed)
        raise KitError(f"{len(failed)} of {len(specs)} run(s) failed: {', '.join(failed_names)}",
                       "see `transfer-kit status` and their train.log; rerun the same command to resume them")
    return results
