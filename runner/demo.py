"""The whole experiment on one split: the bases, then every transfer, then the figure.

Runs go in dependency order (a transfer waits for its base) on `jobs` worker
processes, each Caffe limited to cores // jobs BLAS threads. One line per
finished run, with an ETA for the rest, goes to stderr.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from generators.treatments import figure2_names, in_dependency_order, parse
from runner.errors import KitError
from runner.train import RunSpec, train

log = logging.getLogger(__name__)


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def run_grid(work: Path, dataset: str, seed: int, names: list[str], iters: int | None = None,
             jobs: int = 2) -> dict[str, dict]:
    """Train `names` on one split, bases first, `jobs` at a time; return results by name."""
    treatments = in_dependency_order([parse(n) for n in names])
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pending = list(treatments)
    results: dict[str, dict] = {}
    failed: dict[str, str] = {}
    running = {}
    start = time.time()
    done_count = 0

    def ready(t) -> bool:
        return t.base_name is None or t.base_name in results

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for t in [t for t in pending if ready(t)][: jobs - len(running)]:
                pending.remove(t)
                spec = RunSpec(work, dataset, seed, t, iters=iters, threads=threads)
                running[pool.submit(train, spec)] = (t, time.time())
            blocked = [t for t in pending if t.base_name in failed]
            for t in blocked:
                pending.remove(t)
                failed[t.name] = f"base {t.base_name} failed"
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                t, t0 = running.pop(fut)
                done_count += 1
                try:
                    res = fut.result()
                    results[t.name] = res
                    status = f"score {res['score']:.3f}"
                except KitError as exc:
                    failed[t.name] = str(exc)
                    status = f"FAILED: {exc}"
                elapsed = time.time() - start
                eta = elapsed / done_count * (len(treatments) - done_count)
                _say(f"[{done_count:2d}/{len(treatments)}] {t.name:6s} {status}  "
                     f"({time.time() - t0:5.1f} s; elapsed {elapsed / 60:4.1f} min, ETA {eta / 60:4.1f} min)")
    if failed:
        raise KitError(f"{len(failed)} run(s) failed: {', '.join(sorted(failed))}",
                       "read their train.log; rerun the same command to resume them")
    return results


def demo(work: Path, dataset: str, seed: int, iters: int | None = None, jobs: int = 2) -> dict:
    """Split, 2 bases and 28 transfers, then the figure; return paths and wall time."""
    from analysis.results import analyze_split  # pylint: disable=import-outside-toplevel
    from data_prep.prepare import prepare_split  # pylint: disable=import-outside-toplevel
    start = time.time()
    split_dir = prepare_split(Path(work), dataset, seed)
    _say(f"split ready: {split_dir} ({time.time() - start:.0f} s)")
    run_grid(Path(work), dataset, seed, figure2_names(), iters=iters, jobs=jobs)
    outputs = analyze_split(split_dir)
    wall = time.time() - start
    _say(f"demo done in {wall / 60:.1f} min; figure: {outputs.get('figure_png', outputs)}")
    return {"outputs": outputs, "wall_seconds": wall}
