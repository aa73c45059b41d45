"""One training run: a run folder made from a treatment, then the real `caffe train`.

`<work>/<dataset>/<split>/runs/<treatment>/` holds train_val.prototxt,
solver.prototxt, init.caffemodel (transfers), surgery.txt, run.json,
train.log, snapshots/ and, once finished, result.json. A finished run is
never redone without `force` (which moves the old folder to
`<split>/replaced/`); an unfinished one resumes from its newest whole
.solverstate (runner.snapshots; a truncated one is set aside with a warning),
and train.log continues with a `#### transfer-kit ...` line marking each
(re)start. Inputs are checked first (runner.inputs), caffe runs under
runner.supervise (lock, signals -> snapshot, live iteration), a failure leaves
failed.json, and only a whole final model gets a result.json.
"""
from __future__ import annotations

import errno
import json
import logging
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data_prep.prepare import split_dir
from generators import netgen
from generators.surgery import random_init, transplant
from generators.treatments import Treatment
from kitcore import atomic
from runner import inputs, snapshots, supervise
from kitcore.caffe_env import caffe_version, tool
from runner.resume import check_gpu, disk_full, low_space, resume
from kitcore.errors import KitError

log = logging.getLogger(__name__)
KIT = Path(__file__).resolve().parents[1]
TEMPLATES = {"fa20": ("prototxt/fa20_caffenet.prototxt", "solvers/fa20_solver.prototxt"),
             "imagenet": ("prototxt/caffenet.prototxt", "solvers/caffenet_solver.prototxt")}
INPUT_SHAPES = {"fa20": (1, 1, 28, 28), "imagenet": (1, 3, 227, 227)}
# fc8 width: the exact class count of the target (FA-20); ImageNet keeps the authors' 1000.
EXACT_CLASSES = {"fa20"}
WHOLE_VAL_TESTS = {"fa20"}  # each test covers the target's whole val set (_whole_val_test_iter)
STARTS_FROM_INIT = ("transfer", "random-weights")  # kinds whose run starts from init.caffemodel
PROTOCOL_SPLITS = {"natman": "natman", "whole": "all"}  # split folder per protocol; random: random<seed>


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
    per_class: int | None = None  # protocol reduced: k train images per class (split reduced{k})
    batch: int | None = None  # train and val batch instead of the template's (toy runs of the paper's net)
    test_iter: int | None = None  # test batches per test instead of the solver's

    @property
    def split_dir(self) -> Path:
        """Folder of the split the run trains on."""
        protocol = self.treatment.protocol
        if protocol == "reduced":
            if not self.per_class:
                raise KitError("the reduced protocol needs k, the train images per class",
                               "pass --per-class k (PERCLASS=k), as made by make split-reduced")
            name = f"reduced{self.per_class}"
        else:
            name = PROTOCOL_SPLITS.get(protocol, f"random{self.seed}")
        return split_dir(Path(self.work), self.dataset, name)

    @property
    def run_dir(self) -> Path:
        """The run folder."""
        return self.split_dir / "runs" / self.treatment.name

    def make_cmd(self, treatment: str) -> str:
        """The make command that runs `treatment` on this split."""
        return f"make train TREATMENT={treatment} DATASET={self.dataset} SEED={self.seed}"


def solver_template(dataset: str, protocol: str) -> Path:
    """A run's solver template: the dataset's, and for ImageNet the paper's solver of the protocol."""
    if dataset == "imagenet":
        return KIT / netgen.PAPER_SOLVERS.get(protocol, netgen.PAPER_SOLVER)
    return KIT / TEMPLATES[dataset][1]


def _split_info(spec: RunSpec) -> tuple[dict, dict]:
    """The split's manifest.json (missing: unprepared, the error names the command) and split.json."""
    manifest = inputs.read_manifest(spec)
    return manifest, json.loads((spec.split_dir / "split.json").read_text())


