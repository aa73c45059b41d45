"""Weight surgery with pycaffe: the first n layers of a base model into a new net.

Both nets are built from their deploy form (an Input blob instead of Data
layers, so no LMDB is opened), the target with its fillers seeded. Weight
layers 1..n are copied blob by blob from the base model; the rest stay at
their fillers; base layers that are not copied are dropped. One audit line
per param blob says which, and the copies are checked bit for bit.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from generators.netgen import NEW_SUFFIX, to_deploy, to_text, weight_layers
from kitcore.atomic import replacing
from kitcore.caffe_env import import_caffe
from kitcore.errors import KitError
from kitcore.treatments import Treatment

log = logging.getLogger(__name__)


def _net_from_message(caffe, message, weights: Path | None = None):
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(to_text(message))
        path = f.name
    try:
        if weights is None:
            return caffe.Net(path, caffe.TEST)
        return caffe.Net(path, caffe.TEST, weights=str(weights))
    finally:
        os.unlink(path)


def _check_model(path: Path) -> None:
    """Fail with a one-line error when a .caffemodel is missing or does not parse."""
    from kitcore.caffe_env import pb2
    if not path.is_file():
        raise KitError(f"base model {path} does not exist", "train the base net first")
    msg = pb2().NetParameter()
    try:
        msg.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise KitError(f"base model {path} is corrupt ({exc.__class__.__name__})",
                       "retrain the base net with --force") from exc
    if not any(len(layer.blobs) for layer in msg.layer):
        raise KitError(f"base model {path} holds no weights", "retrain the base net with --force")


def transplant(base_net, base_model: Path, target_net, t: Treatment, out: Path,
               input_shape: tuple[int, ...], seed: int) -> list[str]:
    """Write `out` (.caffemodel) for treatment `t`; return the audit lines, one per param blob."""
    _check_model(Path(base_model))
    caffe = import_caffe()
    caffe.set_random_seed(seed)
    base = _net_from_message(caffe, to_deploy(base_net, input_shape), Path(base_model))
    target = _net_from_message(caffe, to_deploy(target_net, input_shape))
    base_names = [layer.name for layer in weight_layers(base_net)]
    target_names = [layer.name for layer in weight_layers(target_net)]
    audit = []
    for i, (src, dst) in enumerate(zip(base_names, target_names), start=1):
        for b, blob in enumerate(target.params[dst]):
            what = f"{dst}.{b} {tuple(blob.data.shape)}"
            if t.copied(i):
                source = base.params[src][b].data
                if source.shape != blob.data.shape:
                    raise KitError(f"shape of {src}.{b} in the base model is {source.shape}, "
                                   f"the new net wants {blob.data.shape}",
                                   "generate both nets from the same template")
                blob.data[...] = source
                if not np.array_equal(blob.data, source):
                    raise KitError(f"copy of {src}.{b} is not exact", "report this as a bug")
                audit.append(f"{what} copied from base:{src}.{b}")
            else:
                audit.append(f"{what} left at filler ({_filler(target_net, dst, b)})")
        if not t.copied(i):
            for b, _ in enumerate(base.params[src]):
                audit.append(f"base:{src}.{b} dropped (not copied: layer {i} > n={t.n})")
    with replacing(out) as tmp:
        target.save(str(tmp))
    del base, target
    _log_audit(out, audit)
    return audit


def random_init(target_net, t: Treatment, out: Path, input_shape: tuple[int, ...], seed: int) -> list[str]:
    """Write `out` for a random-weights treatment: every blob at its seeded filler, nothing copied; return the audit."""
    if t.kind != "random-weights":
        raise KitError(f"{t.name} is a {t.kind} treatment, not random weights", "use transplant() for transfers")
    caffe = import_caffe()
    caffe.set_random_seed(seed)
    target = _net_from_message(caffe, to_deploy(target_net, input_shape))
    audit = []
    for i, layer in enumerate(weight_layers(target_net), start=1):
        role = f"frozen at random init (layer {i} <= n={t.n})" if t.frozen(i) else f"trained (layer {i} > n={t.n})"
        for b, blob in enumerate(target.params[layer.name]):
            _check_filler(target_net, layer.name, b, blob.data)
            audit.append(f"{layer.name}.{b} {tuple(blob.data.shape)} left at filler "
                         f"({_filler(target_net, layer.name, b)}, seed {seed}), {role}; nothing copied")
    with replacing(out) as tmp:
        target.save(str(tmp))
    del target
    _log_audit(out, audit)
    return audit


def _log_audit(out: Path, audit: list[str]) -> None:
    """One DEBUG line per model (the counts) and one per audit line (--verbose shows them; the run keeps the
    audit in surgery.txt)."""
    copied = sum(" copied from base:" in line for line in audit)
    log.debug("surgery: %s: %d blob(s) copied from the base, %d at their filler", Path(out).name, copied,
             sum(" left at filler " in line for line in audit))
    for line in audit:
        log.debug("surgery: %s", line)


def _check_filler(net, layer_name: str, blob_index: int, data: np.ndarray) -> None:
    """Fail unless `data` looks drawn from the layer's filler: exact constants, gaussian mean 0 and its std."""
    f = _filler_param(net, layer_name, blob_index)
    if f.type == "constant":
        ok = bool(np.all(data == np.float32(f.value)))
    elif f.type == "gaussian":
        ok = abs(float(data.mean())) < 0.1 * f.std + 1e-12 and abs(float(data.std()) / f.std - 1) < 0.1
    else:
        ok = True  # other fillers are not used by the kit's templates
    if not ok:
        raise KitError(f"{layer_name}.{blob_index} does not match its {f.type} filler after initialisation",
                       "report this as a bug")


def _filler_param(net, layer_name: str, blob_index: int):
    for layer in net.layer:
        if layer.name == layer_name:
            p = layer.convolution_param if layer.type == "Convolution" else layer.inner_product_param
            return p.weight_filler if blob_index == 0 else p.bias_filler
    raise KitError(f"no layer {layer_name!r}", "report this as a bug")


def _filler(net, layer_name: str, blob_index: int) -> str:
    for layer in net.layer:
        if layer.name == layer_name:
            p = layer.convolution_param if layer.type == "Convolution" else layer.inner_product_param
            f = p.weight_filler if blob_index == 0 else p.bias_filler
            return f"{f.type} std {f.std:g}" if f.type == "gaussian" else f"{f.type} {f.value:g}"
    return "?"


__all__ = ["transplant", "random_init", "NEW_SUFFIX"]
