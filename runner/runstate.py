"""The state of one run from its folder: finished, other settings (a folder that ran, or started, with settings other
than asked), running, failed, resumable at iteration N, not started; what make train does with each agrees.

Used by the grid's status table (runner.grid) and by the Slurm engine (runner.slurm)
to skip finished runs.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from kitcore.layout import is_finished, read_result
from runner import snapshots, supervise
from runner.finished import settings_differ
from runner.train import RunSpec


def _last_iter(log_path: Path) -> int | None:
    """The last `Iteration N` in the tail of a caffe log."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 20000))
            found = re.findall(rb"\] Iteration (\d+)", fh.read())
    except OSError:
        return None
    return int(found[-1]) if found else None


def run_state(spec: RunSpec) -> dict:
    """State of one run from its folder: finished, other settings (a folder that ran, or started, with settings
    other than `spec` asks for: make train refuses it, runner.finished.check_settings), running, failed,
    resumable at iter N, or not started; `treatment` names the run by its folder (`A3B`, a replicate `A3B.r2`)."""
    run = spec.run_dir
    row = {"treatment": run.name, "state": "not started", "detail": "", "iter": None}
    result = read_result(run)
    finished = is_finished(run)
    pid = None if finished or not run.is_dir() else supervise.lock_holder(run)
    if pid is not None:
        it = _last_iter(run / "train.log")
        return {**row, "state": "running", "iter": it, "detail": f"pid {pid}, iteration {it}"}
    if (diff := settings_differ(spec)) is not None:
        return {**row, "state": "other settings", "iter": (result or {}).get("iterations"),
                "detail": f"{'finished' if finished else 'started'} with {diff}"}
    if finished:
        score = result.get("score")
        return {**row, "state": "finished", "iter": result.get("iterations"),
                "detail": f"score {score:.4f}" if score is not None else "no test accuracy"}
    if result is not None:  # make train refuses it: redo with FORCE=1
        return {**row, "state": "failed", "detail": f"the final model {result.get('model')} is missing or differs "
                                                    "from result.json's sha256; redo: FORCE=1"}
    found = snapshots.peek_newest(run) if run.is_dir() else None
    if found:
        row.update(state=f"resumable at iter {found[0]}", iter=found[0])
    elif (run / "train.log").exists():
        row.update(state="resumable at iter 0", iter=0)
    if (run / "result.json").exists():  # unreadable: make train rebuilds it (runner.finished.rebuild_result)
        row.update(detail="result.json unreadable: make train rebuilds it from the final model and log")
    if (run / "failed.json").exists():
        error = json.loads((run / "failed.json").read_text()).get("error", "")
        row.update(state="failed", detail=f"{error[:160]} ({row['state']})")
    return row


def format_status(rows: list[dict]) -> str:
    """A table: one line per run, then counts per state."""
    width = max([10] + [len(r["treatment"]) for r in rows])  # a replicate's folder name is longer
    lines = [f"{'treatment':{width}s} {'state':24s} detail"]
    lines += [f"{r['treatment']:{width}s} {r['state']:24s} {r['detail']}".rstrip() for r in rows]
    counts: dict[str, int] = {}
    for r in rows:
        key = r["state"].split(" at iter")[0]
        counts[key] = counts.get(key, 0) + 1
    lines.append(", ".join(f"{v} {k}" for k, v in counts.items()))
    return "\n".join(lines)
