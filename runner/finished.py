"""A run folder's end: its result.json written from the final model and log (finish), a diverged run's error,
a finished run asked for with other settings (settings_differ, check_settings), and an unreadable result.json
rebuilt (rebuild_result). runner.train, runner.runstate, runner.grid and runner.slurm decide alike from here.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from kitcore import atomic, provenance
from kitcore.caffe_log import parse_log, score
from kitcore.errors import KitError
from kitcore.layout import is_finished
from kitcore.profiles import KIT
from kitcore.runlog import diverged_at
from runner import snapshots, supervise
from runner.resume import disk_full, low_space
from runner.runspec import RunSpec, budget

log = logging.getLogger(__name__)


def settings_differ(spec: RunSpec, record: dict | None = None) -> str | None:
    """How the settings a run folder ran with (its run.json, or `record`) differ from those `spec` asks for:
    iterations, batch, test iterations, the net and solver templates ("iterations 300 (asked: 3000), ...");
    None when they agree, or when the folder has no readable run.json."""
    if record is None and (record := _run_json(spec.run_dir)) is None:
        return None
    t, prof = spec.treatment, spec.profile
    asked, ran = _asked(spec), _ran(spec, record)
    diffs = [f"{name} {_setting(ran[name])} (asked: {_setting(asked[name])})" for name in asked
             if ran[name] != asked[name]]
    ran_files = record.get("protocol_files") or {}
    now = provenance.protocol_record(prof.net_template_path(), prof.solver_template(t.protocol), KIT)
    for part in ("net", "solver"):
        path, digest = ran_files.get(f"{part}_template"), ran_files.get(f"{part}_sha256")
        if path is None:  # a run folder of a kit older than protocol_files
            continue
        if path != now[f"{part}_template"]:
            diffs.append(f"{part} template {path} (asked: {now[f'{part}_template']})")
        elif digest != now[f"{part}_sha256"]:
            diffs.append(f"{path} changed since it ran")
    return ", ".join(diffs) or None


def _asked(spec: RunSpec) -> dict:
    return {"iterations": budget(spec), "batch": spec.batch, "test_iter": spec.test_iter}


def _ran(spec: RunSpec, record: dict) -> dict:
    """The settings a run folder's run.json says it ran with, named as _asked names them."""
    overrides = (record.get("protocol_files") or {}).get("overrides") or {}
    return {"iterations": record.get("max_iter"), "batch": record.get("batch"),
            "test_iter": overrides.get("test_iter", spec.test_iter)}


def _setting(value) -> str:
    return "the template's" if value is None else str(value)


