"""Resume after kill -9, signals and a full disk, with the real `caffe` binary (slow).

Bit identity: a run killed with a real kill -9 of `caffe` between snapshots,
then resumed, ends with the same weights as an uninterrupted run. Stock Caffe
(this rc3 fork included) saves neither the Data layer's LMDB cursor nor the RNG
states that Dropout and `mirror` draw from; the kit's Caffe patch 07
(caffe_build/patches/base/07-deterministic-resume.patch) makes both follow the iteration.
So this test trains the kit's own FA-20 net, Dropout and mirror included, on a
train LMDB whose size is no multiple of the snapshot interval's records: the
resumed run's reader starts mid-database after wrapping once.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

from generators import netgen

from conftest import ROOT

pytestmark = pytest.mark.slow
BATCH, SNAP, ITERS = 64, 10, 30
RECORDS = BATCH * SNAP - 13  # the train LMDB: the first epoch ends 13 records before snapshot 10


def kit(*args: str, **kw) -> subprocess.Popen:
    """Start `python -m MODULE ARGS` as its own process (1 BLAS thread)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def wait_for(pred, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.1)


def caffe_child(parent: int, timeout: float = 60.0) -> int:
    """Pid of the `caffe` process whose parent is `parent`, once it has started (the kit writes its restart
    marker into train.log before it starts caffe: under load the child may come a moment later)."""
    found: list[str] = []

    def started() -> bool:
        found[:] = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
        return bool(found)
    wait_for(started, timeout)
    return int(found[0])


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """Split random0 of FA-20, plus a train LMDB of its first RECORDS records (no epoch ends at a snapshot)."""
    work = tmp_path_factory.mktemp("resume")
    proc = kit("runner.cli", "split-random", "--seed", "0", "--work", str(work))
    assert proc.wait() == 0, proc.stderr.read()
    data = work / "fa20" / "random0" / "data"
    src, dst = lmdb.open(str(data / "A_train_lmdb"), readonly=True, lock=False), lmdb.open(str(data / "epoch_lmdb"))
    with src.begin() as txn, dst.begin(write=True) as out:
        for _, (key, value) in zip(range(RECORDS), txn.cursor()):
            out.put(key, value)
    src.close()
    dst.close()
    return work


def deterministic_run(split: Path, root: Path) -> Path:
    """A run folder of the kit's FA-20 net (Dropout, mirror) on the small train LMDB, random_seed 7."""
    data = split / "fa20" / "random0" / "data"
    net = netgen.load_net(ROOT / "prototxt" / "fa20_caffenet.prototxt")
    assert any(layer.type == "Dropout" for layer in net.layer)
    for layer in net.layer:
        if layer.type == "Data":
            train = layer.include[0].phase == 0
            layer.data_param.source = str(data / ("epoch_lmdb" if train else "A_val_lmdb"))
            if train:
                layer.data_param.batch_size = BATCH
                assert layer.transform_param.mirror
            layer.transform_param.mean_file = str(data / "A_mean.binaryproto")
    net.layer[-3].inner_product_param.num_output = 10
    solver = netgen.make_solver(netgen.load_solver(ROOT / "solvers" / "fa20_solver.prototxt"),
                                "train_val.prototxt", random_seed=7)
    solver.max_iter, solver.snapshot, solver.test_interval, solver.test_initialization = ITERS, SNAP, 1000, False
    solver.display = 1
    root.mkdir(parents=True)
    (root / "train_val.prototxt").write_text(netgen.to_text(net))
    (root / "solver.prototxt").write_text(netgen.to_text(solver))
    return root


def final(run: Path) -> bytes:
    return (run / "snapshots" / f"snap_iter_{ITERS}.caffemodel").read_bytes()


