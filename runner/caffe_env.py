"""Where the kit finds real Caffe: the `caffe` tools and pycaffe.

`make caffe` builds Caffe into a cache folder and wires it into the venv (a
.pth file for pycaffe, links to the tools in the venv's bin/). `CAFFE_ROOT=/path`
points the kit at another build (a user's GPU build) instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from runner.errors import KitError

os.environ.setdefault("GLOG_minloglevel", "2")  # quiet pycaffe's own glog lines

if os.environ.get("CAFFE_ROOT"):
    sys.path.insert(0, str(Path(os.environ["CAFFE_ROOT"]) / "python"))

try:
    from caffe.proto import caffe_pb2  # noqa: E402  (pycaffe's generated messages)
except ImportError as exc:
    raise KitError(f"pycaffe is not importable ({exc})",
                   "run: make caffe (or set CAFFE_ROOT to a Caffe build with pycaffe)") from exc

__all__ = ["caffe_pb2", "tool", "import_caffe", "caffe_env", "caffe_version"]


def tool(name: str) -> str:
    """Path of the Caffe tool `name` (caffe, compute_image_mean, upgrade_net_proto_text, ...)."""
    candidates = []
    if os.environ.get("CAFFE_ROOT"):
        candidates.append(Path(os.environ["CAFFE_ROOT"]) / "build" / "tools" / name)
    candidates.append(Path(sys.prefix) / "bin" / name)
    for path in candidates:
        if path.exists() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise KitError(f"the Caffe tool {name!r} was not found", "run: make caffe (or set CAFFE_ROOT)")


def caffe_env(threads: int | None = None) -> dict:
    """Environment for running a Caffe tool: glog to stderr, optional BLAS thread count."""
    env = dict(os.environ)
    env["GLOG_logtostderr"] = "1"
    env.pop("GLOG_minloglevel", None)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def import_caffe():
    """Import and return pycaffe in CPU mode."""
    import caffe  # pylint: disable=import-outside-toplevel
    caffe.set_mode_cpu()
    return caffe


def caffe_version() -> str:
    """The version the `caffe` binary reports."""
    out = subprocess.run([tool("caffe"), "--version"], capture_output=True, text=True,
                         env=caffe_env(), check=False)
    return (out.stdout + out.stderr).strip().splitlines()[-1] if (out.stdout + out.stderr).strip() else "unknown"
