"""Caffe snapshots of a run folder, checked before they are trusted.

Caffe writes `snapshots/snap_iter_N.caffemodel`, then `snap_iter_N.solverstate`,
straight to their final names (no temporary name, and the `fstream` it writes
through is never checked on close). A kill -9 or a full disk in the middle of
either leaves a truncated file with a valid-looking name. So a snapshot is
used only if both files parse and are structurally whole: every parametric
layer of the run's net is present with all its blobs, every blob holds as many
values as its shape says, the state's iteration matches its file name and it
holds one history blob per parameter blob. A truncated protobuf either fails to
parse or loses trailing layers/blobs, so this catches every truncation.
An incomplete snapshot is renamed `*.incomplete` with a logged warning, and the
previous one is used.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from google.protobuf.message import DecodeError

from kitcore.caffe_env import pb2

log = logging.getLogger(__name__)

_STATE = re.compile(r"_iter_(\d+)\.solverstate$")
# Blobs per layer type with parameters (bias optional); other types are not counted.
_PARAM_TYPES = {"Convolution": "convolution_param", "InnerProduct": "inner_product_param",
                "Deconvolution": "convolution_param"}


def expected_blobs(net_prototxt: Path) -> dict[str, int] | None:
    """Parameter blobs per layer of a net prototxt, or None if it has layer types we cannot count."""
    from google.protobuf import text_format
    net = pb2().NetParameter()
    text_format.Merge(Path(net_prototxt).read_text(), net)
    counts: dict[str, int] = {}
    for layer in net.layer:
        field = _PARAM_TYPES.get(layer.type)
        if field is not None:
            counts[layer.name] = 1 + int(getattr(layer, field).bias_term)
        elif layer.type in ("BatchNorm", "Scale", "PReLU", "Embed", "Bias"):
            return None
    return counts


def _blob_problem(blob, what: str) -> str | None:
    dims = list(blob.shape.dim) if blob.HasField("shape") else [blob.num, blob.channels, blob.height, blob.width]
    want = math.prod(dims) if dims else 0
    if len(blob.data) != want:
        return f"{what} holds {len(blob.data)} values, its shape {dims} needs {want}"
    return None


def model_problem(path: Path, expected: dict[str, int] | None) -> str | None:
    """Why a .caffemodel is not whole (None when it is)."""
    try:
        net = pb2().NetParameter.FromString(Path(path).read_bytes())
    except (OSError, DecodeError) as exc:
        return f"cannot read {Path(path).name} ({exc.__class__.__name__}: {exc})"
    found = {layer.name: layer for layer in net.layer if layer.blobs}
    if expected is not None:
        for name, count in expected.items():
            if name not in found or len(found[name].blobs) != count:
                have = len(found[name].blobs) if name in found else 0
                return f"{Path(path).name} has {have} of the {count} blobs of layer {name}"
    elif not found:
        return f"{Path(path).name} holds no parameters"
    for name, layer in found.items():
        for i, blob in enumerate(layer.blobs):
            problem = _blob_problem(blob, f"blob {i} of {name}")
            if problem:
                return f"{Path(path).name}: {problem}"
    return None


def state_problem(state: Path, expected: dict[str, int] | None) -> str | None:
    """Why a .solverstate (and the .caffemodel it names) is not a whole snapshot (None when it is)."""
    m = _STATE.search(state.name)
    try:
        msg = pb2().SolverState.FromString(state.read_bytes())
    except (OSError, DecodeError) as exc:
        return f"cannot read {state.name} ({exc.__class__.__name__}: {exc})"
    if m is None or msg.iter != int(m.group(1)):
        return f"{state.name} says iteration {msg.iter}"
    model = state.with_name(Path(msg.learned_net).name) if msg.learned_net else None
    if model is None or model.name != state.name.replace(".solverstate", ".caffemodel"):
        return f"{state.name} names model {msg.learned_net!r}"
    if not model.is_file():
        return f"{model.name} is missing"
    if expected is not None and len(msg.history) != sum(expected.values()):
        return f"{state.name} has {len(msg.history)} of {sum(expected.values())} history blobs"
    for i, blob in enumerate(msg.history):
        problem = _blob_problem(blob, f"history blob {i}")
        if problem:
            return f"{state.name}: {problem}"
    return model_problem(model, expected)


def states(run: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every .solverstate in run/snapshots, newest first."""
    found = [(int(m.group(1)), p) for p in (Path(run) / "snapshots").glob("*.solverstate")
             if (m := _STATE.search(p.name))]
    return sorted(found, reverse=True)


def set_aside(state: Path, reason: str) -> None:
    """Rename an incomplete snapshot pair to `*.incomplete` (kept as evidence) with a warning."""
    log.warning("snapshot %s is incomplete (%s): setting it aside and using the previous one", state, reason)
    for path in (state, state.with_name(state.name.replace(".solverstate", ".caffemodel"))):
        if path.exists():
            path.replace(path.with_name(path.name + ".incomplete"))


def newest_valid(run: Path, net_prototxt: Path | None = None) -> tuple[int, Path] | None:
    """(iteration, path) of the newest whole snapshot; incomplete newer ones are set aside."""
    run = Path(run)
    expected = expected_blobs(net_prototxt or run / "train_val.prototxt")
    for it, state in states(run):
        problem = state_problem(state, expected)
        if problem is None:
            return it, state
        set_aside(state, problem)
    return None


def peek_newest(run: Path) -> tuple[int, Path] | None:
    """Like newest_valid, but only reads (for `status`): nothing is renamed or logged."""
    run = Path(run)
    net = run / "train_val.prototxt"
    if not net.is_file():
        return None
    expected = expected_blobs(net)
    for it, state in states(run):
        if state_problem(state, expected) is None:
            return it, state
    return None
