"""A split's runs, from their logs and run.json, as one results table (and the figure).

`collect_runs(split_dir)` turns every `split_dir/runs/<treatment>/` that has a
`run.json` and a `train.log` into one row (see ROW_COLUMNS). It reads only
the logs and the run metadata (run.json; "finished" is kitcore.layout.is_finished
without the model's hash), never the generators.

Log segments of a run, parsed as one run in this order: `train.log.1`,
`train.log.2`, ... (earlier segments moved aside, numeric order, optionally
gzipped: `train.log.3.gz`), then `train.log` (the current one; the runner
appends each resume to it after a `#### ...` line). Later rows win.

`repeat` is the run's replicate number r (run.json's; 0 when it has none, as
every run before replicates): replicate r >= 1 of a treatment lies in
`runs/<treatment>.r<r>/`, and its row pools with the treatment's other rows.

Two columns check where a run's score comes from (the paper's controls, see
analysis.findings.controls): `plateau_pp`, the mean of the last 3 test
accuracies minus that of the 3 before them, in percentage points (nan with
fewer than 6 tests), and `best_after_step`, how many of the tests `score`
averages come after the solver's last learning-rate step (read from the run
folder's `solver.prototxt` as text; empty without one, or for an lr_policy
other than "step" and "multistep", or when no step falls before max_iter).

Each run's curves go beside its log as `curve.train.csv` and `curve.test.csv`
(BVLC parse_log columns); they are derived files, rewritten only when missing
or older than the newest log segment.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path

from kitcore import layout
from kitcore.atomic import write_json
from kitcore.caffe_log import SCORE_TOP, ParsedLog, best_indices, parse_log, score, write_csv_atomic, write_csvs
from kitcore.errors import KitError
from kitcore.layout import is_finished, run_name
from kitcore.runlog import diverged_at, log_segments

log = logging.getLogger(__name__)

ROW_COLUMNS = ("dataset", "split", "treatment", "repeat", "kind", "source", "target", "n", "finetuned", "budget",
               "score", "final_accuracy", "last10", "iterations", "tests", "wall_seconds", "active_seconds",
               "skipped_lines", "finished", "plateau_pp", "best_after_step", "diverged_at")
CURVE_PREFIX = "curve"  # runs/<t>/curve.train.csv, runs/<t>/curve.test.csv
_TRAIN_FIRST = "train some first: make train TREATMENT=baseA"
PLATEAU_TESTS = 3  # plateau_pp: the last 3 tests against the 3 before them
_FIELD = re.compile(r"""\s*(\w+)\s*:\s*("[^"]*"|'[^']*'|[^\s{}#"']+)""")


def _read_run_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KitError(f"{path} is not valid JSON ({exc})",
                       f"move {path.parent} aside and train that treatment again") from exc
    if not isinstance(meta, dict):
        raise KitError(f"{path} is not a JSON object", f"move {path.parent} aside and train it again")
    return meta


def _write_curves(run_dir: Path, parsed: ParsedLog, segments: list[Path]) -> None:
    newest = max(p.stat().st_mtime for p in segments)
    targets = [run_dir / f"{CURVE_PREFIX}.{kind}.csv" for kind in ("train", "test")]
    if all(t.is_file() and t.stat().st_mtime >= newest for t in targets):
        return
    write_csvs(parsed, run_dir / CURVE_PREFIX)


def solver_fields(text: str) -> dict[str, list[str]]:
    """The top-level `key: value` fields of a solver prototxt (text format), each key's values in order."""
    fields: dict[str, list[str]] = {}
    depth = 0
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        if depth == 0 and (m := _FIELD.match(line)):
            fields.setdefault(m[1], []).append(m[2].strip("\"'"))
        depth += line.count("{") - line.count("}")
    return fields


