"""The authors' published `results/` folder (yosinski/convnet_transfer) -> the kit's results table.

Each run folder's name follows the authors' grammar, read by
kitcore/authors_names.py (generators/authors.py reads it too: `half0A` ->
split `random0` `baseA`, `transfer-ft0A0B_1_3` ->
`A3B+`, `transfernatmanAB_1_3` -> split `natman` `A3B` with A natural,
`nolearn_1_3` -> split `all` `randfrozen3`, `netbase` -> `all` `base`,
`reduced-0010` -> `reduced10` `base`). Each run becomes a row with the same
columns as analysis.results.ROW_COLUMNS (plus `original_run`, `log_files`
and, for reduced-data runs, `images_per_class`). A folder whose name is not
one of the authors' (e.g. `reduced-0003`, `transfernatmanAA_1_1`) is left
out with a warning.

A run's logs are its `*.o<jobid>` files (gzipped or not), parsed as one run in
job-id order, the later log winning where they overlap. A run is `finished`
when it reached the `max_iter` of its `imagenet_solver.prototxt` (any test at
all when that file is missing); its lr steps give `best_after_step` (empty
without it). Runs are parsed in parallel processes.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from analysis.results import run_row, write_results_csv
from kitcore.authors_names import parse_authors_name
from kitcore.caffe_log import parse_log, write_csvs
from kitcore.errors import KitError

log = logging.getLogger(__name__)

DATASET = "imagenet"
_LOG = re.compile(r".+\.o(\d+)(?:\.gz)?")
_MAX_ITER = re.compile(r"^\s*max_iter\s*:\s*(\d+)", re.MULTILINE)


def parse_run_name(name: str) -> dict | None:
    """The run.json-like meaning of one of the authors' run names (None: not one of theirs)."""
    read = parse_authors_name(name)
    if read is None:
        return None
    t = read.treatment
    meta = {"dataset": DATASET, "original_run": name, "split": read.split, "treatment": t.name, "kind": t.kind,
            "source": t.source, "target": t.target, "n": t.n, "finetune": t.finetune}
    return meta if read.images_per_class is None else {**meta, "images_per_class": read.images_per_class}


def run_logs(run_dir: Path) -> list[Path]:
    """The run's `*.o<jobid>[.gz]` logs in job-id order."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).iterdir() if (m := _LOG.fullmatch(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def _max_iter(run_dir: Path) -> int | None:
    solver = run_dir / "imagenet_solver.prototxt"
    if not solver.is_file():
        return None
    m = _MAX_ITER.search(solver.read_text(errors="replace"))
    return int(m.group(1)) if m else None


def import_run(run_dir: Path, meta: dict, curves_dir: Path | None = None) -> dict:
    """Parse one of the authors' run folders into a results row (and curve CSVs when asked)."""
    run_dir = Path(run_dir)
    logs = run_logs(run_dir)
    parsed = parse_log(logs)
    if curves_dir is not None:
        (Path(curves_dir) / run_dir.name).mkdir(parents=True, exist_ok=True)
        write_csvs(parsed, Path(curves_dir) / run_dir.name / "curve")
    max_iter = _max_iter(run_dir)
    reached = parsed.last_iteration or 0
    finished = reached >= max_iter if max_iter is not None else bool(parsed.test_accuracies)
    row = run_row(meta, parsed, run_dir, finished, solver=run_dir / "imagenet_solver.prototxt")
    extra = {k: meta[k] for k in ("original_run", "images_per_class") if k in meta}
    return {**row, **extra, "log_files": len(logs)}


def _import_one(job: tuple[str, dict, str | None]) -> dict:
    run_dir, meta, curves = job
    return import_run(Path(run_dir), meta, Path(curves) if curves else None)


def find_runs(path: Path) -> list[tuple[Path, dict]]:
    """The run folders under `path` whose names follow the authors' grammar, with their meaning."""
    path = Path(path)
    if not path.is_dir():
        raise KitError(f"{path} is not a folder", "pass the authors' results/ folder (one sub-folder per run)")
    runs, unknown = [], []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        meta = parse_run_name(sub.name)
        if meta is None:
            unknown.append(sub.name)
        elif not run_logs(sub):
            log.warning("%s has no *.o<jobid> logs; left out", sub)
        else:
            runs.append((sub, meta))
    if unknown:
        log.warning("%d folder(s) not in the authors' run-name grammar, left out: %s", len(unknown),
                    ", ".join(unknown[:10]))
    if not runs:
        raise KitError(f"no run folders with logs under {path}",
                       "pass the authors' results/ folder: half0A/, transfer0A0B_1_3/, ... "
                       "each with *.o<jobid>.gz logs")
    return runs


def import_original(path: Path, jobs: int | None = None, curves_dir: Path | None = None) -> list[dict]:
    """Import every run under `path` (the authors' results/ layout) into results rows, in name order."""
    runs = find_runs(path)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(runs)))
    work = [(str(d), meta, str(curves_dir) if curves_dir else None) for d, meta in runs]
    # biggest first so that the processes finish together
    order = sorted(range(len(work)), key=lambda i: -sum(p.stat().st_size for p in run_logs(runs[i][0])))
    rows: dict[int, dict] = {}
    from tqdm import tqdm
    with tqdm(total=len(work), desc="import", unit="run", file=sys.stderr, disable=None) as bar:
        if jobs == 1:
            for i in order:
                rows[i] = _import_one(work[i])
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for i, row in zip(order, pool.map(_import_one, [work[i] for i in order])):
                    rows[i] = row
                    bar.update()
    out = [rows[i] for i in range(len(work))]
    log.info("imported %d run(s) from %s, %d finished", len(out), path, sum(r["finished"] for r in out))
    return out


def import_to_csv(path: Path, out: Path, jobs: int | None = None, curves_dir: Path | None = None) -> Path:
    """Import the authors' results/ folder and write it as a results table CSV; return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_results_csv(import_original(path, jobs=jobs, curves_dir=curves_dir), out)
