"""`make bench` (h): every reported number from the run records alone, timed (goal: under 60 s on 2 cores).

Runs `transfer-kit plots --records results/fa20 --out TMP` as a user would (a
fresh process: Python, matplotlib, every log parsed, every figure drawn) REPS
times and prints the records' count and size and the wall time of each run;
the figure is the slowest. Nothing here is a pass/fail test.
Usage: python bench/bench_records.py [--records results/fa20] [--reps 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis.records import record_dirs

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Time the report from the records; print one line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=Path, default=ROOT / "results" / "fa20", help="records folder")
    p.add_argument("--reps", type=int, default=3, help="times to run the report")
    args = p.parse_args()
    runs = record_dirs(args.records)
    if not runs:
        sys.exit(f"bench: no run records under {args.records}; fix: make publish WORK=dir first")
    size = sum(f.stat().st_size for f in args.records.rglob("*") if f.is_file())
    times = []
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "runner.cli", "plots", "--records", str(args.records),
                                   "--out", out, "--work", out], capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"bench: plots --records failed:\n{proc.stderr[-3000:]}")
    print(f"(h) report from the records alone ({len(runs)} runs, {size / 1e6:.2f} MB in {args.records}): "
          f"{', '.join(f'{t:.1f}' for t in times)} s; slowest {max(times):.1f} s (goal <= 60 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
