"""The kit's fast Caffe build computes what the build before its speed work computed.

- Its BLAS is the scipy-openblas32 wheel's OpenBLAS, copied into the build and
  linked by libcaffe; it picks a core type for this CPU (never the Prescott
  fallback of Debian's 0.3.21 on a CPU it does not know) and obeys
  OPENBLAS_CORETYPE where the environment sets it.
- Caffe's own unit tests (with their gradient checks) of every layer type the
  kit's nets use pass with that BLAS and the speed patches (caffe_build/unit_tests.sh).
- The FA-20 train net's forward outputs, backward diffs and parameter
  gradients from the same weights and inputs equal the reference build's
  (`make caffe-reference`: Debian's OpenBLAS, -O2, no speed patches) within
  a float tolerance: per blob, max |fast - reference| <= RTOL * max |reference|
  + ATOL. Other BLAS kernels sum in another order (and with FMA), and the LRN
  computes s^-0.75 from square roots instead of pow(); each is a few ulp per
  operation, which the backward pass through 8 layers grows to 7.5e-7 of a
  blob's largest value (Caffe's own layers, AMD EPYC, AVX2: conv5's weight
  gradient), 13x inside RTOL; with the layers on oneDNN (its own kernels and
  summation order) 1.75e-6 (AMD EPYC Zen 5, AVX-512: conv1's weight gradient).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from generators.netgen import input_net, load_net
from kitcore.caffe_env import caffe_root, pb2

from conftest import ROOT

caffe_pb2 = pb2()

pytestmark = pytest.mark.slow
RTOL, ATOL = 1e-5, 1e-7


def _corename(lib: Path, env: dict) -> str:
    code = ("import ctypes, sys; f = ctypes.CDLL(sys.argv[1]).scipy_openblas_get_corename; "
            "f.restype = ctypes.c_char_p; print(f().decode())")
    out = subprocess.run([sys.executable, "-c", code, str(lib)], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def fast_root() -> Path:
    """The build the kit uses, which must be a fast one."""
    root = caffe_root()
    assert root is not None and (root / ".kit-speed").read_text().strip() == "fast", \
        f"the Caffe wired into the venv ({root}) is not the kit's fast build; fix: make caffe"
    return root


@pytest.fixture(scope="module")
def reference_root() -> Path:
    """The reference build, or fail (not skip) with the one-line fix."""
    record = Path(sys.prefix) / "caffe_reference_root"
    if not record.is_file():
        pytest.fail(f"the reference Caffe build is missing ({record}); fix: make caffe-reference "
                    "(make test builds it)", pytrace=False)
    root = Path(record.read_text().strip())
    assert (root / ".kit-speed").read_text().strip() == "reference"
    return root


def test_libcaffe_links_the_wheels_openblas(fast_root):
    lib = next((fast_root / "build" / "lib").glob("libcaffe.so.*"))
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in ldd.splitlines() if "libscipy_openblas.so" in ln)
    found = Path(line.split("=>")[1].split("(")[0].strip()).resolve()
    assert found == (fast_root / "build" / "lib" / "libscipy_openblas.so").resolve(), line
    assert "libopenblas.so" not in ldd, ldd


def test_openblas_picks_a_core_for_this_cpu_and_obeys_the_environment(fast_root):
    lib = fast_root / "build" / "lib" / "libscipy_openblas.so"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    core = _corename(lib, env)
    flags = Path("/proc/cpuinfo").read_text()
    if " avx2 " in flags:  # any AVX2 core has kernels better than SSE3's in this OpenBLAS
        assert core.lower() not in ("prescott", "core2", "nehalem", "unknown"), core
    assert _corename(lib, {**env, "OPENBLAS_CORETYPE": "Sandybridge"}).lower() == "sandybridge"  # obeyed
    if os.environ.get("OPENBLAS_CORETYPE"):  # the machine's own setting is what the kit's runs get
        assert _corename(lib, dict(os.environ)).lower() == os.environ["OPENBLAS_CORETYPE"].lower()


def _unit_tests(root: Path, *tests: str) -> list[str]:
    proc = subprocess.run(["bash", str(ROOT / "caffe_build" / "unit_tests.sh"), str(root), *tests],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert lines and all(ln.endswith("tests passed") and int(ln.split(": ")[1].split()[0]) > 0
                         for ln in lines), proc.stdout
    return lines


def test_caffes_own_layer_tests_pass(fast_root):
    assert len(_unit_tests(fast_root)) == 11


def test_caffes_own_data_layer_tests_pass_in_the_opencv_variant():
    record = Path(sys.prefix) / "caffe_opencv_root"
    if not record.is_file():
        pytest.fail(f"the OpenCV Caffe variant is not built ({record} is missing); fix: make caffe-opencv "
                    "(make test builds it)", pytrace=False)
    root = Path(record.read_text().strip())
    assert (root / ".kit-speed").read_text().strip() == "fast"
    assert _unit_tests(root, "test_data_layer")[0].startswith("test_data_layer: ")


def test_a_test_binary_that_runs_no_test_fails(fast_root):
    proc = subprocess.run(["bash", str(ROOT / "caffe_build" / "unit_tests.sh"), str(fast_root), "test_data_layer"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "ran no test in this build" in proc.stderr, proc.stderr


def _input_net(tmp_path: Path) -> Path:
    """The FA-20 train net on Input blobs (batch 32): the template's TRAIN phase without its Data layer."""
    net = input_net(load_net(ROOT / "prototxt" / "fa20_caffenet.prototxt"), 32, (1, 28, 28))
    net.force_backward = True  # the data diff too: conv1's backward to its bottom is checked as well
    path = tmp_path / "net.prototxt"
    path.write_text(text_format.MessageToString(net))
    assert isinstance(net, caffe_pb2.NetParameter)
    return path


def _dump(root: Path, net: Path, out: Path, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(root / "python"), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "caffe_dump.py"), str(net), str(out), *extra],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith(str(root / "python")), proc.stdout  # that build's pycaffe ran


def test_fa20_net_forward_and_gradients_match_the_reference_build(fast_root, reference_root, tmp_path):
    net = _input_net(tmp_path)
    weights = tmp_path / "init.caffemodel"
    _dump(reference_root, net, tmp_path / "ref.npz", "--save", str(weights))
    _dump(reference_root, net, tmp_path / "ref2.npz", "--weights", str(weights))
    _dump(fast_root, net, tmp_path / "fast.npz", "--weights", str(weights))
    ref, ref2, fast = (np.load(tmp_path / f) for f in ("ref.npz", "ref2.npz", "fast.npz"))
    assert sorted(ref.files) == sorted(fast.files)
    for key in ref.files:  # the reference is deterministic: the comparison measures the builds only
        assert np.array_equal(ref[key], ref2[key]), key
    worst = {}
    for key in ref.files:
        scale = float(np.abs(ref[key]).max())
        err = float(np.abs(fast[key] - ref[key]).max())
        worst[key] = err / scale if scale else err
        assert err <= RTOL * scale + ATOL, f"{key}: max |fast - reference| = {err:.3g}, max |reference| = {scale:.3g}"
    assert float(fast["data:loss"]) == pytest.approx(float(ref["data:loss"]), rel=1e-5)
    assert any(v > 0 for v in worst.values()), "the builds agree bit for bit: is the fast build really another?"
    print("largest relative difference per blob:", max(worst.values()), max(worst, key=worst.get))