@pytest.fixture(scope="module")
def reference(split, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    run = deterministic_run(split, tmp_path_factory.mktemp("ref") / "run")
    proc = kit("runner.resume", str(run), "--threads", "1")
    assert proc.wait() == 0, proc.stderr.read()
    return run


def test_kill9_of_caffe_between_snapshots_then_rerun_is_bit_identical(split, reference, tmp_path):
    run = deterministic_run(split, tmp_path / "run")
    proc = kit("runner.resume", str(run), "--threads", "1")
    wait_for(lambda: "Iteration 14" in ((run / "train.log").read_text() if (run / "train.log").exists() else ""))
    assert (run / "snapshots" / "snap_iter_10.solverstate").exists()
    os.kill(caffe_child(proc.pid), signal.SIGKILL)
    assert proc.wait() == 2
    err = proc.stderr.read().strip().splitlines()
    assert err[-1].startswith("error: caffe train of run failed (exit -9)") and "; fix: " in err[-1]
    assert not (run / "snapshots" / "snap_iter_20.solverstate").exists()
    again = kit("runner.resume", str(run), "--threads", "1")
    assert again.wait() == 0, again.stderr.read()
    assert final(run) == final(reference)
    log = (run / "train.log").read_text()
    assert "resuming from snap_iter_10.solverstate (iteration 10)" in log
    # patch 07: the train reader continues where the killed run's was (640 records read, 627 in the LMDB)
    assert f"resumed at record {BATCH * SNAP % RECORDS} of {RECORDS} (10 batches done)" in log


def test_truncated_newest_snapshot_is_set_aside(split, reference, tmp_path):
    run = deterministic_run(split, tmp_path / "run")
    (run / "snapshots").mkdir()
    for it in (10, 20):
        for ext in ("caffemodel", "solverstate"):
            shutil.copy(reference / "snapshots" / f"snap_iter_{it}.{ext}", run / "snapshots")
    model = run / "snapshots" / "snap_iter_20.caffemodel"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # as a kill -9 mid-write leaves it
    proc = kit("runner.resume", str(run), "--threads", "1")
    assert proc.wait() == 0
    err = proc.stderr.read()
    assert "snap_iter_20.solverstate is incomplete" in err and "using the previous one" in err
    assert (run / "snapshots" / "snap_iter_20.caffemodel.incomplete").exists()
    assert "resuming from snap_iter_10.solverstate" in (run / "train.log").read_text()
    assert final(run) == final(reference)


def test_full_disk_is_one_line_error_then_rerun_resumes(split, reference, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        run = deterministic_run(split, mnt / "run")  # room for one snapshot (2.8 MB), not two
        proc = kit("runner.resume", str(run), "--threads", "1")
        assert proc.wait() == 2
        err = proc.stderr.read().strip().splitlines()
        assert err[-1].startswith(f"error: disk full while writing {run} (") and "; fix: free space" in err[-1]
        assert "Check failed: proto.SerializeToOstream(&output)" in (run / "train.log").read_text()
        assert (run / "snapshots" / "snap_iter_20.caffemodel").stat().st_size < (
            run / "snapshots" / "snap_iter_10.caffemodel").stat().st_size  # a truncated file, left by caffe
        subprocess.run(["mount", "-o", "remount,size=32m", str(mnt)], check=True)
        again = kit("runner.resume", str(run), "--threads", "1")
        assert again.wait() == 0, again.stderr.read()
        assert "resuming from snap_iter_10.solverstate" in (run / "train.log").read_text().split("####")[-1]
        assert final(run) == final(reference)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_signals_snapshot_then_rerun_resumes_with_the_restart_marked(split):
    work = split
    args = ("runner.cli", "train", "--work", str(work), "--seed", "0", "--treatment", "baseB",
            "--iters", "30", "--threads", "1")
    run = work / "fa20" / "random0" / "runs" / "baseB"
    proc = kit(*args)
    wait_for(lambda: (run / "snapshots" / "snap_iter_10.solverstate").exists())
    wait_for(lambda: re.search(r"\] Iteration 1[1-9]\b", (run / "train.log").read_text()))  # past snapshot 10
    proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 128 + signal.SIGTERM
    assert "stopped at iteration 1" in proc.stderr.read()
    stopped = sorted(int(p.stem.split("_")[-1]) for p in (run / "snapshots").glob("*.solverstate"))
    assert stopped[-1] > 10 and not (run / "result.json").exists()
    status = subprocess.run([sys.executable, "-m", "runner.cli", "status", "--work", str(work), "--treatments",
                             "baseB", "--iters", args[args.index("--iters") + 1]], cwd=ROOT, capture_output=True,
                            text=True)
    assert f"resumable at iter {stopped[-1]}" in status.stdout
    proc = kit(*args)  # now kill -9 the kit itself: caffe gets SIGINT (PR_SET_PDEATHSIG) and snapshots
    wait_for(lambda: (run / "train.log").read_text().count("#### transfer-kit") >= 3)
    caffe = caffe_child(proc.pid)
    time.sleep(3)
    proc.kill()
    wait_for(lambda: subprocess.run(["kill", "-0", str(caffe)], capture_output=True).returncode != 0, 30)
    assert "Optimization stopped early" in (run / "train.log").read_text().split("#### transfer-kit")[-1]
    proc = kit(*args)
    assert proc.wait() == 0, proc.stderr.read()
    log = (run / "train.log").read_text()
    assert log.count("resuming from snap_iter_") == 2 and "stopped early by request" in log
    assert '"caffe_starts": 3' in (run / "result.json").read_text()
