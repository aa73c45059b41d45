"""Where the kit finds real Caffe: the `caffe` tools and pycaffe.

Nothing here touches sys.path or os.environ at import time: pycaffe is
imported on first use (`pb2()`, `import_caffe()`).

Quiet by default: pycaffe's glog (the net definitions it prints when it builds a
net, "Logging before InitGoogleLogging()") is C++ writing to this process's
stderr, so the kit sets `GLOG_minloglevel=2` (errors only) before pycaffe is
first imported (even `caffe.proto` loads libcaffe and glog, which reads the
variable once, then). `set_verbose(True)` (the CLI's `--verbose`, make
VERBOSE=1) leaves it unset; a `caffe` child always logs everything into its
run's train.log (`caffe_env`), which runner.supervise echoes when verbose.

`make caffe` builds Caffe into a cache folder and wires it into the venv (a
.pth file for pycaffe, links to the tools in the venv's bin/, its root in
`.venv/caffe_root`). `CAFFE_ROOT=/path` points the kit at another build (a
user's GPU build) instead. A build is either `plain` (no OpenCV) or `opencv`
(`make caffe CAFFE_OPENCV=1`, which can decode encoded JPEG Datums); the kit's
builds say which in `ROOT/.kit-variant`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from kitcore.errors import KitError


def pb2():
    """pycaffe's generated `caffe_pb2` module, imported on first use (CAFFE_ROOT/python first when set)."""
    global _PB2
    if _PB2 is None:
        _before_pycaffe()
        try:
            from caffe.proto import caffe_pb2
        except ImportError as exc:
            raise KitError(f"pycaffe is not importable ({exc})",
                           "run: make caffe (or set CAFFE_ROOT to a Caffe build with pycaffe)") from exc
        _PB2 = caffe_pb2
    return _PB2


_PB2 = None
VERBOSE_ENV = "TRANSFER_KIT_VERBOSE"  # "1": Caffe's output on the terminal too (inherited by the kit's children)


def set_verbose(on: bool) -> None:
    """Show Caffe's output on the terminal (on) or keep it in the runs' logs only (off, the default)."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def verbose() -> bool:
    """Whether Caffe's output goes to the terminal too (set_verbose)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def _before_pycaffe() -> None:
    """Before pycaffe is imported: its glog at errors only unless verbose (or GLOG_minloglevel is set), and
    CAFFE_ROOT/python first on sys.path."""
    if not verbose():
        os.environ.setdefault("GLOG_minloglevel", "2")
    _use_caffe_root()


def _use_caffe_root() -> None:
    """Put CAFFE_ROOT/python first on sys.path (once), so that pycaffe comes from the user's build."""
    if os.environ.get("CAFFE_ROOT"):
        python = str(Path(os.environ["CAFFE_ROOT"]) / "python")
        if python not in sys.path:
            sys.path.insert(0, python)


__all__ = ["pb2", "tool", "import_caffe", "caffe_env", "caffe_version", "caffe_root", "caffe_variant", "caffe_engine",
           "require_opencv", "set_verbose", "verbose"]
OPENCV_FIX = "make caffe CAFFE_OPENCV=1"


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


def caffe_env(threads: int | None = None, root: Path | None = None) -> dict:
    """Environment for running a Caffe tool of build `root` (None: the kit's): glog to stderr, `threads`
    (None: every core) for its layers.

    Caffe's own layers compute with OpenBLAS threads; a oneDNN build's with oneDNN's OpenMP threads, and
    there OpenBLAS (the solver's updates) gets one: two thread pools of more than one thread each spin
    against each other, and a 2-thread FA-20 run took 5x as long as a 1-thread one (docs/caffe.md). The
    oneDNN build also keeps OpenBLAS at one thread by itself (its patch 10)."""
    env = dict(os.environ)
    env["GLOG_logtostderr"] = "1"
    env.pop("GLOG_minloglevel", None)
    if caffe_engine(root) == "DNNL":
        env["OMP_NUM_THREADS"] = str(threads or len(os.sched_getaffinity(0)))
        env["OPENBLAS_NUM_THREADS"] = "1"
    elif threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def import_caffe():
    """Import and return pycaffe in CPU mode (its own glog lines quiet unless verbose or GLOG_minloglevel is set)."""
    _before_pycaffe()
    import caffe
    caffe.set_mode_cpu()
    return caffe


def caffe_version() -> str:
    """The version the `caffe` binary reports."""
    out = subprocess.run([tool("caffe"), "--version"], capture_output=True, text=True,
                         env=caffe_env(), check=False)
    return (out.stdout + out.stderr).strip().splitlines()[-1] if (out.stdout + out.stderr).strip() else "unknown"


def caffe_root() -> Path | None:
    """Root of the Caffe build the kit uses: CAFFE_ROOT, else the venv's caffe_root record, else the
    folder above the `caffe` tool found on PATH; None when there is none."""
    if os.environ.get("CAFFE_ROOT"):
        return Path(os.environ["CAFFE_ROOT"])
    record = Path(sys.prefix) / "caffe_root"
    if record.is_file() and record.read_text().strip():
        return Path(record.read_text().strip())
    try:
        return Path(os.path.realpath(tool("caffe"))).parents[2]  # ROOT/build/tools/caffe
    except KitError:
        return None


def caffe_variant(root: Path | None = None) -> str:
    """'opencv' or 'plain' for a Caffe build (ROOT/.kit-variant; a build not made by the kit: whether its
    libcaffe links OpenCV's imgcodecs), 'none' when there is no build."""
    root = root if root is not None else caffe_root()
    if root is None:
        return "none"
    marker = Path(root) / ".kit-variant"
    if marker.is_file():
        return marker.read_text().strip() or "plain"
    for lib in sorted((Path(root) / "build" / "lib").glob("libcaffe.so*")):
        return "opencv" if b"libopencv_imgcodecs" in lib.read_bytes() else "plain"
    return "plain"


def caffe_engine(root: Path | None = None) -> str:
    """'DNNL' (CPU layers on oneDNN) or 'CAFFE' (Caffe's own) for a Caffe build (ROOT/.kit-engine; a build not
    made by the kit, or none: 'CAFFE')."""
    root = root if root is not None else caffe_root()
    marker = Path(root) / ".kit-engine" if root is not None else None
    return (marker.read_text().strip() or "CAFFE") if marker is not None and marker.is_file() else "CAFFE"


def require_opencv(what: str) -> None:
    """Raise KitError unless the Caffe the kit uses was built with OpenCV (encoded Datums need it)."""
    root = caffe_root()
    variant = caffe_variant(root)
    if variant != "opencv":
        raise KitError(f"{what} needs Caffe built with OpenCV (the Caffe at {root} is {variant})", OPENCV_FIX)
