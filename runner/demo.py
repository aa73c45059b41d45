"""The whole experiment on one split: the bases, then every transfer, then the figure.

The runs go through runner.grid.run_grid (dependency order, `jobs` at a time,
cores // jobs BLAS threads each, skip finished, resume unfinished, one summary
line per run and progress bars with ETA on stderr).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from generators.treatments import figure2_names
from runner.grid import run_grid

log = logging.getLogger(__name__)


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


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
