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
failed.json, and only a whole final model gets a result.json.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from generators import netgen
from generators.runfiles import STARTS_FROM_INIT, cut_iters, make_init, run_files
from kitcore import atomic, layout, provenance
from kitcore.caffe_env import caffe_version, tool
from kitcore.caffe_log import parse_log, score
from kitcore.errors import KitError
from kitcore.profiles import KIT, Profile, profile
from kitcore.runlog import diverged_at
from kitcore.treatments import Treatment
from runner import inputs, snapshots, supervise
from runner.resume import check_gpu, disk_full, low_space, resume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """What one run needs: the split folder, the treatment and the budget."""

    work: Path
    dataset: str
    seed: int
    treatment: Treatment
    iters: int | None = None
    threads: int | None = None
    gpu: bool = False
    per_class: int | None = None  # protocols reduced, small: k train images per class (reduced{k}, small{s}k{k})
    batch: int | None = None  # train and val batch instead of the template's (toy runs of the paper's net)
    test_iter: int | None = None  # test batches per test instead of the profile's policy
    repeat: int = 0  # replicate r: runs/<treatment>.r<r>, solver seed + 1000 * r (0: the run as it always was)
    mix: int | None = None  # protocol mix: m, the classes swapped between natman's halves (mix{s}m{m})

    @property
    def profile(self) -> Profile:
        """The dataset's profile (kitcore.profiles)."""
        return profile(self.dataset)

    @property
    def split_dir(self) -> Path:
        """Folder of the split the run trains on."""
        name = layout.split_name(self.treatment.protocol, self.seed, self.per_class, self.mix)
        return layout.split_dir(Path(self.work), self.dataset, name)

    @property
    def run_dir(self) -> Path:
        """The run folder (`<treatment>`, or `<treatment>.r<r>` for replicate r >= 1)."""
        return layout.run_dir(self.split_dir, self.treatment.name, self.repeat)

    def cli_flags(self) -> list[str]:
        """The `transfer-kit train` options that select this run's split and budget (all but --treatment and
        --threads): what a Slurm job passes to run it."""
        flags = ["--work", str(Path(self.work).resolve()), "--dataset", self.dataset, "--seed", str(self.seed),
                 "--protocol", self.treatment.protocol]
        for option, value in (("--iters", self.iters), ("--per-class", self.per_class), ("--batch", self.batch),
                              ("--test-iter", self.test_iter), ("--repeat", self.repeat)):
            flags += [option, str(value)] if value else []
        flags += ["--mix", str(self.mix)] if self.mix is not None else []
        return flags + (["--gpu"] if self.gpu else [])

    def make_cmd(self, treatment: str | None = None, force: bool = False) -> str:
        """The make command that runs this run (treatment None: with its REPEAT), or the r = 0 run of
        `treatment` (a base), on this run's split (same dataset, protocol, seed, k) with this run's settings
        (ITERS, MODE, WORK)."""
        return layout.train_command(treatment or self.treatment.name, self.dataset, self.treatment.protocol,
                                    self.seed, self.per_class, force=force,
                                    repeat=self.repeat if treatment is None else 0, iters=self.iters,
                                    gpu=self.gpu, work=self.work, mix=self.mix)


def iters_of(spec: RunSpec) -> int | None:
    """The iteration budget a run overrides its solver template's with: its `iters`, else the schedule of a run
    on a half cut to k images per class (generators.runfiles.cut_iters); None: the template's."""
    return spec.iters or cut_iters(spec.profile, spec.treatment, spec.per_class)


def budget(spec: RunSpec) -> int:
    """Iterations of one run: iters_of, or its solver template's max_iter, times the treatment's budget (baseB2x)."""
    template = netgen.load_solver(spec.profile.solver_template(spec.treatment.protocol))
    return spec.treatment.budget * (iters_of(spec) or template.max_iter)


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


