"""What an experiment costs, said before it is spent: its size and, where measured, its GPU-hours.

The size: the CPU steps, grids and runs of a plan (runner.experiment), how many runs are left to train,
and the iterations (runner.train.budget: ITERS, the reduced grid's schedule, or the solver's max_iter).

The GPU-hours come from a make gpu-check measurement (bench/gpu_check.sh's OUT/gpu_check.json; make
gpu-check's OUT defaults to WORK/gpu-check, GPU_CHECK= names another file or folder): its `time` stage
times the paper's CaffeNet with `caffe time -gpu 0` (baseB's forward-backward at the train batch, its TEST
net's forward). A dataset whose profile trains with that net's solver
(the paper's CaffeNet: ImageNet, a user's NET=caffenet dataset) is projected per run: its iterations x
baseB's forward-backward + its tests (iterations // test_interval) x test_iter x the test forward. Every
run at baseB's step time is an upper bound: frozen layers skip their backward (the measurement's A7B/baseB
ratio says by how much at n = 7). Data loading, the solver's update and snapshots are left out, as in
gpu_check's own projection of one paper run. A dataset trained with the FA-20 net's solver (FA-20, a user's
NET=small dataset) is projected from the check's FA-20 baseB run on the GPU (its cpu_vs_gpu stage: iterations
per second, its tests included; measured at 28x28). Without a measurement the line says so and names the
command that makes one; for any other net, that make gpu-check does not time it.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from generators import netgen
from kitcore.layout import is_finished
from kitcore.profiles import profile
from runner.experiment import Plan
from runner.train import RunSpec, budget

MEASUREMENT = "gpu_check.json"
TIMED = "solvers/caffenet_solver.prototxt"  # the paper's CaffeNet, which make gpu-check times (bench/gpu_pack.py)
SMALL = "solvers/fa20_solver.prototxt"  # the FA-20 net, which make gpu-check trains on the GPU (its baseB)


def measurement_file(given: Path | None, work: Path) -> Path:
    """The gpu_check.json to read: GPU_CHECK (a file, or make gpu-check's OUT folder), else WORK/gpu-check's."""
    where = Path(given) if given is not None else Path(work) / "gpu-check"
    return where if where.suffix == ".json" else where / MEASUREMENT


@cache
def _solver(path: Path):
    return netgen.load_solver(path)


def size_lines(p: Plan, measured: Path) -> list[str]:
    """The experiment's size (steps, grids, runs, iterations; what is left) and its projected GPU-hours."""
    specs = [s for g in p.grids for s in g.specs]
    iters = {s: budget(s) for s in specs}
    left = [s for s in specs if not is_finished(s.run_dir, check_model=False)]
    steps = len(p.steps) + (p.figures is not None)
    return [f"size: {steps} CPU step(s), {len(p.grids)} grid(s), {len(specs)} runs ({len(left)} left to train), "
            f"{sum(iters.values()):,} iterations ({sum(iters[s] for s in left):,} left)",
            gpu_hours(p, iters, left, measured)]


def _per_run_ms(spec: RunSpec, iters: int, fb_ms: float, test_ms: float) -> float:
    """A run's projected GPU milliseconds: its steps at baseB's forward-backward, its tests' forward passes."""
    solver = _solver(spec.profile.solver_template(spec.treatment.protocol))
    tests = iters // solver.test_interval if solver.test_interval else 0
    return iters * fb_ms + tests * (spec.test_iter or solver.test_iter[0]) * test_ms


def _stage(m: dict, name: str) -> str:
    """`status reason` of one stage of a gpu_check.json ('absent' when it has none)."""
    stage = next((s for s in m.get("stages", []) if s.get("name") == name), {})
    return f"{stage.get('status', 'absent')} {stage.get('reason', '')}".rstrip()


def gpu_hours(p: Plan, iters: dict[RunSpec, int], left: list[RunSpec], path: Path) -> str:
    """One line: the projected GPU-hours, or why there are none and the command that measures them."""
    d = p.definition
    solver = profile(d.dataset).solvers.get("*")
    if solver not in (TIMED, SMALL):
        return (f"GPU-hours: not projected: make gpu-check times the paper's CaffeNet ({TIMED}) and trains the FA-20 "
                f"net ({SMALL}); {d.dataset} trains with {solver}")
    measure = (f"measure on a GPU node of the cluster's kind: make gpu-pack, then there make gpu-check "
               f"PACK=gpu-pack OUT={path.parent} (or name its file: GPU_CHECK=path/{MEASUREMENT})")
    try:
        m = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return f"GPU-hours: not projected: no make gpu-check measurement at {path}; {measure}"
    gpu = ((m.get("versions") or {}).get("gpu") or [{}])[0].get("name") or "the GPU it ran on"
    if d.batch:
        return f"GPU-hours: not projected for a toy batch ({d.batch}): make gpu-check timed the template's"
    if solver == SMALL:  # the check's FA-20 baseB on the GPU: iterations per second, its tests included
        rate = (((m.get("cpu_vs_gpu") or {}).get("runs") or {}).get("gpu_kit") or {}).get("iters_per_s")
        if not rate:
            return (f"GPU-hours: not projected: {path} holds no GPU run of the FA-20 net (its cpu_vs_gpu stage: "
                    f"{_stage(m, 'cpu_vs_gpu')}); {measure}")
        total, rest = sum(iters.values()) / rate / 3600, sum(iters[s] for s in left) / rate / 3600
        return (f"GPU-hours: {total:,.1f} projected for the {len(iters)} runs ({rest:,.1f} for the {len(left)} left) "
                f"on {gpu}, from {path} (the FA-20 net, 28x28, at {rate:,.0f} iterations/s with its tests, as make "
                "gpu-check's baseB ran); start-up, surgery and snapshots left out")
    t = m.get("time") or {}
    fb = (t.get("baseB") or {}).get("forward_backward_ms")
    if not fb:
        return f"GPU-hours: not projected: {path} holds no GPU timing (its time stage: {_stage(m, 'time')}); {measure}"
    test_ms = (t.get("projection") or {}).get("test_forward_ms") or t["baseB_test_phase"]["forward_ms"]
    hours = {s: _per_run_ms(s, n, fb, test_ms) / 3.6e6 for s, n in iters.items()}
    ratio = t.get("a7b_over_baseb")
    return (f"GPU-hours: {sum(hours.values()):,.0f} projected for the {len(hours)} runs "
            f"({sum(hours[s] for s in left):,.0f} for the {len(left)} left) on {gpu}, from {path} (baseB "
            f"forward-backward {fb:.1f} ms at batch {t['paper_solver']['timed_train_batch']}, test forward "
            f"{test_ms:.1f} ms); every run at baseB's step time, an upper bound: frozen layers skip their backward"
            + (f" (A7B/baseB {ratio:.2f})" if ratio else "") + "; data loading, updates and snapshots left out")
