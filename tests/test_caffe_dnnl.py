"""The CPU build's layers on oneDNN (`make caffe`, DNNL=1 where oneDNN runs): which code each layer runs.

The numbers are checked elsewhere on the same wired build: Caffe's own unit
tests with their gradient checks (test_caffe_speed: they build
ConvolutionLayer<float> etc. directly, which in a oneDNN build run oneDNN),
the FA-20 net against the reference build (test_caffe_speed), a run's
bit-identical resume after kill -9 (test_kill9, test_resume). Here: the build
links its own copy of libdnnl, every layer of the kit's FA-20 net says
"oneDNN" in the log, `engine: CAFFE` gets Caffe's code, oneDNN runs one thread
as the kit's runs ask (OPENBLAS_NUM_THREADS=1), OpenBLAS keeps one thread
beside oneDNN's however `caffe` is called. A CPU without SSE4.1 getting
Caffe's own layers is a build-key test (test_caffe_build).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from google.protobuf import text_format

from generators.netgen import input_net, load_net
from kitcore.caffe_env import caffe_engine, caffe_root

from conftest import ROOT

pytestmark = pytest.mark.slow
REFERENCE_ONLY = "Caffe's CPU code, not oneDNN (only oneDNN's reference code for this shape on this CPU)"
LAYERS = ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3", "relu3", "conv4",
          "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7", "relu7", "fc8"]


@pytest.fixture(scope="module")
def dnnl_root() -> Path:
    """The wired build, when it runs oneDNN; else skip with the reason its build recorded."""
    root = caffe_root()
    assert root is not None, "no Caffe wired into the venv; fix: make caffe"
    engine = caffe_engine(root)
    if engine != "DNNL":
        why = root / ".kit-engine-why"
        pytest.skip(f"the wired Caffe runs its own CPU layers ({why.read_text().strip() if why.is_file() else engine})")
    return root


def _net(tmp_path: Path, caffe_engine: str | None = None) -> Path:
    """The FA-20 train net on Input blobs (batch 8); `caffe_engine`: that conv layer says engine: CAFFE."""
    net = input_net(load_net(ROOT / "prototxt" / "fa20_caffenet.prototxt"), 8, (1, 28, 28))
    for layer in net.layer:
        if layer.name == caffe_engine:
            layer.convolution_param.engine = layer.convolution_param.CAFFE
    path = tmp_path / "net.prototxt"
    path.write_text(text_format.MessageToString(net))
    return path


def _time(root: Path, net: Path, **env: str | None) -> str:
    """The log of one `caffe time` iteration of a net (GLOG at INFO, one BLAS thread as the kit's runs; `env` adds
    variables, None unsets one), with what oneDNN prints on stdout (ONEDNN_VERBOSE)."""
    run_env = {**{k: v for k, v in os.environ.items() if k not in ("GLOG_minloglevel", "OMP_NUM_THREADS")},
               "GLOG_logtostderr": "1", "OPENBLAS_NUM_THREADS": "1", **env}
    run_env = {k: v for k, v in run_env.items() if v is not None}
    proc = subprocess.run([str(root / "build" / "tools" / "caffe"), "time", "-model", str(net), "-iterations", "1"],
                          capture_output=True, text=True, env=run_env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_the_build_runs_its_own_copy_of_libdnnl(dnnl_root):
    ldd = subprocess.run(["ldd", str(dnnl_root / "build" / "tools" / "caffe.bin")], capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}).stdout
    line = next(ln for ln in ldd.splitlines() if "libdnnl.so.3" in ln)
    assert Path(line.split("=>")[1].split("(")[0].strip()).resolve() == \
        (dnnl_root / "build" / "lib" / "libdnnl.so.3").resolve(), line


def test_every_layer_of_the_fa20_net_runs_onednn_on_one_thread(dnnl_root, tmp_path):
    log = _time(dnnl_root, _net(tmp_path), ONEDNN_VERBOSE="1")
    chose = {ln.split("] Layer ")[1].split(" (")[0]: ln.split("): ", 1)[1] for ln in log.splitlines()
             if "] Layer " in ln and "): " in ln}
    # oneDNN 3.2 has an LRN backward kernel for AVX-512 only: elsewhere (AVX2) the LRN layers say so, once
    lrn_ok = {"oneDNN"} if " avx512f " in Path("/proc/cpuinfo").read_text() else {"oneDNN", REFERENCE_ONLY}
    wrong = {n: chose.get(n) for n in LAYERS if chose.get(n) not in (lrn_ok if n.startswith("norm") else {"oneDNN"})}
    assert not wrong, wrong
    info = [ln for ln in log.splitlines() if ln.startswith("onednn_verbose") and ",nthr:" in ln]
    assert info and all(",nthr:1" in ln for ln in info), info  # OPENBLAS_NUM_THREADS=1: one OpenMP thread


def test_engine_caffe_gets_caffes_own_code(dnnl_root, tmp_path):
    log = _time(dnnl_root, _net(tmp_path, caffe_engine="conv2"))
    assert "Layer conv2 (Convolution): Caffe's CPU code, not oneDNN (engine: CAFFE)" in log, log[-3000:]
    assert "Layer conv3 (Convolution): oneDNN" in log


@pytest.mark.parametrize("env", [{"OPENBLAS_NUM_THREADS": None}, {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
                                 {"OPENBLAS_NUM_THREADS": "3"}])
def test_openblas_keeps_one_thread_beside_onednns_however_caffe_is_called(dnnl_root, tmp_path, env):
    # `caffe` called by hand, with or without thread settings: OpenBLAS's pool would spin against oneDNN's OpenMP
    # threads, so the build keeps it at one (patch 10); oneDNN takes OMP_NUM_THREADS, else OPENBLAS_NUM_THREADS,
    # else one thread per core
    log = _time(dnnl_root, _net(tmp_path), **env)
    onednn = env.get("OMP_NUM_THREADS") or env.get("OPENBLAS_NUM_THREADS") or str(len(os.sched_getaffinity(0)))
    lines = [ln.split("] ", 1)[1] for ln in log.splitlines() if "] oneDNN threads: " in ln]
    assert lines == [f"oneDNN threads: {onednn}; OpenBLAS threads: 1 (one beside oneDNN's)"], lines


def _reordered_shapes(log: str) -> list[str]:
    """The shapes of the batch's tensors (8 x ...) that oneDNN reordered, one per reorder it ran."""
    return [ln.split(",")[-2] for ln in log.splitlines()
            if ln.startswith("onednn_verbose,exec,") and ",reorder," in ln and ln.split(",")[-2].startswith("8x")]


