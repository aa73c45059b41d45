"""One training run: a run folder made from a treatment, then the real `caffe train`.

`<work>/<dataset>/<split>/runs/<treatment>/` holds train_val.prototxt,
solver.prototxt, init.caffemodel (transfers), surgery.txt, run.json,
train.log, snapshots/ and, once finished, result.json. A finished run is
never redone without `force` (which moves the old folder to
`<split>/replaced/`); an unfinished one resumes from its newest .solverstate.
"""
from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data_prep.prepare import split_dir
from generators import netgen
from generators.surgery import transplant
from generators.treatments import Treatment, parse
from runner import atomic
from runner.caffe_env import caffe_env, caffe_version, tool
from runner.errors import KitError

log = logging.getLogger(__name__)
KIT = Path(__file__).resolve().parents[1]
TEMPLATES = {"fa20": ("prototxt/fa20_caffenet.prototxt", "solvers/fa20_solver.prototxt")}
INPUT_SHAPES = {"fa20": (1, 1, 28, 28)}


@dataclass(frozen=True)
class RunSpec:
    """What one run needs: the split folder, the treatment and the budget."""

    work: Path
    dataset: str
    seed: int
    treatment: Treatment
    iters: int | None = None
    threads: int | None = None

    @property
    def split_dir(self) -> Path:
        """Folder of the split the run trains on."""
        return split_dir(Path(self.work), self.dataset, f"random{self.seed}")

    @property
    def run_dir(self) -> Path:
        """The run folder."""
        return self.split_dir / "runs" / self.treatment.name

    def make_cmd(self, treatment: str) -> str:
        """The make command that runs `treatment` on this split."""
        return f"make train TREATMENT={treatment} DATASET={self.dataset} SEED={self.seed}"


def _split_info(spec: RunSpec) -> dict:
    manifest = spec.split_dir / "manifest.json"
    if not manifest.is_file():
        raise KitError(f"split random{spec.seed} of {spec.dataset} is not prepared ({manifest} missing)",
                       f"make split-random DATASET={spec.dataset} SEED={spec.seed}")
    return json.loads((spec.split_dir / "split.json").read_text())


def _data_spec(spec: RunSpec) -> netgen.DataSpec:
    t = spec.treatment
    mean_half = t.source or t.target  # a transfer keeps the input mean its copied layers learned on
    rel = Path("..") / ".." / "data"
    return netgen.DataSpec(train_source=str(rel / f"{t.target}_train_lmdb"),
                           val_source=str(rel / f"{t.target}_val_lmdb"),
                           mean_file=str(rel / f"{mean_half}_mean.binaryproto"))


def _check_labels(spec: RunSpec, num_classes: int) -> None:
    """Refuse labels >= num_output before Caffe sees them (release Caffe corrupts memory)."""
    manifest = json.loads((spec.split_dir / "manifest.json").read_text())
    for name, entry in manifest.get("files", {}).items():
        if entry.get("half") == spec.treatment.target and (entry.get("label_max") or 0) >= num_classes:
            raise KitError(f"{name} has label {entry['label_max']} but the net has {num_classes} outputs",
                           f"rebuild the split: make split-random DATASET={spec.dataset} SEED={spec.seed} FORCE=1")


def _write_once(path: Path, text: str) -> None:
    """Write a generated file, or check that an unfinished run's copy is the same."""
    if path.exists():
        if path.read_text() != text:
            raise KitError(f"{path} differs from what this command generates now",
                           "rerun with FORCE=1 (--force) to start this run again")
        return
    atomic.write_text(path, text)


def base_model(spec: RunSpec) -> Path:
    """The finished model of the base net a transfer starts from."""
    name = spec.treatment.base_name
    result = spec.split_dir / "runs" / name / "result.json"
    if not result.is_file():
        raise KitError(f"missing base model for {spec.treatment.name}: run {name} has not finished",
                       spec.make_cmd(name))
    return result.parent / json.loads(result.read_text())["model"]


