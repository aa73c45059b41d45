"""One training run: a run folder made from a treatment, then the real `caffe train`.

`<work>/<dataset>/<split>/runs/<treatment>/` (replicate r >= 1: `<treatment>.r<r>/`, kitcore.layout;
the same data, iterations and base, another solver seed) holds train_val.prototxt,
solver.prototxt, init.caffemodel (transfers), surgery.txt, run.json,
train.log, snapshots/ and, once finished, result.json. A finished run is
never redone without `force` (which moves the old folder to
`<split>/replaced/`); an unfinished one resumes from its newest whole
.solverstate (runner.snapshots; a truncated one is set aside with a warning),
and train.log continues with a `#### transfer-kit ...` line marking each
(re)start. Inputs are checked and read once first (runner.inputs.gather); the
run files come from generators.runfiles.run_files, the one decision treatment
-> net, solver, init, with the dataset's profile (kitcore.profiles) recorded
whole in run.json. Caffe runs under
runner.supervise (lock, signals -> snapshot, live iteration), a failure leaves
failed.json, and only a whole final model gets a result.json (runner.finished,
which also owns what a finished folder means: kept, refused when asked with
other settings, its unreadable result.json rebuilt). RunSpec lives in
runner.runspec and is re-exported here.
"""
from __future__ import annotations

import errno
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

from generators import netgen
from generators.runfiles import STARTS_FROM_INIT, make_init, run_files
from kitcore import atomic, layout, provenance
from kitcore.caffe_env import caffe_version, tool
from kitcore.errors import KitError
from kitcore.profiles import KIT
from runner import inputs, snapshots, supervise
from runner.finished import check_settings, diverged, finish, rebuild_result
from runner.resume import check_gpu, disk_full, resume
from runner.runspec import RunSpec as RunSpec
from runner.runspec import budget as budget  # re-exported: RunSpec's callers size runs here
from runner.runspec import iters_of

log = logging.getLogger(__name__)


def _write_once(path: Path, text: str) -> None:
    """Write a generated file, or check that an unfinished run's copy is the same."""
    if path.exists():
        if path.read_text() != text:
            raise KitError(f"{path} differs from what this command generates now",
                           "rerun with FORCE=1 (--force) to start this run again")
        return
    atomic.write_text(path, text)


def prepare(spec: RunSpec, found: inputs.RunInputs) -> dict:
    """Write the run folder's prototxt, init model and run.json from checked inputs; return run.json's content."""
    t, run, prof = spec.treatment, spec.run_dir, spec.profile
    (run / "snapshots").mkdir(parents=True, exist_ok=True)
    files = run_files(prof, t, found.num_classes, spec.seed, "../../data", iters=iters_of(spec), batch=spec.batch,
                      test_iter=spec.test_iter, val_records=found.val_records, repeat=spec.repeat)
    _write_once(run / "train_val.prototxt", netgen.to_text(files.net))
    _write_once(run / "solver.prototxt", netgen.to_text(files.solver))
    checksums = {"train_val.prototxt": atomic.sha256(run / "train_val.prototxt"),
                 "solver.prototxt": atomic.sha256(run / "solver.prototxt"),
                 "manifest.json": found.manifest_sha256}
    if files.starts_from_init:
        init = run / "init.caffemodel"
        if not init.exists() or not (run / "surgery.txt").exists():  # killed between the two: redo
            base = None
            if found.base_model is not None:
                base = (netgen.load_net(found.base_model.parent.parent / "train_val.prototxt"), found.base_model)
            audit = make_init(prof, files, t, init, base)
            atomic.write_text(run / "surgery.txt", "\n".join(audit) + "\n")
        if found.base_model is not None:
            checksums["base.caffemodel"] = found.base_sha256
        checksums["init.caffemodel"] = atomic.sha256(init)
    solver = files.solver
    record = {**t.as_dict(), "dataset": spec.dataset, "split": spec.split_dir.name,
              "seed": spec.seed, "repeat": spec.repeat, "random_seed": solver.random_seed, "max_iter": solver.max_iter,
              "base_model": str(found.base_model) if found.base_model else None, "inputs": checksums,
              "caffe": caffe_version(), "caffe_binary": tool("caffe"), "git_commit": _git_commit(),
              "command": shlex.join(sys.argv), "caffe_mode": "gpu" if spec.gpu else "cpu",
              "threads": spec.threads, "batch": spec.batch, "test_iter": list(solver.test_iter),
              "per_class": spec.per_class, "profile": prof.record(),
              "protocol_files": provenance.protocol_record(
                  prof.net_template_path(), prof.solver_template(t.protocol), KIT,
                  iters=iters_of(spec), batch=spec.batch, test_iter=spec.test_iter),
              "build": provenance.build_record(), "host": provenance.host_record(), "git_dirty": _git_dirty()}
    atomic.write_json(run / "run.json", record)
    return record


