"""Kill -9 during data prep, generation and surgery, then the same command again: it completes, same result.

Each command is started as a user would (`python -m runner.cli ...`, its own
process group), killed with SIGKILL at a spread of moments across its run
(the whole group, so a `compute_image_mean` or `caffe` child dies too) at
15%, 30%, ..., 90% of an uninterrupted run's wall time, and
then rerun to completion. For generation and surgery one more kill is timed by
the run folder itself: the moment solver.prototxt appears (generation done,
surgery started), and the files present then show that it landed inside the
surgery (surgery.txt, written when it ends, absent). The result must equal an uninterrupted run's:
the split's manifest (sha256 of every LMDB and mean), the transfer's prototxt
and init.caffemodel. Training itself is covered by tests/test_resume.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.supervise import lock_holder

from conftest import ROOT

pytestmark = pytest.mark.slow
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def finish(*args: str) -> float:
    """Run the command to completion; return its wall time."""
    t0 = time.monotonic()
    proc = start(*args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return time.monotonic() - t0


FRACTIONS = (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)  # kill moments, as parts of an uninterrupted run's wall time


def kill_after(delay: float, *args: str) -> bool:
    """Start the command, SIGKILL its process group after `delay` s; True if it was still running then."""
    proc = start(*args)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def kill_when(path: Path, *args: str) -> set[str]:
    """Start the command, SIGKILL its process group as soon as `path` exists; return the files of
    path's folder at that moment."""
    proc = start(*args)
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, f"the command ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.002)
    present = {p.name for p in path.parent.iterdir()}
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return present


def released(run: Path, limit: float = 60) -> None:
    """Wait until no process holds the run's lock: a SIGKILLed group's last member (the caffe child) may still
    be exiting when the killed kit process has been reaped, and a rerun then rightly refuses to start."""
    deadline = time.monotonic() + limit
    while lock_holder(run) is not None:
        assert time.monotonic() < deadline, f"{run}'s lock still held {limit} s after the kill"
        time.sleep(0.05)


def _files(sdir: Path) -> dict:
    manifest = json.loads((sdir / "manifest.json").read_text())
    return {name: entry.get("sha256") for name, entry in manifest["files"].items()}


def test_kill9_during_data_prep_then_rerun(tmp_path):
    wall = finish("split-random", "--seed", "1", "--work", str(tmp_path / "ref"))
    want = _files(tmp_path / "ref" / "fa20" / "random1")
    killed = 0
    for i, delay in enumerate(f * wall for f in FRACTIONS):
        work = tmp_path / f"k{i}"
        killed += kill_after(delay, "split-random", "--seed", "1", "--work", str(work))
        sdir = work / "fa20" / "random1"
        assert not (sdir / "manifest.json").exists() or _files(sdir) == want  # nothing half-done looks done
        finish("split-random", "--seed", "1", "--work", str(work))
        assert _files(sdir) == want, f"killed after {delay} s"
    assert killed >= 3, "the kills should land while the command works"


def test_kill9_during_generation_and_surgery_then_rerun(tmp_path):
    work = tmp_path / "w"
    finish("split-random", "--seed", "0", "--work", str(work))
    finish("train", "--work", str(work), "--treatment", "baseA", "--iters", "2", "--threads", "1")
    runs = work / "fa20" / "random0" / "runs"
    wall = finish("train", "--work", str(work), "--treatment", "A3B", "--iters", "2", "--threads", "1")
    want = {name: (runs / "A3B" / name).read_bytes()
            for name in ("train_val.prototxt", "solver.prototxt", "init.caffemodel", "surgery.txt")}
    (runs / "A3B").rename(runs / "A3B.ref")
    killed = 0
    args = ("train", "--work", str(work), "--treatment", "A3B", "--iters", "2", "--threads", "1")
    present = kill_when(runs / "A3B" / "solver.prototxt", *args)
    assert "train_val.prototxt" in present and "surgery.txt" not in present, f"not inside surgery: {present}"
    for delay in [None] + [f * wall for f in FRACTIONS]:
        if delay is not None:
            killed += kill_after(delay, *args)
        released(runs / "A3B")
        finish("train", "--work", str(work), "--treatment", "A3B", "--iters", "2", "--threads", "1")
        got = {name: (runs / "A3B" / name).read_bytes() for name in want}
        assert got == want, f"killed after {delay} s"
        assert (runs / "A3B" / "result.json").is_file()
        (runs / "A3B").rename(runs / f"A3B.{delay or 0:.2f}")
    assert killed >= 3, "the kills should land while the command works"