def test_activations_travel_between_onednn_layers_with_no_reorder(dnnl_root, tmp_path):
    # A oneDNN layer leaves its output in its primitive's blocked layout (SyncedMemory::layout()), and the next
    # one reads it there. conv3 -> relu3 -> conv4 -> relu4 -> conv5 (8x96x7x7) is convolutions only, on any CPU.
    shapes = _reordered_shapes(_time(dnnl_root, _net(tmp_path), ONEDNN_VERBOSE="1"))
    assert "8x96x7x7" not in shapes, shapes
    if " avx512f " not in Path("/proc/cpuinfo").read_text():
        return  # AVX2: oneDNN's pooling and LRN may take another block than its convolutions
    # AVX-512: pooling and LRN take the convolutions' nChw16c too. What is left is fc6's plain input: pool5's
    # output back into Caffe's layout, and fc6's diff into pool5's layout.
    assert set(shapes) == {"8x64x3x3"}, shapes


@pytest.mark.parametrize("engine", ["DNNL", "CAFFE"])
@pytest.mark.parametrize("threads", [1, 2, None])
def test_a_runs_threads_go_to_the_engines_pool(tmp_path, monkeypatch, engine, threads):
    # oneDNN's OpenMP threads get the run's threads and OpenBLAS one (two multi-thread pools spin against each
    # other); Caffe's own layers get them as OpenBLAS threads
    from kitcore.caffe_env import caffe_env  # noqa: PLC0415
    (tmp_path / ".kit-engine").write_text(engine + "\n")
    other = tmp_path / "other"  # a build of the other engine: `root` (as make bench times three builds) wins
    other.mkdir()
    (other / ".kit-engine").write_text({"DNNL": "CAFFE", "CAFFE": "DNNL"}[engine] + "\n")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    monkeypatch.setenv("CAFFE_ROOT", str(tmp_path))
    wired = caffe_env(threads)
    monkeypatch.setenv("CAFFE_ROOT", str(other))
    for env in (wired, caffe_env(threads, root=tmp_path)):
        if engine == "DNNL":
            assert env["OPENBLAS_NUM_THREADS"] == "1"
            assert env["OMP_NUM_THREADS"] == str(threads or len(os.sched_getaffinity(0)))
        else:
            assert env["OPENBLAS_NUM_THREADS"] == str(threads or 7)

