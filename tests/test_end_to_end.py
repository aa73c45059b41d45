"""End to end on FA-20 with the real `transfer-kit` CLI and the real `caffe` binary (slow).

One small split (seed 0), baseA, the frozen transfer A3B and the fine-tuned
A3B+ at a tiny budget, then the results table and the figure, exactly as a user
runs them. Checks what the paper's method relies on: the copied layers are the
base net's bit for bit when frozen, they move when fine-tuned, Caffe loaded the
init model and skipped backward for the frozen layers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kitcore.caffe_env import pb2
from kitcore.profiles import profile

from conftest import ROOT

caffe_pb2 = pb2()

pytestmark = pytest.mark.slow
ITERS = "30"


def kit(work: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `transfer-kit ARGS --work WORK` as a user would (1 BLAS thread)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "runner.cli", *args, "--work", str(work)], cwd=ROOT,
                          capture_output=True, text=True, env=env, check=False)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def blobs(model: Path) -> dict[str, list[np.ndarray]]:
    """Every layer's parameter blobs of a .caffemodel, read with caffe_pb2 (no net needed)."""
    net = caffe_pb2.NetParameter.FromString(model.read_bytes())
    return {layer.name: [np.asarray(b.data, np.float32) for b in layer.blobs]
            for layer in net.layer if layer.blobs}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work folder with split random0, baseA, A3B and A3B+ trained for ITERS iterations."""
    work = tmp_path_factory.mktemp("e2e")
    ok(kit(work, "split-random", "--seed", "0"))
    for name in ("baseA", "A3B", "A3B+"):
        ok(kit(work, "train", "--seed", "0", "--treatment", name, "--iters", ITERS, "--threads", "1"))
    return work


def runs(work: Path) -> Path:
    return work / "fa20" / "random0" / "runs"


def final_model(run: Path) -> Path:
    return run / json.loads((run / "result.json").read_text())["model"]


def test_runs_finish_with_a_result(work):
    for name in ("baseA", "A3B", "A3B+"):
        result = json.loads((runs(work) / name / "result.json").read_text())
        assert result["treatment"] == name and result["iterations"] == int(ITERS)
        assert 0.0 <= result["score"] <= 1.0
        assert final_model(runs(work) / name).is_file()
        meta = json.loads((runs(work) / name / "run.json").read_text())
        assert meta["max_iter"] == int(ITERS) and meta["split"] == "random0"
        assert meta["profile"] == profile("fa20").record(), "run.json records the dataset's whole profile"


def test_frozen_transfer_keeps_the_base_layers_bit_for_bit(work):
    base = blobs(final_model(runs(work) / "baseA"))
    init = blobs(runs(work) / "A3B" / "init.caffemodel")
    final = blobs(final_model(runs(work) / "A3B"))
    for layer in ("conv1", "conv2", "conv3"):
        assert len(base[layer]) == len(init[layer]) == len(final[layer]) == 2, layer  # weights and biases
        for b, i, f in zip(base[layer], init[layer], final[layer]):
            assert np.array_equal(b, i) and np.array_equal(b, f), layer
    assert "conv4" not in final and "conv4-new" in final  # re-initialised above n
    assert not np.array_equal(init["conv4-new"][0], final["conv4-new"][0])  # and trained
    log = (runs(work) / "A3B" / "train.log").read_text()
    assert "Finetuning from init.caffemodel" in log
    for layer in ("conv1", "conv2", "conv3"):
        assert f"{layer} does not need backward computation" in log
    assert "conv4-new needs backward computation" in log


def test_finetuned_transfer_starts_from_the_base_and_moves(work):
    base = blobs(final_model(runs(work) / "baseA"))
    init = blobs(runs(work) / "A3B+" / "init.caffemodel")
    final = blobs(final_model(runs(work) / "A3B+"))
    assert np.array_equal(base["conv1"][0], init["conv1"][0])
    assert not np.array_equal(init["conv1"][0], final["conv1"][0])
    assert "conv1 does not need backward computation" not in (runs(work) / "A3B+" / "train.log").read_text()


def test_rerun_of_a_finished_run_changes_nothing(work):
    run = runs(work) / "A3B"
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
    proc = ok(kit(work, "train", "--seed", "0", "--treatment", "A3B", "--iters", ITERS))
    assert "finished; keeping it" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()} == before


def test_plots_table_and_figure(work):
    proc = ok(kit(work, "plots", "--seed", "0"))
    results = work / "fa20" / "random0" / "results"
    assert (results / "figure2.png").stat().st_size > 10_000
    assert (results / "figure2.pdf").is_file()
    text = (results / "results.csv").read_text().splitlines()
    treatments = sorted(line.split(",")[2] for line in text[1:])
    assert treatments == ["A3B", "A3B+", "baseA"]
    assert "figure_png" in proc.stdout
    assert (runs(work) / "A3B" / "curve.test.csv").is_file()


def test_transfer_without_its_base_is_a_one_line_error(work):
    proc = kit(work, "train", "--seed", "0", "--treatment", "B2A", "--iters", ITERS)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: missing base model for B2A")
    assert "make train TREATMENT=baseB DATASET=fa20 PROTOCOL=random SEED=0" in lines[0]
    assert not (runs(work) / "B2A").exists()


def test_gpu_mode_on_a_cpu_only_caffe_is_a_one_line_error(work):
    """--gpu is checked with `caffe device_query -gpu 0` before the run folder is touched."""
    proc = kit(work, "train", "--seed", "0", "--treatment", "baseB", "--iters", ITERS, "--gpu")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --gpu needs a Caffe built with CUDA and a visible GPU")
    assert "Cannot use GPU in CPU-only Caffe" in lines[0] and "drop --gpu / MODE=cpu" in lines[0]
    assert not (runs(work) / "baseB").exists()


def test_random_frozen_weights_on_all_classes(tmp_path):
    """randfrozen2 on FA-20's 20 classes: init from seeded fillers, conv1-2 stay at it, fc8 is 20 wide."""
    from data_prep.prepare import prepare_whole
    prepare_whole(tmp_path, "fa20")
    ok(kit(tmp_path, "train", "--protocol", "whole", "--treatment", "randfrozen2", "--iters", "10",
           "--threads", "1"))
    run = tmp_path / "fa20" / "all" / "runs" / "randfrozen2"
    init, final = blobs(run / "init.caffemodel"), blobs(final_model(run))
    for layer in ("conv1", "conv2"):
        assert len(init[layer]) == len(final[layer]) == 2, layer
        assert all(np.array_equal(i, f) for i, f in zip(init[layer], final[layer])), layer
    assert not np.array_equal(init["conv3"][0], final["conv3"][0])
    assert final["fc8"][0].size == 20 * 256
    assert "nothing copied" in (run / "surgery.txt").read_text()
    assert json.loads((run / "run.json").read_text())["split"] == "all"