def settings_differ(spec: RunSpec, record: dict | None = None) -> str | None:
    """How the settings a run folder ran with (its run.json, or `record`) differ from those `spec` asks for:
    iterations, batch, test iterations, the net and solver templates ("iterations 300 (asked: 3000), ...");
    None when they agree, or when the folder has no readable run.json."""
    if record is None:
        try:
            record = json.loads((spec.run_dir / "run.json").read_text())
        except (OSError, ValueError):
            return None
    t, prof = spec.treatment, spec.profile
    asked = {"iterations": budget(spec), "batch": spec.batch, "test_iter": spec.test_iter}
    ran_files = record.get("protocol_files") or {}
    ran = {"iterations": record.get("max_iter"), "batch": record.get("batch"),
           "test_iter": (ran_files.get("overrides") or {}).get("test_iter", spec.test_iter)}
    diffs = [f"{name} {_setting(ran[name])} (asked: {_setting(asked[name])})" for name in asked
             if ran[name] != asked[name]]
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


def _setting(value) -> str:
    return "the template's" if value is None else str(value)


def check_settings(spec: RunSpec, record: dict | None = None) -> None:
    """Raise KitError when a finished run ran with other settings than `spec` asks for (settings_differ): what
    differs, and the two ways out (keep it: ask with its settings; redo: FORCE=1)."""
    diff = settings_differ(spec, record)
    if diff is None:
        return
    ran_iters = (record or _run_json(spec.run_dir) or {}).get("protocol_files", {}).get("overrides", {}).get("iters")
    keep = dataclasses.replace(spec, iters=ran_iters).make_cmd() if "iterations" in diff else None
    raise KitError(f"{spec.run_dir} finished with other settings than asked: {diff}",
                   (f"keep it: {keep}; " if keep else "keep it: ask with its settings; ")
                   + f"redo it with these: {spec.make_cmd(force=True)}")


def _run_json(run: Path) -> dict | None:
    try:
        return json.loads((Path(run) / "run.json").read_text())
    except (OSError, ValueError):
        return None


def train(spec: RunSpec, force: bool = False, on_iter=None) -> dict:
    """Run (or resume, or skip if finished) one treatment; return its result.json content.

    A finished run asked for with other settings is an error (check_settings); one whose result.json cannot
    be read gets it rebuilt from its final model and log (rebuild_result), or resumes when that model is not
    whole."""
    run = spec.run_dir
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
            check_settings(spec)
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


def rebuild_result(spec: RunSpec) -> dict | None:
    """A run whose result.json cannot be read: set that file aside (result.json.unreadable) and rebuild it from
    the final model and train.log, run.json kept as it is; None when the final model is not whole (or run.json
    cannot be read either): the run then resumes from its newest whole snapshot, as an interrupted one."""
    run = spec.run_dir
    record = _run_json(run)
    if record is not None:
        check_settings(spec, record)
    with supervise.run_lock(run):
        (run / "result.json").replace(run / "result.json.unreadable")
        log.warning("%s/result.json could not be read; set aside as result.json.unreadable", run)
        if record is None:
            return None
        model = run / "snapshots" / f"snap_iter_{record['max_iter']}.caffemodel"
        if not model.is_file() or snapshots.model_problem(model, snapshots.expected_blobs(run / "train_val.prototxt")):
            log.warning("%s is not whole: resuming the run from its newest whole snapshot", model)
            return None
        result = _finish(spec, record, 0.0, "rebuilt")
        log.warning("%s/result.json rebuilt from %s and train.log", run, model.name)
        return result


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
        return _finish(spec, record, 0.0, "resumed")
    start = time.time()
    try:
        status = resume(run, lock_fd, spec.threads, spec.gpu, on_iter=on_iter, name=run.name,
                        weights="init.caffemodel" if spec.treatment.kind in STARTS_FROM_INIT else None)
    except KitError as exc:  # a diverged net can crash caffe itself (NaN in max pooling: an out-of-bounds write)
        err = diverged(spec)
        if err is None:
            raise
        raise err from exc
    return _finish(spec, record, time.time() - start, status)


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
                    f"then {spec.make_cmd(force=True)}")


def _finish(spec: RunSpec, record: dict, seconds: float, status: str) -> dict:
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