def _git_commit() -> str:
    out = subprocess.run(["git", "-C", str(KIT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def _git_dirty() -> bool | None:
    """Whether the kit's checkout has changes to tracked files (None: not a git checkout)."""
    out = subprocess.run(["git", "-C", str(KIT), "status", "--porcelain", "--untracked-files=no"],
                         capture_output=True, text=True, check=False)
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def preflight(spec: RunSpec) -> inputs.RunInputs:
    """Check the split, its data and labels, and a transfer's base model before touching the run folder;
    return what was read (the manifest, split.json and the base model are read once per start)."""
    found = inputs.gather(spec)
    if spec.gpu:
        check_gpu()
    return found


def train(spec: RunSpec, force: bool = False, on_iter=None) -> dict:
    """Run (or resume, or skip if finished) one treatment; return its result.json content.

    A run folder that ran with other settings than asked, finished or not, is an error (check_settings); a
    finished run whose result.json cannot be read gets it rebuilt from its final model and log
    (rebuild_result), or resumes when that model is not whole."""
    run = spec.run_dir
    if not force:
        check_settings(spec)  # a folder that ran (or started) with other settings: refused before anything
    if (run / "result.json").exists() and not force:
        if layout.read_result(run) is None:
            rebuilt = rebuild_result(spec)
            if rebuilt is not None:
                return rebuilt
        else:
            if not layout.is_finished(run):
                model = run / str(layout.read_result(run).get("model"))
                what = "is missing" if not model.is_file() else "differs from its sha256 in result.json"
                raise KitError(f"the final model {model} {what}", f"redo the run: {spec.make_cmd(force=True)}")
            log.debug("%s is finished; keeping it (use --force to redo)", run)
            return {**json.loads((run / "result.json").read_text()), "status": "skipped"}
    found = preflight(spec)
    if force and run.exists():
        if supervise.lock_holder(run) is not None:
            raise KitError(f"{run} is being trained by another process", "wait for it or stop it, then rerun")
        dest = spec.split_dir / "replaced" / f"{run.name}-{time.strftime('%Y%m%dT%H%M%S')}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        run.rename(dest)
        log.info("moved the old run to %s", dest)
    with supervise.run_lock(run) as lock_fd:
        (run / "failed.json").unlink(missing_ok=True)
        try:
            return _train_locked(spec, lock_fd, on_iter, found)
        except supervise.Interrupted:
            raise
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            err = disk_full(run, exc)
            _mark_failed(run, err)
            raise err from exc
        except KitError as exc:
            _mark_failed(run, exc)
            raise


def _mark_failed(run: Path, exc: KitError) -> None:
    try:
        atomic.write_json(run / "failed.json", {"error": str(exc), "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    except OSError:
        log.warning("could not write %s/failed.json", run)


def _train_locked(spec: RunSpec, lock_fd: int, on_iter, found: inputs.RunInputs) -> dict:
    run = spec.run_dir
    record = prepare(spec, found)
    found = snapshots.newest_valid(run)
    if found and found[0] >= record["max_iter"]:
        log.info("%s: snapshot %s is the last iteration; finishing without caffe", run, found[1].name)
        return finish(spec, record, 0.0, "resumed")
    start = time.time()
    try:
        status = resume(run, lock_fd, spec.threads, spec.gpu, on_iter=on_iter, name=run.name,
                        weights="init.caffemodel" if spec.treatment.kind in STARTS_FROM_INIT else None)
    except KitError as exc:  # a diverged net can crash caffe itself (NaN in max pooling: an out-of-bounds write)
        err = diverged(spec)
        if err is None:
            raise
        raise err from exc
    return finish(spec, record, time.time() - start, status)


