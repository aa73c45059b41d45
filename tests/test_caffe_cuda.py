"""GPU Caffe built by the kit (`make caffe CUDA=1`), checked where there is no GPU.

`make test-cuda` builds it (or finds it in the cache) for one architecture, records its root
in .venv/caffe_cuda_root and runs this file with KIT_TEST_CUDA=1, under which a missing
build fails instead of skipping. In `make test` (no CUDA build) these skip. What a CPU machine
can check: the libraries it links and finds, pycaffe, Caffe's and the kit's answers to a
missing GPU, and the wiring (CUDA=1 in, CUDA=0 back). What needs a GPU is `make gpu-check`.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"


@pytest.fixture(scope="module")
def cuda_root() -> Path:
    record = VENV / "caffe_cuda_root"
    if not record.is_file() or not (Path(record.read_text().strip()) / ".kit-build-complete").is_file():
        if os.environ.get("KIT_TEST_CUDA") == "1":
            pytest.fail("no finished CUDA build recorded in .venv/caffe_cuda_root; make test-cuda builds it")
        pytest.skip("no CUDA build of Caffe here (make test-cuda builds one)")
    return Path(record.read_text().strip())


def kit_cuda(root: Path) -> dict[str, str]:
    """ROOT/.kit-cuda: what caffe_build/cuda_toolkit.py resolved for this build."""
    import shlex
    return {k: shlex.split(v)[0] if v else "" for k, v in
            (ln.split("=", 1) for ln in (root / ".kit-cuda").read_text().splitlines() if "=" in ln)}


def quiet_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CAFFE_ROOT"}
    env.update(GLOG_logtostderr="1", GLOG_minloglevel="1", **extra)
    return env


def libcaffe(root: Path) -> Path:
    return next(p for p in (root / "build/lib").glob("libcaffe.so*") if not p.is_symlink())


def test_the_build_says_it_is_cuda_and_what_it_was_built_with(cuda_root):
    assert (cuda_root / ".kit-device").read_text().strip() == "cuda"
    info = kit_cuda(cuda_root)
    assert info["CUDA_VERSION"].split(".")[0] in ("11", "12", "13")
    assert info["CUDA_ARCHS"] and all(int(a) >= 70 for a in info["CUDA_ARCHS"].split())
    config = (cuda_root / "Makefile.config").read_text()
    assert "CPU_ONLY" not in config and f"CUDA_DIR := {info['CUDA_DIR']}" in config
    assert ("USE_CUDNN := 1" in config) == bool(info["CUDNN_VERSION"])


def test_libcaffe_links_and_finds_the_cuda_runtime_cublas_curand_and_cudnn(cuda_root):
    lib = libcaffe(cuda_root)
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, check=True).stdout
    wanted = ["libcudart.so", "libcublas.so", "libcurand.so"]
    if kit_cuda(cuda_root)["CUDNN_VERSION"]:
        wanted.append("libcudnn.so")
    for name in wanted:
        assert f"[{name}." in needed, f"libcaffe does not link {name}"
        line = next(ln for ln in ldd.splitlines() if ln.strip().startswith(name))
        assert "not found" not in line and "=> /" in line, line
    assert "not found" not in ldd, ldd


def test_pycaffe_imports_has_set_mode_gpu_and_runs_a_net_on_the_cpu(cuda_root, tmp_path):
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
                   'layer { name: "y" type: "ReLU" bottom: "x" top: "y" relu_param { engine: CAFFE } }\n')
    # engine CAFFE: in a cuDNN build the default engine is cuDNN, whose set-up needs a GPU even in CPU mode
    code = ("import caffe, numpy as np; assert callable(caffe.set_mode_gpu) and callable(caffe.set_device); "
            f"caffe.set_mode_cpu(); n = caffe.Net({str(net)!r}, caffe.TEST); "
            "n.blobs['x'].data[...] = [[-1, 0, 2], [3, -4, 5]]; "
            "n.forward(); print(n.blobs['y'].data.tolist())")
    proc = subprocess.run([str(VENV / "bin/python"), "-c", code], capture_output=True, text=True, check=False,
                          env=quiet_env(PYTHONPATH=str(cuda_root / "python")), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[[0.0, 0.0, 2.0], [3.0, 0.0, 5.0]]"


def test_device_query_without_a_gpu_is_one_line_naming_the_cuda_error(cuda_root):
    proc = subprocess.run([str(cuda_root / "build/tools/caffe"), "device_query", "-gpu", "0"], capture_output=True,
                          text=True, env=quiet_env(), check=False, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: CUDA: ") and "from cudaGetDeviceCount" in lines[0]
    assert "CPU-only" not in lines[0] and "; fix: run on a machine with an NVIDIA GPU" in lines[0]


def test_the_kits_gpu_preflight_names_the_missing_device_and_the_fix(cuda_root):
    code = ("from runner.resume import check_gpu\nfrom kitcore.errors import KitError\n"
            "try:\n    check_gpu()\nexcept KitError as e:\n    print(e)\nelse:\n    print('no error')\n")
    proc = subprocess.run([str(VENV / "bin/python"), "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=quiet_env(CAFFE_ROOT=str(cuda_root)), check=False, timeout=300)
    out = proc.stdout.strip()
    assert out.startswith("--gpu needs a Caffe built with CUDA and a visible GPU; this one says: CUDA: "), out
    assert "CPU-only" not in out and "fix: run on a machine with an NVIDIA GPU and its driver" in out


def test_make_caffe_cuda_1_wires_the_gpu_build_and_cuda_0_wires_the_cpu_one_back(cuda_root):
    """CUDA=1 wires the GPU build, no CUDA keeps it, CUDA=0 wires the CPU one; whichever was wired before
    (make caffe CUDA=1 then make test-cuda: the GPU one) is wired again at the end."""
    before = (VENV / "caffe_root").read_text().strip()
    was = (Path(before) / ".kit-device").read_text().strip()
    assert was in ("cpu", "cuda")
    env = {k: v for k, v in os.environ.items() if k not in ("CAFFE_ROOT", "CUDA", "CAFFE_OPENCV")}
    env["CUDA_ARCH"] = kit_cuda(cuda_root)["CUDA_ARCHS"]
    build = [str(ROOT / "caffe_build/build_caffe.sh"), str(VENV)]

    def wire(cuda: str | None, **extra) -> subprocess.CompletedProcess:
        proc = subprocess.run(["bash", *build], capture_output=True, text=True, check=False, timeout=3600,
                              env={**env, **({"CUDA": cuda} if cuda else {}), **extra})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    def wired() -> Path:
        root = Path((VENV / "caffe_root").read_text().strip())
        assert os.path.realpath(VENV / "bin/caffe") == os.path.realpath(root / "build/tools/caffe")
        return root
    key = wire("1", CAFFE_KEY_ONLY="1").stdout.strip()
    if key != str(cuda_root):  # the kit changed since: this test would rebuild it (20 min and more)
        (pytest.fail if os.environ.get("KIT_TEST_CUDA") == "1" else pytest.skip)(
            f"the recorded CUDA build {cuda_root} is not the one build_caffe.sh makes now ({key}); make test-cuda")
    try:
        assert "already built" in wire("1").stderr and wired() == cuda_root
        assert "keeping the CUDA Caffe build wired" in wire(None).stderr and wired() == cuda_root
        wire("0")
        assert (wired() / ".kit-device").read_text().strip() == "cpu"
    finally:
        wire("1" if was == "cuda" else "0")
    assert str(wired()) == before
