"""Time `import-original` on a folder the size of the authors' results/ (354 gzipped logs, 213 MB).

The authors' whole folder is not shipped, so this synthesises one once into a
cache (default /tmp/transfer-kit-bench-import): their 170 run folders, named
by their grammar, with 354 `*.o<jobid>.gz` logs in the 2014 Caffe format
(`Iteration N, lr = X`, `Iteration N, loss = X` every 20 iterations, a
`Testing net` / `Test score #0/#1` block every 1000, glog stamps about 1.75 s
per iteration apart, random values), each later job resuming from an earlier
10000-iteration snapshot (as early as it must for the log to reach its size),
so the logs overlap as restarted runs do. The logs are sized so the folder
totals about 213 MB. Then it imports the folder with
analysis.original (one process per core, `--jobs`) and prints the time.

    .venv/bin/python bench/bench_import.py [--jobs 2] [--cache DIR]
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from analysis.original import import_original

ROOT = Path(__file__).resolve().parents[1]

LOGS = 354
TOTAL_MB = 213.0
MAX_ITER = 450_000
DISPLAY, TEST_EVERY, SNAPSHOT = 20, 1000, 10_000
VERSION = 2  # of the synthetic layout: a change rebuilds the cache


def run_names() -> list[str]:
    """The authors' 170 run names, built from their grammar."""
    names = [f"half{s}{h}" for s in range(4) for h in "AB"] + ["halfnatmanA", "halfnatmanB", "netbase"]
    names += [f"nolearn_1_{n}" for n in range(1, 8)]
    names += [f"reduced-{k:04d}" for k in (1, 2, 5, 10, 25, 50, 100, 250, 500, 750, 1000, 1300)]
    pairs = {0: ("AA", "AB", "BA"), 1: ("AA", "AB", "BA"), 2: ("AA", "AB", "BA"), 3: ("AA", "AB", "BA")}
    for s, kinds in pairs.items():
        for ft in ("", "-ft") if s < 2 else ("",):
            names += [f"transfer{ft}{s}{x}{s}{y}_1_{n}" for x, y in kinds for n in range(1, 8)]
    names += [f"transfernatman{p}_1_{n}" for p in ("AB", "BA") for n in range(1, 8)]
    return sorted(names)


def _stamp(seconds: float) -> str:
    day, rest = divmod(seconds, 86400)
    month, mday = 4 + int(day) // 28, 1 + int(day) % 28
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{month:02d}{mday:02d} {int(h):02d}:{int(m):02d}:{s:09.6f}"


def synth_log(seed: int, start: int, steps: int, max_iter: int = MAX_ITER) -> bytes:
    """One gzipped 2014-format log: `steps` display steps from iteration `start` (random values)."""
    rng = np.random.default_rng(seed)
    t = 86400.0 * rng.uniform(0, 20) + 3600 * rng.uniform(0, 23)
    pid = int(rng.integers(1000, 30000))
    losses = rng.uniform(1.5, 6.9, steps)
    lines = []
    for k in range(steps):
        it = start + k * DISPLAY
        if it > max_iter:
            break
        lr = 0.01 * 0.1 ** (it // 100_000)
        if it % TEST_EVERY == 0:
            lines.append(f"I{_stamp(t)} {pid} solver.cpp:96] Iteration {it}, Testing net\n")
            t += 130 * rng.uniform(0.9, 1.1)
            acc = min(0.7, 0.6 * it / max_iter + rng.normal(0.01, 0.005) + 0.002)
            lines.append(f"I{_stamp(t)} {pid} solver.cpp:123] Test score #0: {acc:.6g}\n")
            lines.append(f"I{_stamp(t + 0.01)} {pid} solver.cpp:123] Test score #1: {6 - 4 * acc:.6g}\n")
        lines.append(f"I{_stamp(t)} {pid} solver.cpp:217] Iteration {it}, lr = {lr:g}\n")
        lines.append(f"I{_stamp(t + 0.15)} {pid} solver.cpp:74] Iteration {it}, loss = {losses[k]:.6g}\n")
        t += 35.2 * rng.uniform(0.98, 1.02)
    return gzip.compress("".join(lines).encode(), compresslevel=6)


def _write_run(job: tuple[str, int, int, int, int]) -> int:
    folder, index, logs, steps, first_job = job
    run = Path(folder)
    run.mkdir(parents=True, exist_ok=True)
    # the authors' logs average ~600 kB gzipped; at their 450000 iterations ours would be a little
    # smaller, so the synthetic runs are stretched to as many iterations as a log of that size holds
    max_iter = max(MAX_ITER, (steps - 1) * DISPLAY // TEST_EVERY * TEST_EVERY)
    (run / "imagenet_solver.prototxt").write_text(f"max_iter: {max_iter}\n")
    size, start = 0, 0
    for j in range(logs):
        data = synth_log(index * 10 + j, start, steps, max_iter)
        path = run / f"140403_000000_{run.name.split('_')[0]}.o{first_job + j}.gz"
        path.write_bytes(data)
        size += len(data)
        end = min(max_iter, start + steps * DISPLAY)  # the next job resumes from an earlier snapshot
        start = max(0, min(end - 5 * SNAPSHOT, max_iter - steps * DISPLAY)) // SNAPSHOT * SNAPSHOT
    return size


def build(cache: Path, jobs: int) -> Path:
    """Synthesise the folder into cache/results unless a complete one of this VERSION is there."""
    folder, stamp = cache / "results", cache / "complete.json"
    spec = {"version": VERSION, "logs": LOGS, "total_mb": TOTAL_MB}
    if stamp.is_file() and json.loads(stamp.read_text()).get("spec") == spec:
        return folder
    names = run_names()
    per_run = [2 + (i < LOGS - 2 * len(names)) for i in range(len(names))]
    probe = len(synth_log(0, 0, 2000)) / 2000  # gzipped bytes per display step
    steps = int(TOTAL_MB * 1e6 / LOGS / probe)
    logging.info("synthesising %d runs, %d logs, %d display steps each, into %s (once)",
                 len(names), sum(per_run), steps, folder)
    work = [(str(folder / n), i, per_run[i], steps, 200_000 + 10 * i) for i, n in enumerate(names)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        total = sum(pool.map(_write_run, work))
    stamp.write_text(json.dumps({"spec": spec, "bytes": total, "logs": sum(per_run)}))
    return folder


def main() -> int:
    """Build the folder if needed, import it, print the time."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="processes for the import (the target: 2 cores)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/transfer-kit-bench-import"),
                        help="where the synthetic folder is built once and kept")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    folder = build(args.cache, args.jobs)
    logs = sorted(folder.glob("*/*.gz"))
    mb = sum(p.stat().st_size for p in logs) / 1e6
    t0 = time.perf_counter()
    rows = import_original(folder, jobs=args.jobs)
    wall = time.perf_counter() - t0
    tests = sum(r["tests"] for r in rows)
    print(f"import-original: {len(rows)} runs, {len(logs)} gzipped logs, {mb:.0f} MB, {tests} tests "
          f"in {wall:.1f} s with {args.jobs} process(es) ({mb / wall:.1f} MB/s; target < 60 s on 2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
