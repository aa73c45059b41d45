"""The Slurm engine: its strict config, and the grid on a real single-node Slurm (slow).

The fixture `slurm` (tests/conftest.py) starts munged, slurmctld and slurmd
(Debian's slurm-wlm, munge) on localhost with all state under one /tmp folder
and its own ports, as measured in ../shared/SLURM_NOTES.md, and stops them
afterwards in a `finally`.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kitcore.errors import KitError
from runner.slurm import load_config

from conftest import ROOT, wait_until


@pytest.mark.parametrize("text, problem", [
    ("partitoin = 'gpu'\n", "unknown key 'partitoin'"),
    ("cpus = '4'\n", "cpus in"),
    ("gpus = true\n", "gpus in"),
    ("extra_args = [1]\n", "a list of strings"),
    ("time = 'two days'\n", "is not a Slurm time"),
    ("cpus = 0\n", "out of range"),
])
def test_config_is_strict(tmp_path, text, problem):
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(KitError, match=problem):
        load_config(tmp_path / "s.toml")


def test_config_defaults_and_override(tmp_path):
    (tmp_path / "s.toml").write_text('partition = "long"\ncpus = 8\ntime = "1-12:00:00"\n')
    config = load_config(tmp_path / "s.toml")
    assert config["partition"] == "long" and config["cpus"] == 8 and config["gpus"] == load_config()["gpus"]
    defaults = (ROOT / "runner" / "slurm.toml").read_text().splitlines()
    keys = [i for i, ln in enumerate(defaults) if " = " in ln and not ln.startswith("#")]
    assert all(defaults[i - 1].startswith("# ") for i in keys), "each key needs a comment"


def test_job_command_carries_the_protocol_and_run_options(tmp_path):
    """A job of a natman, whole or reduced grid must train that protocol's treatment, not random's namesake."""
    from kitcore.treatments import parse
    from runner.slurm import _train_cmd
    from runner.train import RunSpec
    spec = RunSpec(tmp_path, "imagenet", 0, parse("base", "reduced"), iters=5, gpu=True, per_class=10, batch=4,
                   test_iter=2)
    cmd = _train_cmd(spec, load_config())
    text = " ".join(cmd)
    assert "--protocol reduced" in text and "--per-class 10" in text and "--batch 4" in text
    assert "--test-iter 2" in text and "--iters 5" in text and cmd[-1] == "--gpu"
    assert "--protocol natman" in " ".join(_train_cmd(RunSpec(tmp_path, "fa20", 0, parse("A3B", "natman")),
                                                      load_config()))


def kit(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, check=False)


@pytest.fixture(scope="module")
def work(slurm, tmp_path_factory) -> tuple[Path, Path]:
    """A work folder with split random0 (readable by the jobs), and a config with 1 CPU per job."""
    work = Path(tempfile.mkdtemp(prefix="tkw", dir="/tmp"))
    assert kit(slurm, "split-random", "--seed", "0", "--work", str(work)).returncode == 0
    config = work / "slurm.toml"
    config.write_text('cpus = 1\ntime = "10:00"\nsignal_s = 30\n')
    yield work, config
    shutil.rmtree(work, ignore_errors=True)


def states(env: dict, work: Path, grid: str, iters: str = "2") -> dict[str, str]:
    out = kit(env, "status", "--work", str(work), "--treatments", grid, "--iters", iters).stdout.splitlines()[1:-1]
    return {ln.split()[0]: ln for ln in out}


def wait_states(env, work, grid, pred, timeout=240, iters: str = "2") -> dict[str, str]:
    wait_until(lambda: pred(states(env, work, grid, iters)), timeout, f"status of {grid}")
    return states(env, work, grid, iters)


@pytest.mark.slow
def test_grid_on_slurm_bases_then_arrays_after_them(slurm, work):
    work, config = work
    grid = "baseA,A1B,A1B+"
    proc = kit(slurm, "grid", "--engine", "slurm", "--slurm-config", str(config), "--work", str(work),
               "--treatments", grid, "--iters", "2")
    assert proc.returncode == 0, proc.stderr
    jobs = json.loads((work / "fa20" / "random0" / "slurm" / "jobs.json").read_text())
    assert jobs["A1B"] == jobs["A1B+"].replace("_1", "_0") and jobs["A1B"].endswith("_0")
    assert f"after {jobs['baseA']}" in proc.stdout
    done = wait_states(slurm, work, grid, lambda s: len(s) == 3 and all("finished" in v for v in s.values()))
    assert all("COMPLETED" in v for v in done.values())
    runs = work / "fa20" / "random0" / "runs"
    assert (runs / "A1B" / "run.json").stat().st_mtime >= (runs / "baseA" / "result.json").stat().st_mtime
    again = kit(slurm, "grid", "--engine", "slurm", "--slurm-config", str(config), "--work", str(work),
                "--treatments", grid, "--iters", "2")
    assert again.stdout.count(" finished ") == 3 and "submitted" not in again.stdout


@pytest.mark.slow
def test_cancelled_job_snapshots_and_resubmission_resumes(slurm, work):
    work, config = work
    run = work / "fa20" / "random0" / "runs" / "baseB"
    args = ("grid", "--engine", "slurm", "--slurm-config", str(config), "--work", str(work),
            "--treatments", "baseB", "--iters", "30")
    assert kit(slurm, *args).returncode == 0
    wait_until(lambda: (run / "snapshots" / "snap_iter_10.solverstate").exists(), 120, "first snapshot")
    wait_until(lambda: re.search(r"\] Iteration 1[1-9]\b", (run / "train.log").read_text()), 120,
          "a training iteration past the first snapshot")
    job = json.loads((work / "fa20" / "random0" / "slurm" / "jobs.json").read_text())["baseB"]
    subprocess.run(["scancel", job], env=slurm, check=True)
    row = wait_states(slurm, work, "baseB", lambda s: "CANCELLED" in s["baseB"], 60, iters="30")["baseB"]
    assert row.split()[1] == "failed" and "resumable at iter" in row
    stopped = int(row.split("resumable at iter ")[1].split(")")[0])
    outs = "".join(p.read_text() for p in (work / "fa20" / "random0" / "slurm").glob("*.out"))
    assert stopped > 10 and "Optimization stopped early" in (run / "train.log").read_text(), (
        outs[-2000:] + (run / "train.log").read_text()[-1500:])
    assert kit(slurm, *args).returncode == 0
    wait_states(slurm, work, "baseB", lambda s: s["baseB"].split()[1] == "finished", iters="30")
    assert f"resuming from snap_iter_{stopped}.solverstate" in (run / "train.log").read_text()


@pytest.mark.slow
def test_failed_base_cancels_its_transfers(slurm, work):
    work, config = work
    manifest = work / "fa20" / "random0" / "manifest.json"
    saved = manifest.read_text()
    m = json.loads(saved)
    m["files"]["data/B_train_lmdb"]["label_max"] = 99  # baseB's job fails in its input check
    manifest.write_text(json.dumps(m))
    try:
        grid = "baseB,B1A"
        shutil.rmtree(work / "fa20" / "random0" / "runs" / "baseB", ignore_errors=True)
        assert kit(slurm, "grid", "--engine", "slurm", "--slurm-config", str(config), "--work", str(work),
                   "--treatments", grid, "--iters", "2").returncode == 0
        done = wait_states(slurm, work, grid, lambda s: "FAILED" in s.get("baseB", "") and
                           "PENDING" not in s.get("B1A", "PENDING"), 60)
        assert done["baseB"].split()[1] == "failed" and "B_train_lmdb has labels" in done["baseB"]
        assert done["B1A"].split()[1] == "failed" and "CANCELLED" in done["B1A"]
    finally:
        manifest.write_text(saved)
