"""conv1 filters of a .caffemodel as an image grid (the paper's "Gabor filters and color blobs").

The first convolution layer with weights (new `layer` or V1 `layers` format)
is read with pycaffe's caffe_pb2 (no net needed). Each filter is scaled to
0..1 on its own (min to max), its channels shown as grey (1 channel) or colour
(3 channels, Caffe's BGR order turned to RGB; any other count: the mean over
channels, grey), enlarged by whole pixels, and laid out in a near-square grid
with a 1-pixel dark border.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from kitcore.atomic import replacing
from kitcore.errors import KitError

log = logging.getLogger(__name__)

_CONV = ("Convolution", 4, "conv")  # type of a `layer`, V1 `layers` (enum CONVOLUTION), V0 `layer`


def _shape(blob) -> tuple[int, ...]:
    if blob.HasField("shape") and blob.shape.dim:
        return tuple(int(d) for d in blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def conv1_weights(model: Path) -> tuple[str, np.ndarray]:
    """(layer name, weights as a num x channels x height x width array) of the model's first conv layer."""
    from kitcore.caffe_env import pb2
    model = Path(model)
    if not model.is_file():
        raise KitError(f"model {model} does not exist", "pass a .caffemodel, e.g. a run's snapshots/*.caffemodel")
    net = pb2().NetParameter()
    try:
        net.ParseFromString(model.read_bytes())
    except DecodeError as exc:
        raise KitError(f"{model} is not a Caffe model ({exc})", "pass a binary .caffemodel") from exc
    v0 = [v1.layer for v1 in net.layers if v1.HasField("layer")]  # 2014 models: layers { layer { type: "conv" } }
    for layer in [*net.layer, *net.layers, *v0]:
        if layer.type in _CONV and layer.blobs:
            shape = _shape(layer.blobs[0])
            data = np.asarray(layer.blobs[0].data, dtype=np.float32)
            if len(shape) != 4 or data.size != math.prod(shape):
                raise KitError(f"{model}: {layer.name} weights have shape {shape} and {data.size} values",
                               "pass a model whose first convolution has 4-d weights")
            return layer.name, data.reshape(shape)
    raise KitError(f"{model} has no convolution layer with weights", "pass a trained .caffemodel of a conv net")


def filter_grid(weights: np.ndarray, scale: int = 4) -> np.ndarray:
    """The filters as one image (H x W x 3 floats in 0..1), each scaled to its own range."""
    num, channels, h, w = weights.shape
    if channels == 3:
        tiles = weights[:, ::-1].transpose(0, 2, 3, 1)  # BGR -> RGB, channels last
    else:
        tiles = np.repeat(weights.mean(axis=1)[..., None], 3, axis=3)
    low = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - low
    tiles = np.where(span > 0, (tiles - low) / np.where(span > 0, span, 1), 0.5)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    cols = math.ceil(math.sqrt(num))
    rows = math.ceil(num / cols)
    th, tw = h * scale, w * scale
    grid = np.full((rows * (th + 1) + 1, cols * (tw + 1) + 1, 3), 0.1, dtype=np.float32)
    for i in range(num):
        r, c = divmod(i, cols)
        grid[1 + r * (th + 1): 1 + r * (th + 1) + th, 1 + c * (tw + 1): 1 + c * (tw + 1) + tw] = tiles[i]
    return grid


def write_filters(model: Path, out: Path, scale: int | None = None) -> Path:
    """Write the model's conv1 filters as a PNG grid at `out`; return it."""
    from matplotlib.image import imsave
    name, weights = conv1_weights(model)
    if scale is None:
        scale = max(1, 48 // max(weights.shape[2:]))
    grid = filter_grid(weights, scale)
    out = Path(out)
    with replacing(out) as tmp:
        imsave(tmp, grid, format="png", metadata={"Software": None})
    log.info("%s: %d %s filters (%d channel(s), %dx%d) -> %s", model, weights.shape[0], name,
             weights.shape[1], weights.shape[2], weights.shape[3], out)
    return out