def _keep_hint(spec: RunSpec, record: dict) -> str:
    """How to ask for a run folder with the settings it ran with: the make settings that differ (ITERS=,
    BATCH=, TEST_ITER=; a grid, Slurm or experiment command takes them alike) and the make train command."""
    asked, ran = _asked(spec), _ran(spec, record)
    changes, words = {}, []
    if ran["iterations"] != asked["iterations"]:
        ran_files = record.get("protocol_files") or {}
        iters = ((ran_files.get("overrides") or {}).get("iters") if ran_files  # the template's when None
                 else (record.get("max_iter") or 0) // spec.treatment.budget or None)  # an older kit's folder
        changes["iters"], words = iters, [f"ITERS={iters}" if iters else "ITERS left out"]
    for name, var in (("batch", "BATCH"), ("test_iter", "TEST_ITER")):
        if ran[name] != asked[name]:
            changes[name] = ran[name]
            words.append(f"{var}={ran[name]}" if ran[name] else f"{var} left out")
    if not words:  # only a template differs: no setting brings it back
        return "keep it: ask with its settings"
    return f"keep it: ask with its settings ({', '.join(words)}), as {dataclasses.replace(spec, **changes).make_cmd()}"


def check_settings(spec: RunSpec, record: dict | None = None) -> None:
    """Raise KitError when a run folder (finished or not) ran with other settings than `spec` asks for
    (settings_differ): what differs, and the two ways out (keep it: ask with its settings; redo: FORCE=1)."""
    record = record if record is not None else _run_json(spec.run_dir)  # read once, for the diff and the hint
    if record is None or (diff := settings_differ(spec, record)) is None:
        return
    state = "finished" if is_finished(spec.run_dir, check_model=False) else "started"
    raise KitError(f"{spec.run_dir} {state} with other settings than asked: {diff}",
                   f"{_keep_hint(spec, record)}; redo it with these: {spec.make_cmd(force=True)}")


def check_runs(specs: list[RunSpec]) -> None:
    """check_settings of every run folder of `specs` that has a run.json: what a grid, a Slurm submission and an
    experiment ask before anything runs or is submitted."""
    for spec in specs:
        if (spec.run_dir / "run.json").exists():
            check_settings(spec)


def _run_json(run: Path) -> dict | None:
    try:
        return json.loads((Path(run) / "run.json").read_text())
    except (OSError, ValueError):
        return None


def rebuild_result(spec: RunSpec) -> dict | None:
    """A run whose result.json cannot be read: set that file aside (result.json.unreadable) and rebuild it from
    the final model and train.log, run.json kept as it is; None when the final model is not whole (or run.json
    cannot be read either): the run then resumes from its newest whole snapshot, as an interrupted one."""
    run = spec.run_dir
    record = _run_json(run)
    with supervise.run_lock(run):
        (run / "result.json").replace(run / "result.json.unreadable")
        log.warning("%s/result.json could not be read; set aside as result.json.unreadable", run)
        if record is None:
            return None
        model = run / "snapshots" / f"snap_iter_{record['max_iter']}.caffemodel"
        if not model.is_file() or snapshots.model_problem(model, snapshots.expected_blobs(run / "train_val.prototxt")):
            log.warning("%s is not whole: resuming the run from its newest whole snapshot", model)
            return None
        result = finish(spec, record, 0.0, "rebuilt")
        log.warning("%s/result.json rebuilt from %s and train.log", run, model.name)
        return result


def diverged(spec: RunSpec, parsed=None) -> KitError | None:
    """The error of a run whose loss became NaN (its best tests would come from before the divergence), or None."""
    log_path = spec.run_dir / "train.log"
    if parsed is None and not log_path.is_file():
        return None
    it = diverged_at(parsed if parsed is not None else parse_log([log_path]))
    if it is None:
        return None
    solver = spec.profile.solver_template(spec.treatment.protocol).relative_to(KIT)
    return KitError(f"{spec.run_dir.name} diverged: its loss is NaN from iteration {it} ({log_path})",
                    f"the learning rate of {solver} is too high for this net and data: lower base_lr there, "
                    f"then {spec.make_cmd(force=True)} (runs made with the old file then count as other settings: "
                    "redo them too, with FORCE=1)")


def finish(spec: RunSpec, record: dict, seconds: float, status: str) -> dict:
    run = spec.run_dir
    model = run / "snapshots" / f"snap_iter_{record['max_iter']}.caffemodel"
    if not model.is_file():
        raise KitError(f"caffe train ended without {model}", f"read {run / 'train.log'}")
    problem = snapshots.model_problem(model, snapshots.expected_blobs(run / "train_val.prototxt"))
    if problem:
        if low_space(run):
            raise disk_full(run, problem)
        raise KitError(f"the final model is incomplete: {problem}", "rerun the same command to resume")
    parsed = parse_log([run / "train.log"])
    if (err := diverged(spec, parsed)) is not None:
        raise err
    accs = [row["accuracy"] for row in parsed.test if row.get("accuracy") is not None]
    log_text = (run / "train.log").read_text(errors="replace")
    starts = sum(1 for line in log_text.splitlines() if line.startswith("#### transfer-kit ") and " pid " in line)
    result = {"treatment": spec.treatment.name, "model": str(model.relative_to(run)),
              "model_sha256": atomic.sha256(model), "score": score(accs) if accs else None,
              "final_accuracy": accs[-1] if accs else None, "iterations": record["max_iter"],
              "wall_seconds": round(parsed.active_seconds or seconds, 1), "caffe_starts": starts}
    atomic.write_json(run / "result.json", result)
    return {**result, "status": status}
