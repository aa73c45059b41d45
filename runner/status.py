"""`transfer-kit status`: the state of every run of a grid, from its run folders and Slurm's queue.

Each run's state comes from its folder (runner.runstate); for a grid submitted
to Slurm, the job states from squeue/scontrol (runner.slurm) are merged in.
The grid (runner.grid) and the Slurm engine import neither this module nor
each other.
"""
from __future__ import annotations

from pathlib import Path

from runner import slurm
from runner.grid import treatments
from runner.runstate import format_status, run_state
from runner.train import RunSpec

__all__ = ["status_rows", "format_status"]


def status_rows(work: Path, dataset: str, seed: int, protocol: str = "random",
                only: list[str] | None = None, repeats: int = 1, **options) -> list[dict]:
    """The state of every run of a grid, replicates r = 0..repeats-1 of each treatment, each named by its
    run folder (with Slurm job states when the grid was submitted there)."""
    specs = [RunSpec(Path(work), dataset, seed, t, repeat=r, **options)
             for t in treatments(protocol, only) for r in range(repeats)]
    rows = [run_state(s) for s in specs]
    if specs:
        jobs = slurm.job_states(specs[0].split_dir)
        for row in rows:
            slurm.merge_state(row, jobs.get(row["treatment"]))
    return rows