def last_lr_step(solver: Path | str) -> int | None:
    """The last iteration below max_iter at which a "step" or "multistep" solver lowers the lr (None: none);
    `solver` is a prototxt file or, as a str, its text."""
    if isinstance(solver, str):
        text = solver
    elif Path(solver).is_file():
        text = Path(solver).read_text(errors="replace")
    else:
        return None
    fields = solver_fields(text)
    policy = (fields.get("lr_policy") or [None])[-1]
    if policy not in ("step", "multistep"):
        return None
    try:
        max_iter = int(fields["max_iter"][-1])
        if policy == "step":
            stepsize = int(fields["stepsize"][-1])
            steps = [(max_iter - 1) // stepsize * stepsize] if stepsize > 0 else []
        else:
            steps = [int(v) for v in fields.get("stepvalue", [])]
    except (KeyError, ValueError):
        log.warning("%s: lr_policy %s without a max_iter or step this can read; best_after_step left empty",
                    solver, policy)
        return None
    steps = [s for s in steps if 0 < s < max_iter]
    return max(steps) if steps else None


def plateau_pp(accuracies: list[float]) -> float:
    """100 * (mean of the last 3 test accuracies - mean of the 3 before them); nan with fewer than 6."""
    k = PLATEAU_TESTS
    if len(accuracies) < 2 * k:
        return math.nan
    return 100 * (sum(accuracies[-k:]) - sum(accuracies[-2 * k:-k])) / k


def best_after_step(parsed: ParsedLog, step: int | None) -> int | None:
    """How many of the tests `score` averages lie after iteration `step` (None: no step, or no tests)."""
    tests = [row for row in parsed.test if "accuracy" in row]
    best = best_indices([row["accuracy"] for row in tests])
    if step is None or not best:
        return None
    return sum(tests[i]["NumIters"] > step for i in best)


def run_row(meta: dict, parsed: ParsedLog, run_dir: Path, finished: bool, solver: Path | str | None = None) -> dict:
    """One results row from a run's run.json, its parsed logs and its solver (a file, or its text; default
    run_dir/solver.prototxt)."""
    split_dir = run_dir.parent.parent
    accs = parsed.test_accuracies
    step = last_lr_step(solver if solver is not None else run_dir / "solver.prototxt")
    return {"dataset": meta.get("dataset", split_dir.parent.name),
            "split": meta.get("split", split_dir.name),
            "treatment": meta.get("treatment", run_dir.name), "repeat": int(meta.get("repeat") or 0),
            "kind": meta.get("kind"), "source": meta.get("source"), "target": meta.get("target"),
            "n": int(meta.get("n") or 0), "finetuned": bool(meta.get("finetune", False)),
            "budget": int(meta.get("budget") or 1),
            "score": score(accs), "final_accuracy": accs[-1] if accs else math.nan,
            "last10": sum(accs[-SCORE_TOP:]) / len(accs[-SCORE_TOP:]) if accs else math.nan,
            "iterations": parsed.last_iteration, "tests": len(accs),
            "wall_seconds": parsed.wall_seconds, "active_seconds": parsed.active_seconds,
            "skipped_lines": parsed.skipped_lines, "finished": finished,
            "plateau_pp": plateau_pp(accs), "best_after_step": best_after_step(parsed, step),
            "diverged_at": diverged_at(parsed)}


def collect_runs(split_dir: Path) -> list[dict]:
    """Parse every run under split_dir/runs into one row each (sorted by folder name)."""
    runs = Path(split_dir) / "runs"
    if not runs.is_dir():
        return []
    rows = []
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        if not (run_dir / "run.json").is_file() or not (run_dir / "train.log").is_file():
            log.info("%s has no run.json or train.log yet; left out", run_dir)
            continue
        meta = _read_run_json(run_dir / "run.json")
        segments = log_segments(run_dir)
        parsed = parse_log(segments)
        _write_curves(run_dir, parsed, segments)
        row = run_row(meta, parsed, run_dir, is_finished(run_dir, check_model=False))
        rows.append({**row, "protocol_key": (meta.get("protocol_files") or {}).get("key")})
    log.info("%d run(s) under %s, %d finished", len(rows), runs, sum(r["finished"] for r in rows))
    return rows


def write_results_csv(rows: list[dict], path: Path) -> Path:
    """Write the rows as CSV (ROW_COLUMNS first, then any other keys) atomically; return path."""
    extra = [k for row in rows for k in row if k not in ROW_COLUMNS]
    header = [*ROW_COLUMNS, *dict.fromkeys(extra)]
    write_csv_atomic(Path(path), header, rows)
    return Path(path)


_INT = ("n", "repeat", "budget", "iterations", "tests", "skipped_lines", "log_files", "images_per_class",
        "best_after_step",
        "diverged_at")
_FLOAT = ("score", "final_accuracy", "last10", "wall_seconds", "active_seconds", "plateau_pp")
_BOOL = ("finetuned", "finished")


def _typed(key: str, text: str):
    if text == "":
        return math.nan if key in _FLOAT else None
    if key in _INT:
        return int(float(text))
    if key in _FLOAT:
        return float(text)
    if key in _BOOL:
        return text.strip().lower() in ("true", "1", "yes")
    return text


def read_results_csv(path: Path) -> list[dict]:
    """Read a results table (ours or an imported one) back into typed rows."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"results table {path} does not exist",
                       "pass a CSV written by `make plots` or `transfer-kit import-original`")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [k for k in ("split", "kind", "source", "target", "n", "finetuned", "score")
                   if k not in (reader.fieldnames or [])]
        if missing:
            raise KitError(f"{path} is not a results table (no column {', '.join(missing)})",
                           "pass a CSV written by `make plots` or `transfer-kit import-original`")
        try:
            return [{k: _typed(k, v or "") for k, v in row.items()} for row in reader]
        except ValueError as exc:
            raise KitError(f"{path} has a bad value ({exc})", "regenerate it with the kit") from exc



def split_classes(split_dir: Path) -> dict[str, list[str]]:
    """The class names of each half of a split (split.json's `class_names`; {} when it has none)."""
    try:
        names = json.loads((Path(split_dir) / "split.json").read_text()).get("class_names")
    except (OSError, ValueError):
        return {}
    return {half: [str(n) for n in v] for half, v in names.items()} if isinstance(names, dict) else {}


POOLED_PROTOCOLS = ("random", "natman", "whole")  # the protocols Figures 2, 3 and Table 1 draw side by side


def check_one_setting(rows: list[dict], allow_mixed: bool = False) -> None:
    """Raise KitError when runs that the figures pool (the random, natman and whole splits; each other split on
    its own, its runs on a cut half apart from the others, as runner.publish does) ran with different protocol
    settings (run.json's protocol key: templates, iterations, batch, test iterations), unless allow_mixed: the
    work folder's counterpart of analysis.records.check_pooled."""
    groups: dict[str, dict] = {}
    for row in rows:
        split = str(row.get("split"))
        try:
            protocol = layout.split_protocol(split)[0]
        except KitError:
            protocol = None
        if protocol in POOLED_PROTOCOLS:
            where = "the random, natman and whole splits"
        else:  # a half cut to k images has its own schedule (small: baseB, the transfers; not baseA): as publish
            cut = protocol is not None and bool(layout.cut_halves(protocol, [row.get("target")]))
            where = f"{split}{' (runs on its cut half)' if cut else ''}"
        groups.setdefault(where, {}).setdefault(row.get("protocol_key"), []).append(row)
    for where, by_key in groups.items():
        if len(by_key) > 1 and not allow_mixed:
            seen = "; ".join(f"{len(rs)} like {rs[0]['split']}/{run_name(rs[0]['treatment'], rs[0]['repeat'])} "
                             f"({rs[0].get('iterations')} iterations)" for rs in by_key.values())
            raise KitError(f"the runs of {where} ran with {len(by_key)} different settings: {seen}",
                           "retrain the odd ones with the same ITERS (FORCE=1), plot another WORK, or pool them "
                           "anyway with MIXED=1 (--allow-mixed)")


def analyze_split(split_dir: Path, original: Path | None = None, allow_mixed: bool = False) -> dict:
    """Collect the split's runs; write results/results.csv and every figure and table (analysis.figures).

    results.csv holds this split's rows and those of the dataset's other
    splits: other random seeds (the spread in Figure 2 and Table 1), `natman`
    and `all` (the controls of Figure 3); the figures are drawn from it alone,
    plus this split's curve CSVs. `original`: an
    imported authors' table, drawn as a hollow overlay (and its own Table 1). Runs of other settings are
    refused (check_one_setting) unless allow_mixed. results/outputs.json, written last, names every output
    and what is absent: its presence says the figures are complete (make experiment's figures step is
    finished when it is newer than every run).
    """
    from analysis.figures import write_figures  # matplotlib is slow to import
    split_dir = Path(split_dir)
    original_rows = read_results_csv(original) if original is not None else None
    rows = collect_runs(split_dir)
    if not rows:
        raise KitError(f"no runs under {split_dir / 'runs'}", _TRAIN_FIRST)
    siblings = sorted(p for p in split_dir.parent.iterdir()
                      if p != split_dir and (p / "runs").is_dir())
    others = [row for sib in siblings for row in collect_runs(sib)]
    check_one_setting(rows + others, allow_mixed)
    out = split_dir / "results"
    out.mkdir(parents=True, exist_ok=True)
    results_csv = write_results_csv(rows + others, out / "results.csv")
    names = [run_name(row["treatment"], row["repeat"]) for row in rows]  # a replicate's curves are its own
    curves = [(name, split_dir / "runs" / name) for name in names]
    classes = {p.name: split_classes(p) for p in [split_dir] + siblings}
    figures = write_figures(read_results_csv(results_csv), out, original=original_rows, curves=curves,
                            where=split_dir / "runs", classes=classes)
    outputs = {"results_csv": results_csv, **figures}
    record = {k: (v if k == "absent" else str(v)) for k, v in outputs.items()}
    return {**outputs, "outputs_json": write_json(out / "outputs.json", record)}
