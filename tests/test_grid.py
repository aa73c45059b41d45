"""The grid and `status` with the real CLI and the real `caffe` binary, and bad input to them.

A four-run grid (2 bases, 2 transfers, 2 iterations each) runs two at a
time; then every bad input to them gets a one-line error with its fix and
leaves nothing marked finished.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

GRID = "baseA,baseB,A1B,B1B+"


def kit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `transfer-kit ARGS` as a user would."""
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)


def one_line_error(proc: subprocess.CompletedProcess, *parts: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "; fix: " in lines[0], proc.stderr
    for part in parts:
        assert part in lines[0]
    return lines[0]


@pytest.mark.parametrize("args, parts", [
    (["grid", "--protocol", "imaginary"], ["unknown protocol 'imaginary'", "random"]),
    (["status", "--treatments", "baseA,A9B"], ["invalid treatment 'A9B'", "baseA"]),
    (["grid", "--treatments", "A3C"], ["invalid treatment 'A3C'", "n in 1..7"]),
])
def test_unknown_treatment_or_protocol(tmp_path, args, parts):
    one_line_error(kit(*args, "--work", str(tmp_path)), *parts)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A work folder where the four-run grid ran with JOBS=2 (progress bars forced on)."""
    work = tmp_path_factory.mktemp("grid")
    assert kit("split-random", "--seed", "0", "--work", str(work)).returncode == 0
    proc = kit("grid", "--work", str(work), "--treatments", GRID, "--iters", "2", "--jobs", "2",
               env={"TRANSFER_KIT_PROGRESS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, proc


def runs(work: Path) -> Path:
    return work / "fa20" / "random0" / "runs"


@pytest.mark.slow
def test_grid_runs_bases_first_two_at_a_time(grid):
    work, proc = grid
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", proc.stderr).replace("\r", "\n")
    summary = [ln for ln in text.splitlines() if " score " in ln and " wall " in ln]
    assert sorted(ln.split()[0] for ln in summary) == sorted(GRID.split(","))
    assert all(ln.split()[1] == "trained" for ln in summary)
    assert "ETA" in proc.stderr and "grid" in proc.stderr
    for name in GRID.split(","):
        meta = json.loads((runs(work) / name / "run.json").read_text())
        assert meta["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
    base_done = (runs(work) / "baseA" / "result.json").stat().st_mtime
    first_line = (runs(work) / "A1B" / "train.log").read_text().splitlines()[0]
    assert first_line.startswith("#### transfer-kit") and (runs(work) / "A1B" / "train.log").stat().st_mtime > base_done
    assert (runs(work) / "A1B" / "run.json").stat().st_mtime >= base_done


@pytest.mark.slow
def test_grid_rerun_skips_finished_and_status_lists_all(grid):
    work, _ = grid
    proc = kit("grid", "--work", str(work), "--treatments", GRID, "--iters", "2")
    assert proc.returncode == 0
    assert sum(" skipped " in ln for ln in proc.stderr.splitlines()) == 4
    status = kit("status", "--work", str(work), "--treatments", GRID + ",A2B", "--iters", "2")
    rows = {ln.split()[0]: ln for ln in status.stdout.splitlines()[1:-1]}
    assert all("finished" in rows[n] and "score" in rows[n] for n in GRID.split(","))
    assert "not started" in rows["A2B"] and status.stdout.splitlines()[-1] == "4 finished, 1 not started"


def _copy_split(work: Path, dest: Path) -> Path:
    """A copy of the grid's split with baseA finished (a fresh folder to break)."""
    subprocess.run(["cp", "-a", str(work / "fa20"), str(dest / "fa20")], check=True)
    for name in ("baseB", "A1B", "B1B+"):
        subprocess.run(["rm", "-rf", str(runs(dest) / name)], check=True)
    return dest


def train(work: Path, name: str) -> subprocess.CompletedProcess:
    return kit("train", "--work", str(work), "--seed", "0", "--treatment", name, "--iters", "2", "--threads", "1")


@pytest.mark.slow
def test_corrupt_lmdb_is_refused(grid, tmp_path):
    work = _copy_split(grid[0], tmp_path)
    mdb = work / "fa20" / "random0" / "data" / "B_train_lmdb" / "data.mdb"
    data = bytearray(mdb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    mdb.write_bytes(bytes(data))
    one_line_error(train(work, "baseB"), "B_train_lmdb/data.mdb is corrupt",
                   "make split-random DATASET=fa20 SEED=0 FORCE=1")
    assert not (runs(work) / "baseB").exists()


@pytest.mark.slow
def test_labels_out_of_range_are_refused(grid, tmp_path):
    work = _copy_split(grid[0], tmp_path)
    manifest = work / "fa20" / "random0" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["files"]["data/B_val_lmdb"]["label_max"] = 10
    manifest.write_text(json.dumps(m))
    one_line_error(train(work, "baseB"), "data/B_val_lmdb has labels 0..10 but the net has 10 outputs", "FORCE=1")
    assert not (runs(work) / "baseB").exists()


@pytest.mark.slow
def test_corrupt_or_missing_base_model_names_the_command(grid, tmp_path):
    work = _copy_split(grid[0], tmp_path)
    one_line_error(train(work, "B2A"), "missing base model for B2A",
                   "make train TREATMENT=baseB DATASET=fa20 PROTOCOL=random SEED=0")
    model = runs(work) / "baseA" / json.loads((runs(work) / "baseA" / "result.json").read_text())["model"]
    model.write_bytes(model.read_bytes()[:1000])
    one_line_error(train(work, "A2B"), "base model", "is corrupt",
                   "make train TREATMENT=baseA DATASET=fa20 PROTOCOL=random SEED=0 FORCE=1")
    assert not (runs(work) / "A2B").exists()
    status = kit("status", "--work", str(work), "--treatments", "baseA")
    assert "finished" not in status.stdout.splitlines()[1]  # a base whose model was altered is not finished


@pytest.mark.slow
def test_garbage_newest_snapshot_is_set_aside_and_the_run_starts(grid, tmp_path):
    work = _copy_split(grid[0], tmp_path)
    run = runs(work) / "baseB"
    run.mkdir(parents=True)
    (run / "snapshots").mkdir()
    (run / "snapshots" / "snap_iter_1.solverstate").write_bytes(b"\x08\x01garbage")  # corrupt, newest
    (run / "snapshots" / "snap_iter_1.caffemodel").write_bytes(b"garbage")
    proc = train(work, "baseB")
    assert proc.returncode == 0, proc.stderr
    assert "snap_iter_1.solverstate is incomplete" in proc.stderr
    assert (run / "snapshots" / "snap_iter_1.solverstate.incomplete").exists()
    assert "starting: train" in (run / "train.log").read_text() and (run / "result.json").exists()


@pytest.mark.slow
def test_a_run_start_reads_its_inputs_once(grid, tmp_path, monkeypatch):
    """manifest.json and split.json are read once per start, and the base model is hashed once (230 MB on ImageNet)."""
    from kitcore import atomic
    from kitcore.treatments import parse
    from runner.train import RunSpec
    from runner.train import train as train_run
    work = _copy_split(grid[0], tmp_path)
    base = runs(work) / "baseA" / json.loads((runs(work) / "baseA" / "result.json").read_text())["model"]
    hashed, read = [], []
    real_sha256, real_read_text = atomic.sha256, Path.read_text
    monkeypatch.setattr(atomic, "sha256", lambda p: hashed.append(Path(p)) or real_sha256(p))
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: read.append(self.name) or real_read_text(self, *a, **k))
    result = train_run(RunSpec(work, "fa20", 0, parse("A2B"), iters=2, threads=1))
    assert result["status"] != "skipped" and result["iterations"] == 2
    assert hashed.count(base) == 1, hashed
    assert read.count("manifest.json") == 1 and read.count("split.json") == 1, read


def test_a_diverged_run_is_an_error_naming_the_solver_to_fix(tmp_path):
    """A NaN loss ends a run as failed: its 10 best tests would come from before it diverged."""
    from kitcore.caffe_log import parse_log
    from kitcore.runlog import diverged_at
    from kitcore.treatments import parse
    from runner.finished import diverged
    from runner.train import RunSpec

    from test_analysis import glog
    spec = RunSpec(tmp_path, "fa20", 0, parse("A1B+"))
    spec.run_dir.mkdir(parents=True)
    lines = [glog(f"1201 12:00:{i:02d}.000000", f"Iteration {20 * i}, loss = {loss}") for i, loss in
             enumerate(("1.33", "0.65", "-nan", "-nan"))]
    (spec.run_dir / "train.log").write_text("".join(lines))
    assert diverged_at(parse_log([spec.run_dir / "train.log"])) == 40
    err = str(diverged(spec))
    assert "A1B+ diverged: its loss is NaN from iteration 40" in err and "solvers/fa20_solver.prototxt" in err
    assert "make train TREATMENT=A1B+ DATASET=fa20 PROTOCOL=random SEED=0 FORCE=1" in err
    (spec.run_dir / "train.log").write_text("".join(lines[:2]))
    assert diverged(spec) is None


def _copy_all(work: Path, dest: Path) -> Path:
    """A copy of the grid's split, every run of it finished."""
    subprocess.run(["cp", "-a", str(work / "fa20"), str(dest / "fa20")], check=True)
    return dest


def _status_rows(work: Path, *args: str) -> dict[str, str]:
    """Status lines by run, the grid's ITERS=2 unless args say otherwise."""
    proc = kit("status", "--work", str(work), "--treatments", GRID, *(args or ("--iters", "2")))
    assert proc.returncode == 0, proc.stderr
    return {ln.split()[0]: ln for ln in proc.stdout.splitlines()[1:-1]}


@pytest.mark.slow
def test_truncated_result_json_is_rebuilt_and_status_train_and_transfers_agree(grid, tmp_path):
    """A result.json cut in half beside an intact model and log: status says make train rebuilds it, a
    transfer names the base's broken file, and make train rebuilds it (same model, score; run.json untouched)."""
    work = _copy_all(grid[0], tmp_path)
    run = runs(work) / "baseA"
    intact = json.loads((run / "result.json").read_text())
    run_json = (run / "run.json").read_bytes()
    starts = (run / "train.log").read_text().count("#### transfer-kit")
    text = (run / "result.json").read_text()
    (run / "result.json").write_text(text[: len(text) // 2])
    row = _status_rows(work)["baseA"]
    assert "resumable at iter 2" in row and "result.json unreadable: make train rebuilds it" in row
    one_line_error(train(work, "A2B"), "result.json of A2B's base run baseA cannot be read",
                   "make train TREATMENT=baseA DATASET=fa20 PROTOCOL=random SEED=0")
    assert not (runs(work) / "A2B").exists()
    proc = train(work, "baseA")
    assert proc.returncode == 0, proc.stderr
    assert "result.json rebuilt from snap_iter_2.caffemodel and train.log" in proc.stderr
    assert (run / "train.log").read_text().count("#### transfer-kit") == starts  # caffe did not run again
    rebuilt = json.loads((run / "result.json").read_text())
    for key in ("model", "model_sha256", "score", "final_accuracy", "iterations"):
        assert rebuilt[key] == intact[key], key
    assert (run / "run.json").read_bytes() == run_json
    from kitcore.caffe_log import parse_log  # wall_seconds: caffe's time over all its starts, from the log
    assert rebuilt["wall_seconds"] == round(parse_log([run / "train.log"]).active_seconds, 1) > 0
    assert (run / "result.json.unreadable").read_text() == text[: len(text) // 2]
    assert _status_rows(work)["baseA"].split()[1] == "finished"
    # the final model cut short as well: the run resumes from its newest whole snapshot and finishes
    run = runs(work) / "baseB"
    (run / "result.json").write_text("{")
    model = run / "snapshots" / "snap_iter_2.caffemodel"
    model.write_bytes(model.read_bytes()[:1000])
    proc = train(work, "baseB")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "result.json").read_text())["iterations"] == 2
    assert _status_rows(work)["baseB"].split()[1] == "finished"


@pytest.mark.slow
def test_finished_runs_asked_with_other_settings_are_refused_by_train_status_grid_and_plots(grid, tmp_path):
    """A run finished at 2 iterations asked for at 3: train and grid refuse it naming what differs and the two ways
    out, status says 'other settings'; plots refuses a work folder whose runs ran at 2 and 3 unless told."""
    work = _copy_all(grid[0], tmp_path)
    before = (runs(work) / "baseA" / "result.json").read_bytes()
    line = one_line_error(kit("train", "--work", str(work), "--treatment", "baseA", "--iters", "3"),
                          "finished with other settings than asked: iterations 2 (asked: 3)",
                          "keep it: ask with its settings (ITERS=2), as make train TREATMENT=baseA", "FORCE=1")
    assert "ITERS=3" in line.split("redo it with these:")[1]
    one_line_error(kit("grid", "--work", str(work), "--treatments", GRID, "--iters", "3"),
                   "finished with other settings than asked: iterations 2 (asked: 3)",
                   "keep it: ask with its settings (ITERS=2)")
    one_line_error(kit("train", "--work", str(work), "--treatment", "baseA", "--iters", "2", "--batch", "4"),
                   "finished with other settings than asked: batch the template's (asked: 4)",
                   "keep it: ask with its settings (BATCH left out), as make train TREATMENT=baseA")
    assert (runs(work) / "baseA" / "result.json").read_bytes() == before
    rows = _status_rows(work, "--iters", "3")
    assert all(rows[n].split()[1:3] == ["other", "settings"] and "iterations 2 (asked: 3)" in rows[n]
               for n in GRID.split(","))
    assert all(row.split()[1] == "finished" for row in _status_rows(work).values())
    run = runs(work) / "baseB"  # a run started at 2 iterations and stopped: asked at 3, refused alike, not failed
    (run / "result.json").unlink()
    (run / "snapshots" / "snap_iter_2.caffemodel").unlink()
    one_line_error(kit("train", "--work", str(work), "--treatment", "baseB", "--iters", "3"),
                   "baseB started with other settings than asked: iterations 2 (asked: 3)")
    assert not (run / "failed.json").exists()
    assert _status_rows(work, "--iters", "3")["baseB"].split()[1:3] == ["other", "settings"]
    one_line_error(kit("grid", "--work", str(work), "--treatments", "baseB", "--iters", "3"), "baseB started with")
    assert kit("train", "--work", str(work), "--treatment", "A2B", "--iters", "3", "--threads", "1").returncode == 0
    one_line_error(kit("plots", "--work", str(work)), "ran with 2 different settings", "(3 iterations)",
                   "(2 iterations)", "MIXED=1")
    proc = kit("plots", "--work", str(work), "--allow-mixed")
    assert proc.returncode == 0, proc.stderr[-2000:]
