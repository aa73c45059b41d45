"""The paper protocol end to end at toy size: split, database, generate, surgery, `caffe train`, log.

A tiny ILSVRC-layout folder of JPEGs (8 classes, `data_prep.imagenet_synth`)
is split by the kit's ImageNet code (authors' seed-0 procedure: 4 classes per
half) and put into LMDBs of 256x256 Datums with per-half means by
`compute_image_mean` (`data_prep.imagenet.prepare_imagenet`); then baseA and
A3B are generated from the paper's CaffeNet template and solver (fc8 at 1000 outputs,
as the authors) with only the batch reduced by the named options, and trained
for 4 iterations by the real `caffe` binary on one thread.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep.imagenet import prepare_imagenet
from data_prep.imagenet_synth import make_synthetic_ilsvrc
from generators import netgen
from generators.runfiles import make_init, run_files
from kitcore.caffe_env import pb2
from kitcore.caffe_log import parse_log
from kitcore.profiles import profile
from kitcore.treatments import parse

from conftest import ROOT, run_caffe

caffe_pb2 = pb2()
WNIDS = tuple(f"n{c + 1:08d}" for c in range(8))
ITERS = 4


def _generate(run, sdir, name, num_classes):
    """The run files `transfer-kit train` writes (generators.runfiles.run_files), at toy batch and length."""
    t = parse(name)
    files = run_files(profile("imagenet"), t, num_classes, seed=0, data_root=str(sdir / "data"), iters=ITERS,
                      batch=4, test_iter=1, snapshot=ITERS)
    (run / "snapshots").mkdir(parents=True)
    (run / "train_val.prototxt").write_text(netgen.to_text(files.net))
    (run / "solver.prototxt").write_text(netgen.to_text(files.solver))
    return t, files


def _conv_blobs(model):
    msg = caffe_pb2.NetParameter()
    msg.ParseFromString(model.read_bytes())
    return {layer.name: [np.array(b.data, np.float32) for b in layer.blobs]
            for layer in msg.layer if layer.type == "Convolution"}


@pytest.mark.slow
def test_paper_protocol_base_then_transfer(tmp_path):
    images, lists = make_synthetic_ilsvrc(tmp_path / "ilsvrc", wnids=WNIDS, train_per_class=3, val_per_class=2)
    sdir = prepare_imagenet(tmp_path / "work", lists, "random", seed=0, images=images)
    manifest = json.loads((sdir / "manifest.json").read_text())
    assert {h: len(c) for h, c in manifest["split"]["halves"].items()} == {"A": 4, "B": 4}
    assert manifest["files"]["data/A_train_lmdb"]["height"] == 256

    base_run = sdir / "runs" / "baseA"
    _, base_files = _generate(base_run, sdir, "baseA", num_classes=4)
    base_net = base_files.net
    assert netgen.weight_layers(base_net)[-1].inner_product_param.num_output == 1000, "the authors' fc8 width"
    run_caffe(["train", "--solver=solver.prototxt"], base_run, base_run / "train.log")
    base_model = base_run / "snapshots" / f"snap_iter_{ITERS}.caffemodel"

    run = sdir / "runs" / "A3B"
    t, files = _generate(run, sdir, "A3B", num_classes=4)
    assert files.starts_from_init and files.seed == 1
    audit = make_init(profile("imagenet"), files, t, run / "init.caffemodel", (base_net, base_model))
    assert sum("copied from base" in line for line in audit) == 6 and sum("dropped" in line for line in audit) == 10
    run_caffe(["train", "--solver=solver.prototxt", "--weights=init.caffemodel"], run, run / "train.log")

    text = (run / "train.log").read_text()
    assert "Finetuning from init.caffemodel" in text and "conv3 does not need backward computation" in text
    base, moved = _conv_blobs(base_model), _conv_blobs(run / "snapshots" / f"snap_iter_{ITERS}.caffemodel")
    for name in ("conv1", "conv2", "conv3"):
        assert len(base[name]) == len(moved[name]) == 2, f"{name}: weights and biases in both models"
        assert all(np.array_equal(a, b) for a, b in zip(base[name], moved[name])), f"{name} copied and frozen"
    assert "conv4" not in moved and moved["conv4-new"][0].shape == base["conv4"][0].shape
    for log in (base_run / "train.log", run / "train.log"):
        parsed = parse_log([log])
        assert parsed.train[0]["NumIters"] == 0 and np.isfinite(parsed.train[0]["loss"])
        assert [row["NumIters"] for row in parsed.test] == list(range(1, ITERS + 1)), "no test at iteration 0"
        assert all(0.0 <= a <= 1.0 for a in parsed.test_accuracies) and len(parsed.test_accuracies) == ITERS
        assert all("loss" in row for row in parsed.test), "the test loss (2014's Test score #1) is logged"


def _kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, check=False)


@pytest.mark.slow
def test_imagenet_runs_through_the_cli(tmp_path):
    """`transfer-kit train --dataset imagenet`: a base and a fine-tuned transfer, and a reduced-volume base."""
    images, lists = make_synthetic_ilsvrc(tmp_path / "ilsvrc", wnids=WNIDS, train_per_class=3, val_per_class=2)
    work = tmp_path / "work"
    prepare_imagenet(work, lists, "random", seed=0, images=images)
    prepare_imagenet(work, lists, "reduced", per_class=2, images=images)
    toy = ("--dataset", "imagenet", "--work", str(work), "--iters", "2", "--batch", "4", "--test-iter", "1",
           "--threads", "1")
    for args in (("--treatment", "baseA"), ("--treatment", "A2B+"),
                 ("--protocol", "reduced", "--per-class", "2", "--treatment", "base")):
        proc = _kit("train", *toy, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = work / "imagenet" / "random0" / "runs"
    solver = netgen.load_solver(runs / "A2B+" / "solver.prototxt")
    assert (solver.base_lr, solver.max_iter, list(solver.test_iter)) == (pytest.approx(0.01), 2, [1])
    record = json.loads((runs / "A2B+" / "run.json").read_text())
    assert record["base_model"].endswith("baseA/snapshots/snap_iter_2.caffemodel") and record["batch"] == 4
    assert "copied from base:conv2" in (runs / "A2B+" / "surgery.txt").read_text()
    reduced = work / "imagenet" / "reduced2" / "runs" / "base"
    assert netgen.load_solver(reduced / "solver.prototxt").base_lr == pytest.approx(0.0125)  # reduced-volume solver
    assert (reduced / "result.json").is_file()
    proc = _kit("train", *toy, "--protocol", "reduced", "--treatment", "base")
    assert proc.returncode == 2 and "needs k" in proc.stderr and "--per-class k" in proc.stderr
    proc = _kit("train", *toy, "--seed", "1", "--treatment", "baseA")
    assert proc.returncode == 2 and "make split-random DATASET=imagenet SEED=1 LISTS=dir IMAGES=dir" in proc.stderr
