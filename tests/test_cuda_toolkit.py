"""caffe_build/cuda_toolkit.py: what `make caffe CUDA=1` builds against, and its one-line errors.

These run in `make test` and download nothing: every case that reaches nvcc fails (or is
answered) before the libraries are looked for. They need a real nvcc (CUDA 11.8-13.x) on
PATH or in CUDA_HOME and skip without one; the build itself is tests/test_caffe_cuda.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from caffe_build import cuda_toolkit as ct

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc") or (os.environ.get("CUDA_HOME") and str(Path(os.environ["CUDA_HOME"]) / "bin/nvcc"))
needs_nvcc = pytest.mark.skipif(not NVCC or not os.access(NVCC, os.X_OK), reason="no nvcc on this machine")


def resolve(tmp_path, **env):
    """`cuda_toolkit.py resolve` as build_caffe.sh runs it: (exit code, stdout, stderr lines)."""
    full = {k: v for k, v in os.environ.items() if k not in ("CUDA_ARCH", "CUDNN", "CUDNN_HOME")}
    full.update(env)
    proc = subprocess.run([sys.executable, str(ROOT / "caffe_build/cuda_toolkit.py"), "resolve", str(tmp_path)],
                          capture_output=True, text=True, env=full, check=False, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr.strip().splitlines()


def test_architectures_are_read_in_every_spelling_and_get_ptx_of_the_newest():
    assert ct.parse_archs("90 8.0 sm_86,compute_75") == [75, 80, 86, 90]
    assert ct.gencode([80, 90]) == ("-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 "
                                    "-gencode arch=compute_90,code=compute_90")
    with pytest.raises(ct.ToolkitError, match=r"CUDA_ARCH has 'hopper'.*fix: write CUDA_ARCH="):
        ct.parse_archs("hopper")


def test_the_build_time_estimate_grows_with_the_architectures():
    assert ct.build_minutes(1) == 21 and ct.build_minutes(12) == 70  # make test-cuda's sm_90; CUDA 13.0's default


def test_the_default_is_every_architecture_from_sm_70_and_a_wrong_one_names_the_choice():
    supported = [50, 60, 70, 75, 80, 90]
    assert ct.choose_archs({}, supported) == [70, 75, 80, 90]
    assert ct.choose_archs({"CUDA_ARCH": "90"}, supported) == [90]
    with pytest.raises(ct.ToolkitError, match=r'cannot build for sm_35; fix: choose from CUDA_ARCH="50 60 70'):
        ct.choose_archs({"CUDA_ARCH": "35 90"}, supported)


def test_the_cuda_wheels_are_pinned_in_requirements_txt_and_nowhere_else():
    pins = ct.pins()
    names = [p.split("==")[0] for p in pins]
    assert all("==" in p for p in pins) and len(set(names)) == len(names)
    assert {"nvidia-cuda-nvcc", "nvidia-cublas", "nvidia-curand", "nvidia-cudnn-cu13"} <= set(names)
    # the venv's own install skips them: pip reads `#cuda` lines as comments
    assert not [ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.startswith("nvidia-")]


def test_cudnn_version_is_read_from_its_header(tmp_path):
    (tmp_path / "cudnn_version.h").write_text("#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 13\n"
                                              "#define CUDNN_PATCHLEVEL 0\n")
    (tmp_path / "cudnn.h").write_text('#include "cudnn_version.h"\n')
    assert ct.cudnn_version(tmp_path) == (9, 13, 0)


def test_cuda_home_without_nvcc_is_a_one_line_error(tmp_path):
    code, out, err = resolve(tmp_path, CUDA_HOME=str(tmp_path / "no-cuda"))
    assert code == 1 and out == "" and len(err) == 1
    assert err[0].startswith(f"error: CUDA_HOME={tmp_path / 'no-cuda'} has no bin/nvcc; fix: ")


@needs_nvcc
def test_the_real_nvcc_names_its_version_home_and_architectures():
    nvcc = Path(NVCC)
    major, minor = ct.nvcc_version(nvcc)
    assert (11, 8) <= (major, minor) < (14, 0)
    assert (ct.toolkit_home(nvcc) / "bin").is_dir()
    archs = ct.supported_archs(nvcc)
    assert archs and all(a >= 50 for a in archs)
    if major == 13:  # CUDA 13 dropped sm_50-72 (Maxwell, Pascal, Volta)
        assert min(archs) == 75 and 90 in archs


@needs_nvcc
def test_an_architecture_the_toolkit_lacks_fails_before_anything_is_fetched(tmp_path):
    code, _, err = resolve(tmp_path, CUDA_ARCH="35 90")
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: this CUDA toolkit cannot build for sm_35; fix: choose from CUDA_ARCH=")
    assert not (tmp_path / "cuda-pypi").exists()


@needs_nvcc
def test_a_wrong_cudnn_switch_is_a_one_line_error(tmp_path):
    code, _, err = resolve(tmp_path, CUDA_ARCH="90", CUDNN="yes")
    assert code == 1 and len(err) == 1 and err[0].startswith("error: CUDNN=yes; fix: CUDNN=1 (required), CUDNN=0")
