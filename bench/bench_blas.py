"""Candidate BLAS libraries side by side: single-thread sgemm GFLOP/s at the FA-20 net's conv shapes.

The shapes are Caffe's per-image convolution GEMMs of prototxt/fa20_caffenet.prototxt at batch 32
(M = output channels per group, N = output pixels, K = input channels per group x kernel area) and
one large square product. Libraries: the reference build's (Debian's OpenBLAS), the kit's build's
(the scipy-openblas32 wheel), and any `--lib PATH[:PREFIX]` (e.g. MKL's libmkl_rt.so.3 from PyPI's
`mkl` wheel, run with MKL_THREADING_LAYER=SEQUENTIAL). How the kit's BLAS was chosen (README).
Usage: python bench/bench_blas.py [--lib PATH[:PREFIX]] ...
"""
from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

import numpy as np

SHAPES = ((1024, 1024, 1024), (32, 784, 25), (32, 196, 144), (96, 49, 576), (48, 49, 432), (32, 49, 432))
NAMES = ("1024^3", "conv1", "conv2/g", "conv3", "conv4/g", "conv5/g")


def rate(sgemm, m: int, n: int, k: int, seconds: float = 0.3) -> float:
    """GFLOP/s of an m x k by k x n single-precision product, repeated for about `seconds` (best of 3)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    c = np.zeros((m, n), np.float32)
    ptr = lambda x: x.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    args = (101, 111, 111, m, n, k, ctypes.c_float(1.0), ptr(a), k, ptr(b), n, ctypes.c_float(0.0), ptr(c), n)
    sgemm(*args)
    if not np.allclose(c, a @ b, rtol=1e-3, atol=1e-2):
        sys.exit("bench_blas: a library gave a wrong product")
    reps = max(1, int(seconds / max(1e-6, 2 * m * n * k / 50e9)))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            sgemm(*args)
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2 * m * n * k / best / 1e9


def load(path: str, prefix: str) -> tuple:
    """(sgemm, core name or '') of a BLAS library, one thread."""
    lib = ctypes.CDLL(path)
    sgemm = getattr(lib, prefix + "cblas_sgemm")
    sgemm.restype = None
    core = ""
    if hasattr(lib, prefix + "openblas_get_corename"):
        getattr(lib, prefix + "openblas_set_num_threads")(1)
        fn = getattr(lib, prefix + "openblas_get_corename")
        fn.restype = ctypes.c_char_p
        core = fn().decode()
    return sgemm, core


def main() -> int:
    """Print one line per library."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lib", action="append", default=[], help="another BLAS: PATH[:SYMBOL_PREFIX]")
    args = p.parse_args()
    venv = Path(sys.prefix)
    libs = []
    record = venv / "caffe_reference_root"
    if record.is_file():
        libs.append(("reference build: Debian OpenBLAS", "libopenblas.so.0", ""))
    root = venv / "caffe_root"
    if root.is_file():
        own = Path(root.read_text().strip()) / "build" / "lib" / "libscipy_openblas.so"
        if own.is_file():
            libs.append(("kit build: scipy-openblas32 wheel", str(own), "scipy_"))
    for spec in args.lib:
        path, _, prefix = spec.partition(":")
        libs.append((Path(path).name, path, prefix))
    print(f"{'library':<36} {'core':<14} " + " ".join(f"{n:>8}" for n in NAMES) + "   (GFLOP/s, 1 thread)")
    for label, path, prefix in libs:
        sgemm, core = load(path, prefix)
        rates = [rate(sgemm, *s) for s in SHAPES]
        print(f"{label:<36} {core:<14} " + " ".join(f"{r:8.1f}" for r in rates), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