def _whole_val_test_iter(spec: RunSpec, net, manifest: dict) -> int | None:
    """Test batches covering the target half's whole val set once (datasets in WHOLE_VAL_TESTS), else None.

    FA-20's halves differ in size (10 classes, or 20 for `all`), so its solver's
    test_iter is set per run; ImageNet keeps the paper's (1000 x 50 = all 50,000).
    """
    if spec.dataset not in WHOLE_VAL_TESTS:
        return None
    records = manifest["files"][f"data/{spec.treatment.target}_val_lmdb"]["records"]
    batch = netgen.phase_net(net, "TEST").layer[0].data_param.batch_size
    return -(-records // batch)


def _data_spec(spec: RunSpec) -> netgen.DataSpec:
    t = spec.treatment
    mean_half = t.source or t.target  # a transfer keeps the input mean its copied layers learned on
    rel = Path("..") / ".." / "data"
    return netgen.DataSpec(train_source=str(rel / f"{t.target}_train_lmdb"),
                           val_source=str(rel / f"{t.target}_val_lmdb"),
                           mean_file=str(rel / f"{mean_half}_mean.binaryproto"))


def _write_once(path: Path, text: str) -> None:
    """Write a generated file, or check that an unfinished run's copy is the same."""
    if path.exists():
        if path.read_text() != text:
            raise KitError(f"{path} differs from what this command generates now",
                           "rerun with FORCE=1 (--force) to start this run again")
        return
    atomic.write_text(path, text)


def base_model(spec: RunSpec) -> Path:
    """The finished, sha256-checked model of the base net a transfer starts from."""
    return inputs.base_model(spec)


def prepare(spec: RunSpec) -> dict:
    """Write the run folder's prototxt, init model and run.json; return run.json's content."""
    t = spec.treatment
    manifest, split = _split_info(spec)
    num_classes = len(split["halves"][t.target])
    inputs.check_labels(spec, manifest, num_classes)  # release Caffe corrupts memory on labels >= num_output
    net_tpl, solver_tpl = KIT / TEMPLATES[spec.dataset][0], solver_template(spec.dataset, t.protocol)
    template = netgen.load_net(net_tpl)
    base_path = base_model(spec) if t.kind == "transfer" else None
    run = spec.run_dir
    (run / "snapshots").mkdir(parents=True, exist_ok=True)
    net = netgen.make_treatment(template, t, _data_spec(spec), num_classes, batch_train=spec.batch,
                                batch_val=spec.batch, exact_classes=spec.dataset in EXACT_CLASSES)
    solver = netgen.make_solver(netgen.load_solver(solver_tpl), "train_val.prototxt",
                                random_seed=spec.seed + 1, iters=spec.iters,
                                test_iter=spec.test_iter or _whole_val_test_iter(spec, net, manifest))
    _write_once(run / "train_val.prototxt", netgen.to_text(net))
    _write_once(run / "solver.prototxt", netgen.to_text(solver))
    checksums = {"train_val.prototxt": atomic.sha256(run / "train_val.prototxt"),
              "solver.prototxt": atomic.sha256(run / "solver.prototxt"),
              "manifest.json": atomic.sha256(spec.split_dir / "manifest.json")}
    if t.kind in STARTS_FROM_INIT:
        init = run / "init.caffemodel"
        if not init.exists() or not (run / "surgery.txt").exists():  # killed between the two: redo
            if base_path is not None:
                base_net = netgen.load_net(base_path.parent.parent / "train_val.prototxt")
                audit = transplant(base_net, base_path, net, t, init, INPUT_SHAPES[spec.dataset],
                                   seed=spec.seed + 1)
            else:  # random weights: the first n layers frozen at their seeded fillers
                audit = random_init(net, t, init, INPUT_SHAPES[spec.dataset], seed=spec.seed + 1)
            atomic.write_text(run / "surgery.txt", "\n".join(audit) + "\n")
        if base_path is not None:
            checksums["base.caffemodel"] = atomic.sha256(base_path)
        checksums["init.caffemodel"] = atomic.sha256(init)
    record = {**t.as_dict(), "dataset": spec.dataset, "split": spec.split_dir.name,
              "seed": spec.seed, "random_seed": solver.random_seed, "max_iter": solver.max_iter,
              "base_model": str(base_path) if base_path else None, "inputs": checksums,
              "caffe": caffe_version(), "caffe_binary": tool("caffe"), "git_commit": _git_commit(),
              "command": shlex.join(sys.argv), "caffe_mode": "gpu" if spec.gpu else "cpu",
              "threads": spec.threads, "batch": spec.batch, "test_iter": list(solver.test_iter),
              "per_class": spec.per_class}
    atomic.write_json(run / "run.json", record)
    return record


def _git_commit() -> str:
    out = subprocess.run(["git", "-C", str(KIT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def newest_solverstate(run: Path) -> Path | None:
    """The whole .solverstate of the highest iteration in run/snapshots (incomplete ones set aside)."""
    found = snapshots.newest_valid(run)
    return found[1] if found else None


def preflight(spec: RunSpec) -> None:
    """Check the split, its data and labels, and a transfer's base model before touching the run folder."""
    t = spec.treatment
    manifest = inputs.read_manifest(spec)
    halves = json.loads((spec.split_dir / "split.json").read_text())["halves"]
    inputs.check_labels(spec, manifest, len(halves[t.target]))
    inputs.check_data(spec, manifest, {t.target, t.source or t.target})
    if t.kind == "transfer":
        inputs.base_model(spec)
    if spec.gpu:
        check_gpu()


def is_finished(run: Path) -> bool:
    """Whether run holds a result.json whose model is there with the recorded sha256."""
    try:
        result = json.loads((run / "result.json").read_text())
    except (OSError, ValueError):
        return False
    model = run / result.get("model", "")
    return model.is_file() and atomic.sha256(model) == result.get("model_sha256")


def train(spec: RunSpec, force: bool = False, on_iter=None) -> dict:
    """Run (or resume, or skip if finished) one treatment; return its result.json content."""
    run = spec.run_dir
    if (run / "result.json").exists() and not force:
        if not is_finished(run):
            raise KitError(f"{run}/result.json names a model that is missing or altered",
                           f"redo the run: {spec.make_cmd(spec.treatment.name)} FORCE=1")
        log.info("%s is finished; keeping it (use --force to redo)", run)
        return {**json.loads((run / "result.json").read_text()), "status": "skipped"}
    preflight(spec)
    if force and run.exists():
        if supervise.lock_holder(run) is not None:
            raise KitError(f"{run} is being trained by another process", "wait for it or stop it, then rerun")
        dest = spec.split_dir / "replaced" / f"{spec.treatment.name}-{time.strftime('%Y%m%dT%H%M%S')}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        run.rename(dest)
        log.info("moved the old run to %s", dest)
    with supervise.run_lock(run) as lock_fd:
        (run / "failed.json").unlink(missing_ok=True)
        try:
            return _train_locked(spec, lock_fd, on_iter)
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


def _train_locked(spec: RunSpec, lock_fd: int, on_iter) -> dict:
    run = spec.run_dir
    record = prepare(spec)
    found = snapshots.newest_valid(run)
    if found and found[0] >= record["max_iter"]:
        log.info("%s: snapshot %s is the last iteration; finishing without caffe", run, found[1].name)
        return _finish(spec, record, 0.0, "resumed")
    start = time.time()
    status = resume(run, lock_fd, spec.threads, spec.gpu, on_iter=on_iter, name=spec.treatment.name,
                    weights="init.caffemodel" if spec.treatment.kind in STARTS_FROM_INIT else None)
    return _finish(spec, record, time.time() - start, status)


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1][-200:] if lines else "(empty log)"


def _finish(spec: RunSpec, record: dict, seconds: float, status: str) -> dict:
    from analysis.parse_log import parse_log, score  # pylint: disable=import-outside-toplevel
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
    accs = [row["accuracy"] for row in parsed.test if row.get("accuracy") is not None]
    log_text = (run / "train.log").read_text(errors="replace")
    starts = sum(1 for line in log_text.splitlines() if line.startswith("#### transfer-kit ") and " pid " in line)
    result = {"treatment": spec.treatment.name, "model": str(model.relative_to(run)),
              "model_sha256": atomic.sha256(model), "score": score(accs) if accs else None,
              "final_accuracy": accs[-1] if accs else None, "iterations": record["max_iter"],
              "wall_seconds": round(seconds, 1), "caffe_starts": starts}
    atomic.write_json(run / "result.json", result)
    return {**result, "status": status}
