"""The kit's Caffe build: the real binary honours --weights and frozen layers stay fixed."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from google.protobuf import text_format

from kitcore.caffe_env import import_caffe, pb2, tool

from conftest import ROOT, run_caffe

caffe_pb2 = pb2()

NET = """
name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {
    shape { dim: 8 dim: 1 dim: 12 dim: 12 } shape { dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: CONV_LR decay_mult: CONV_LR } param { lr_mult: CONV_LR decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def _write(tmp_path, conv_lr: int, max_iter: int, seed: int) -> None:
    (tmp_path / "net.prototxt").write_text(NET.replace("CONV_LR", str(conv_lr)))
    solver = caffe_pb2.SolverParameter(net="net.prototxt", base_lr=0.1, lr_policy="fixed",
                                       max_iter=max_iter, display=1, snapshot_prefix="snap",
                                       random_seed=seed, solver_mode=caffe_pb2.SolverParameter.CPU)
    (tmp_path / "solver.prototxt").write_text(text_format.MessageToString(solver))


def _params(caffe, tmp_path, model: str) -> dict:
    net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST, weights=str(tmp_path / model))
    return {k: [b.data.copy() for b in v] for k, v in net.params.items()}


def _source_model(caffe, tmp_path) -> dict:
    """A source .caffemodel whose weights differ from what seed 7's fillers give."""
    caffe.set_random_seed(12345)
    net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST)
    net.save(str(tmp_path / "source.caffemodel"))
    return {k: [b.data.copy() for b in v] for k, v in net.params.items()}


@pytest.mark.parametrize("with_weights", [True, False])
def test_weights_flag_loads_the_source_model(tmp_path, with_weights):
    caffe = import_caffe()
    _write(tmp_path, conv_lr=1, max_iter=0, seed=7)
    src = _source_model(caffe, tmp_path)
    args = ["train", "--solver=solver.prototxt"] + (["--weights=source.caffemodel"] if with_weights else [])
    run_caffe(args, tmp_path, tmp_path / "train.log")
    got = _params(caffe, tmp_path, "snap_iter_0.caffemodel")  # before the first update
    same = np.array_equal(got["conv1"][0], src["conv1"][0])
    assert same is with_weights
    log = (tmp_path / "train.log").read_text()
    assert ("Finetuning from source.caffemodel" in log) is with_weights


def test_frozen_layers_are_bit_identical_and_skip_backward(tmp_path):
    caffe = import_caffe()
    _write(tmp_path, conv_lr=0, max_iter=5, seed=7)
    src = _source_model(caffe, tmp_path)
    run_caffe(["train", "--solver=solver.prototxt", "--weights=source.caffemodel"], tmp_path,
              tmp_path / "train.log")
    got = _params(caffe, tmp_path, "snap_iter_5.caffemodel")
    assert len(got["conv1"]) == len(src["conv1"]) == 2, "conv1's weights and biases in both"
    assert all(np.array_equal(a, b) for a, b in zip(got["conv1"], src["conv1"]))
    assert not np.array_equal(got["fc"][0], src["fc"][0]), "the learning layer did not move"
    log = (tmp_path / "train.log").read_text()
    assert "conv1 does not need backward computation." in log
    assert "fc needs backward computation." in log


def test_tools_are_real_binaries():
    for name in ("caffe", "compute_image_mean", "upgrade_net_proto_text"):
        with open(tool(name), "rb") as f:
            assert f.read(4) == b"\x7fELF", name


def _key_run(kit, tmp_path, **env) -> subprocess.CompletedProcess:
    """build_caffe.sh of the kit copy KIT with CAFFE_KEY_ONLY=1: stdout is the cache folder it would build into."""
    proc = subprocess.run(["bash", str(kit / "caffe_build" / "build_caffe.sh"), str(ROOT / ".venv")], text=True,
                          capture_output=True, check=False,
                          env={**os.environ, "CAFFE_KEY_ONLY": "1", "CAFFE_CACHE": str(tmp_path / "cache"), **env})
    assert proc.returncode == 0, proc.stderr
    return proc


def _key(kit, tmp_path, **env) -> str:
    """The cache folder build_caffe.sh of the kit copy KIT would build into (CAFFE_KEY_ONLY=1)."""
    return _key_run(kit, tmp_path, **env).stdout.strip()


def test_a_cpu_build_is_keyed_by_its_own_files_only(tmp_path):
    """Editing the CUDA resolver, the host prefix script or the CUDA patches leaves the CPU builds' keys alone;
    a oneDNN patch changes the fast builds' keys only; editing build_caffe.sh or a CPU patch changes them all."""
    kit = tmp_path / "kit"
    shutil.copytree(ROOT / "caffe_build", kit / "caffe_build", ignore=shutil.ignore_patterns("__pycache__"))
    builds = [{"CUDA": "0", "CAFFE_OPENCV": "0"}, {"CUDA": "0", "CAFFE_OPENCV": "1"},
              {"CUDA": "0", "CAFFE_OPENCV": "0", "CAFFE_REFERENCE": "1"}]
    keys = [_key(kit, tmp_path, **b) for b in builds]
    assert len(set(keys)) == 3, keys
    cuda_patches = [f"patches/cuda/{p.name}" for p in (kit / "caffe_build" / "patches" / "cuda").glob("*")]
    for other in ["cuda_toolkit.py", "host_prefix.sh", *cuda_patches]:
        with open(kit / "caffe_build" / other, "a") as f:
            f.write("\n# edited\n")
    assert [_key(kit, tmp_path, **b) for b in builds] == keys
    with open(sorted((kit / "caffe_build" / "patches" / "dnnl").glob("*.patch"))[-1], "a") as f:
        f.write("\n# edited\n")  # the oneDNN layers: the fast builds' (DNNL=1 by default), not the reference's
    new = [_key(kit, tmp_path, **b) for b in builds]
    assert new[0] != keys[0] and new[1] != keys[1] and new[2] == keys[2], (new, keys)
    keys = new
    first_patch = sorted((kit / "caffe_build" / "patches" / "base").glob("*.patch"))[0]
    for edited in [first_patch, kit / "caffe_build" / "build_caffe.sh"]:
        with open(edited, "a") as f:
            f.write("\n# edited\n")
        new = [_key(kit, tmp_path, **b) for b in builds]
        assert all(n != k for n, k in zip(new, keys)), edited
        keys = new


def test_a_cpu_without_sse41_builds_caffes_own_layers(tmp_path):
    """The build's oneDNN check, on a CPU description without SSE4.1: one line, and the key of DNNL=0."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 ssse3\n")
    plain = {"CAFFE_OPENCV": "0", "CUDA": "0"}
    old = _key_run(ROOT, tmp_path, **plain, CAFFE_CPUINFO=str(cpuinfo))
    assert old.stderr.strip().splitlines() == [
        "oneDNN cannot run here (this CPU lacks SSE4.1, the least oneDNN runs on): "
        "building Caffe's own CPU layers (as DNNL=0)"], old.stderr
    keys = {"old cpu": old.stdout.strip(), "dnnl=0": _key(ROOT, tmp_path, **plain, DNNL="0"),
            "dnnl=1": _key(ROOT, tmp_path, **plain, DNNL="1")}
    assert keys["old cpu"] == keys["dnnl=0"] != keys["dnnl=1"], keys