def prepare(spec: RunSpec) -> dict:
    """Write the run folder's prototxt, init model and run.json; return run.json's content."""
    t = spec.treatment
    split = _split_info(spec)
    num_classes = len(split["halves"][t.target])
    _check_labels(spec, num_classes)
    net_tpl, solver_tpl = (KIT / p for p in TEMPLATES[spec.dataset])
    template = netgen.load_net(net_tpl)
    base_path = base_model(spec) if t.kind == "transfer" else None
    run = spec.run_dir
    (run / "snapshots").mkdir(parents=True, exist_ok=True)
    net = netgen.make_treatment(template, t, _data_spec(spec), num_classes)
    solver = netgen.make_solver(netgen.load_solver(solver_tpl), "train_val.prototxt",
                                random_seed=spec.seed + 1, iters=spec.iters)
    _write_once(run / "train_val.prototxt", netgen.to_text(net))
    _write_once(run / "solver.prototxt", netgen.to_text(solver))
    inputs = {"train_val.prototxt": atomic.sha256(run / "train_val.prototxt"),
              "solver.prototxt": atomic.sha256(run / "solver.prototxt"),
              "manifest.json": atomic.sha256(spec.split_dir / "manifest.json")}
    if base_path is not None:
        init = run / "init.caffemodel"
        if not init.exists():
            base_net = netgen.load_net(base_path.parent.parent / "train_val.prototxt")
            audit = transplant(base_net, base_path, net, t, init, INPUT_SHAPES[spec.dataset],
                               seed=spec.seed + 1)
            atomic.write_text(run / "surgery.txt", "\n".join(audit) + "\n")
        inputs["base.caffemodel"] = atomic.sha256(base_path)
        inputs["init.caffemodel"] = atomic.sha256(init)
    record = {**t.as_dict(), "dataset": spec.dataset, "split": f"random{spec.seed}",
              "seed": spec.seed, "random_seed": solver.random_seed, "max_iter": solver.max_iter,
              "base_model": str(base_path) if base_path else None, "inputs": inputs,
              "caffe": caffe_version(), "caffe_binary": tool("caffe"), "git_commit": _git_commit(),
              "command": shlex.join(sys.argv)}
    atomic.write_json(run / "run.json", record)
    return record


def _git_commit() -> str:
    out = subprocess.run(["git", "-C", str(KIT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def newest_solverstate(run: Path) -> Path | None:
    """The .solverstate of the highest iteration in run/snapshots, if any."""
    states = [(int(m.group(1)), p) for p in (run / "snapshots").glob("*.solverstate")
              if (m := re.search(r"_iter_(\d+)\.solverstate$", p.name))]
    return max(states)[1] if states else None


def train(spec: RunSpec, force: bool = False) -> dict:
    """Run (or resume, or skip if finished) one treatment; return its result.json content."""
    run = spec.run_dir
    result_path = run / "result.json"
    if result_path.exists() and not force:
        log.info("%s is finished; keeping it (use --force to redo)", run)
        return json.loads(result_path.read_text())
    if force and run.exists():
        dest = spec.split_dir / "replaced" / f"{spec.treatment.name}-{time.strftime('%Y%m%dT%H%M%S')}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        run.rename(dest)
        log.info("moved the old run to %s", dest)
    record = prepare(spec)
    cmd = [tool("caffe"), "train", "--solver=solver.prototxt"]
    state = newest_solverstate(run)
    if state is not None:
        cmd.append(f"--snapshot=snapshots/{state.name}")
    elif spec.treatment.kind == "transfer":
        cmd.append("--weights=init.caffemodel")
    start = time.time()
    with open(run / "train.log", "a") as logf:
        logf.write(f"#### transfer-kit {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                   f"{'resuming from ' + state.name if state else 'starting'}: {shlex.join(cmd[1:])}\n")
        logf.flush()
        proc = subprocess.run(cmd, cwd=run, stdout=logf, stderr=subprocess.STDOUT,
                              env=caffe_env(spec.threads), check=False)
    if proc.returncode != 0:
        raise KitError(f"caffe train of {spec.treatment.name} failed (exit {proc.returncode}); "
                       f"last line: {_last_line(run / 'train.log')}",
                       f"read {run / 'train.log'}; rerun the same command to resume")
    return _finish(spec, record, time.time() - start)


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1][-200:] if lines else "(empty log)"


def _finish(spec: RunSpec, record: dict, seconds: float) -> dict:
    from analysis.parse_log import parse_log, score  # pylint: disable=import-outside-toplevel
    run = spec.run_dir
    model = run / "snapshots" / f"snap_iter_{record['max_iter']}.caffemodel"
    if not model.is_file():
        raise KitError(f"caffe train ended without {model}", f"read {run / 'train.log'}")
    parsed = parse_log([run / "train.log"])
    accs = [row["accuracy"] for row in parsed.test if row.get("accuracy") is not None]
    result = {"treatment": spec.treatment.name, "model": str(model.relative_to(run)),
              "model_sha256": atomic.sha256(model), "score": score(accs) if accs else None,
              "final_accuracy": accs[-1] if accs else None, "iterations": record["max_iter"],
              "wall_seconds": round(seconds, 1)}
    atomic.write_json(run / "result.json", result)
    return result

