"""Quiet by default (issue 35): Caffe's output reaches the run's train.log, never the terminal.

A real `make train` of a transfer (its weight surgery builds two nets with
pycaffe in the kit's own process, then the real `caffe train` runs) prints a
handful of lines, none of them glog's; train.log still holds Caffe's whole log
and the run its result.json. `--verbose` shows Caffe's output (the child's and
pycaffe's) and the kit's debug lines. A grid prints one line per run and its
header; the fix line of a run in another work folder carries its WORK=,
ITERS= and REPEAT=. Runs are 2 iterations of FA-20 on one split (slow: each
tests the whole val set 3 times).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kitcore import layout
from kitcore.profiles import KIT

from conftest import ROOT

GLOG = re.compile(r"^[IWEF]\d{8} ", re.M)  # a glog line (glog >= 0.7 stamps the year)
PYCAFFE = "Logging before InitGoogleLogging"  # what pycaffe's glog says first in a process that did not init it


def user_env(**more: str) -> dict:
    """The environment of a user's shell: no glog level, no verbosity, no make of an outer `make test`."""
    drop = {"GLOG_minloglevel", "TRANSFER_KIT_VERBOSE", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "VERBOSE"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "GLOG_logtostderr": "1", **more}


def kit(*args: str) -> subprocess.CompletedProcess:
    """`transfer-kit ARGS` with stdout and stderr together, as a terminal shows them."""
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=user_env(), check=False)


def runs(work: Path) -> Path:
    return work / "fa20" / "random0" / "runs"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work folder (not the kit's `work`) with split random0 and baseB trained for 2 iterations."""
    work = tmp_path_factory.mktemp("quiet")
    assert kit("split-random", "--work", str(work), "--seed", "0").returncode == 0
    proc = kit("train", "--work", str(work), "--treatment", "baseB", "--iters", "2", "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:]
    return work


@pytest.mark.slow
def test_make_train_of_a_transfer_prints_a_few_lines_and_logs_caffe_whole(work):
    proc = subprocess.run(["make", "--no-print-directory", "train", f"WORK={work}", "TREATMENT=B2B+", "ITERS=2"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=user_env(),
                          check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    assert len(out.splitlines()) <= 10, out[-3000:]  # before issue 35: ~700 lines for this run
    assert not GLOG.search(out) and PYCAFFE not in out and 'name: "' not in out, out[-3000:]
    assert "B2B+: score " in out
    run = runs(work) / "B2B+"
    assert "copied from base:conv2" in (run / "surgery.txt").read_text()  # pycaffe did run in this process
    log = (run / "train.log").read_text()
    assert "Solving " in log and "Optimization Done." in log and log.count("] Iteration 2, Testing net") == 1
    assert json.loads((run / "result.json").read_text())["iterations"] == 2


@pytest.mark.slow
def test_verbose_shows_caffe_and_the_debug_lines(work):
    proc = kit("train", "--work", str(work), "--treatment", "B1B", "--iters", "2", "--threads", "1", "--verbose")
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    assert PYCAFFE in out and 'name: "' in out  # pycaffe's net definitions, from the surgery in this process
    assert "Solving " in out and len(GLOG.findall(out)) > 50  # the caffe child's log, echoed
    assert "surgery: conv1.0" in out  # the kit's DEBUG lines: one audit line per blob
    log = (runs(work) / "B1B" / "train.log").read_text()
    assert log.count("Solving ") == 1 and "Optimization Done." in log  # the echo adds nothing to train.log
    assert (runs(work) / "B1B" / "result.json").is_file()


def test_make_verbose_passes_the_flag():
    def command(*extra: str) -> str:
        out = subprocess.run(["make", "--no-print-directory", "-n", "train", "TREATMENT=A1B", *extra], cwd=ROOT,
                             capture_output=True, text=True, env=user_env(), check=True).stdout
        return next(ln for ln in out.splitlines() if "transfer-kit" in ln)
    assert "--verbose" in command("VERBOSE=1") and "--verbose" not in command()


@pytest.mark.slow
def test_a_grid_prints_one_line_per_run_and_its_fix_lines_carry_work_and_iters(work):
    """B3B trains; A1B's base baseA was never trained: its summary line names the command, in this work folder."""
    proc = kit("grid", "--work", str(work), "--treatments", "B3B,A1B", "--iters", "2", "--jobs", "2")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert not GLOG.search(proc.stdout) and PYCAFFE not in proc.stdout
    summary = {ln.split()[0]: ln for ln in lines if " score " in ln and " wall " in ln}
    assert set(summary) == {"B3B", "A1B"} and " trained " in summary["B3B"] and " failed " in summary["A1B"]
    assert len(lines) <= len(summary) + 3, proc.stdout  # + the grid's header, the split's line, the error
    assert lines[-1].startswith("error: 1 of 2 run(s) failed: A1B")
    want = f"make train TREATMENT=baseA DATASET=fa20 PROTOCOL=random SEED=0 ITERS=2 WORK={work.resolve()}"
    assert want in summary["A1B"]


def test_fix_lines_carry_the_runs_settings(tmp_path):
    """A replicate whose result.json names no model: the fix redoes it with its REPEAT, ITERS and WORK; a split
    not prepared in this work folder: its make command with WORK."""
    run = tmp_path / "fa20" / "random0" / "runs" / "B1B+.r1"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"treatment": "B1B+", "model": "snapshots/snap_iter_2.caffemodel"}))
    proc = kit("train", "--work", str(tmp_path), "--treatment", "B1B+", "--repeat", "1", "--iters", "2")
    assert proc.returncode == 2 and proc.stdout.startswith("error: ") and "; fix: " in proc.stdout, proc.stdout
    fix = proc.stdout.split("; fix: ", 1)[1].strip()
    assert fix.endswith("make train TREATMENT=B1B+ DATASET=fa20 PROTOCOL=random SEED=0 REPEAT=1 FORCE=1 ITERS=2 "
                        f"WORK={tmp_path.resolve()}"), fix
    proc = kit("train", "--work", str(tmp_path), "--treatment", "baseA", "--seed", "2", "--iters", "2")
    assert proc.returncode == 2 and "not prepared" in proc.stdout
    assert proc.stdout.strip().endswith(f"fix: make split-random DATASET=fa20 SEED=2 WORK={tmp_path.resolve()}")


def test_work_setting_names_a_work_folder_other_than_the_kits(tmp_path, monkeypatch):
    monkeypatch.chdir(KIT)  # where make runs
    assert layout.work_setting("work") == layout.work_setting(KIT / "work") == layout.work_setting(None) == []
    assert layout.work_setting("work/tiny") == ["WORK=work/tiny"]  # as make grid WORK=work/tiny gave it
    assert layout.work_setting(tmp_path / "my runs") == [f"WORK='{tmp_path.resolve() / 'my runs'}'"]
    monkeypatch.chdir(tmp_path)  # the CLI run from elsewhere: a relative folder is made absolute
    assert layout.work_setting("work") == [f"WORK={tmp_path.resolve() / 'work'}"]
    assert layout.train_command("A3B", "fa20", "random", 1, iters=60, gpu=True, work=KIT / "work") == \
        "make train TREATMENT=A3B DATASET=fa20 PROTOCOL=random SEED=1 ITERS=60 MODE=gpu"
