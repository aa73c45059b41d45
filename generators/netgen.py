"""Net and solver prototxt for a treatment, made by editing caffe_pb2 messages.

`make_treatment` decides freezing, renaming and the width
of the classifier: the first n weight layers keep their names (so Caffe's
copy-by-name loads them) and get `lr_mult: 0, decay_mult: 0` when frozen; the
layers above n get the suffix `-new` (as the authors' `conv4-new`), so nothing
can be copied into them by name. A random-weights treatment (`randfrozen{n}`,
the authors' `nolearn`) freezes layers 1..n and renames nothing, as the
authors' files do.

Which template and solver a run uses is the dataset profile's decision
(kitcore.profiles), applied by generators.runfiles.run_files.

The classifier keeps the template's fc8 width unless `exact_classes` is set:
the CaffeNet template has 1000 outputs, which the authors kept for their 449-,
500- and 551-class halves (the paper protocol's default); the FA-20 template's
width is its halves' exact class count.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from kitcore.caffe_env import pb2
from kitcore.errors import KitError
from kitcore.treatments import NUM_WEIGHT_LAYERS, Treatment

WEIGHT_LAYER_TYPES = ("Convolution", "InnerProduct")
NEW_SUFFIX = "-new"
LEARN = ((1.0, 1.0), (2.0, 0.0))   # (lr_mult, decay_mult) of weights, biases
FROZEN = ((0.0, 0.0), (0.0, 0.0))


@dataclass(frozen=True)
class DataSpec:
    """Where a net reads its images: train and val LMDBs and the mean file."""

    train_source: str
    val_source: str
    mean_file: str


def load_net(path: Path):
    """Read a NetParameter from a prototxt file."""
    net = pb2().NetParameter()
    text_format.Merge(Path(path).read_text(), net)
    return net


def load_solver(path: Path):
    """Read a SolverParameter from a prototxt file."""
    solver = pb2().SolverParameter()
    text_format.Merge(Path(path).read_text(), solver)
    return solver


def weight_layers(net) -> list:
    """The layers with learnable params, in net order (conv1 .. fc8)."""
    layers = [layer for layer in net.layer if layer.type in WEIGHT_LAYER_TYPES]
    if len(layers) != NUM_WEIGHT_LAYERS:
        raise KitError(f"net {net.name!r} has {len(layers)} weight layers, not {NUM_WEIGHT_LAYERS}",
                       "use a template with CaffeNet's 8 weight layers conv1-conv5, fc6-fc8")
    return layers


def _set_params(layer, mults) -> None:
    del layer.param[:]
    for lr, decay in mults:
        p = layer.param.add()
        p.lr_mult = lr
        p.decay_mult = decay


def _set_data(net, data: DataSpec, batch_train: int | None, batch_val: int | None) -> None:
    for layer in net.layer:
        if layer.type != "Data":
            continue
        phases = {rule.phase for rule in layer.include}
        train = pb2().TRAIN in phases
        layer.data_param.source = data.train_source if train else data.val_source
        layer.data_param.backend = pb2().DataParameter.LMDB
        layer.transform_param.mean_file = data.mean_file
        batch = batch_train if train else batch_val
        if batch:
            layer.data_param.batch_size = batch


def classifier_width(template, num_classes: int, exact_classes: bool = False) -> int:
    """fc8's width: the template's (the paper protocol: 1000), or `num_classes` when `exact_classes`."""
    width = num_classes if exact_classes else weight_layers(template)[-1].inner_product_param.num_output
    if width < num_classes:
        raise KitError(f"fc8 of {template.name!r} has {width} outputs but the target has {num_classes} classes",
                       "use exact_classes=True (the exact class count) or a template with a wider fc8")
    return width


def make_treatment(template, t: Treatment, data: DataSpec, num_classes: int,
                   batch_train: int | None = None, batch_val: int | None = None,
                   exact_classes: bool = False):
    """Return a new train_val NetParameter for treatment `t` built from `template`."""
    net = pb2().NetParameter()
    net.CopyFrom(template)
    net.name = f"{template.name}_{t.name}"
    _set_data(net, data, batch_train, batch_val)
    layers = weight_layers(net)
    for i, layer in enumerate(layers, start=1):
        _set_params(layer, FROZEN if t.frozen(i) else LEARN)
        if t.kind == "transfer" and not t.copied(i):
            layer.name += NEW_SUFFIX
    layers[-1].inner_product_param.num_output = classifier_width(template, num_classes, exact_classes)
    return net


def make_solver(template, net_path: str, random_seed: int, iters: int | None = None,
                test_iter: int | None = None, snapshot: int | None = None):
    """Return a SolverParameter for net `net_path`; `iters` rescales the schedule to that budget."""
    solver = pb2().SolverParameter()
    solver.CopyFrom(template)
    solver.net = net_path
    solver.random_seed = random_seed
    if iters:
        scale = iters / template.max_iter
        solver.max_iter = iters
        solver.stepsize = max(1, round(template.stepsize * scale))
        solver.test_interval = max(1, round(template.test_interval * scale))
        solver.snapshot = max(1, round(template.snapshot * scale))
    if test_iter:
        del solver.test_iter[:]
        solver.test_iter.append(test_iter)
    if snapshot:
        solver.snapshot = snapshot
    return solver


def _rule_matches(rule, phase_value: int) -> bool:
    return not rule.HasField("phase") or rule.phase == phase_value


def input_net(template, batch: int, image_shape: tuple[int, ...]):
    """A template's TRAIN net on Input blobs: its Data layers replaced by one Input layer giving `data`
    (batch x image_shape) and `label` (batch), for `caffe time` and pycaffe checks without an LMDB."""
    net = phase_net(template, "TRAIN")
    layers = [layer for layer in net.layer if layer.type != "Data"]
    del net.layer[:]
    inp = net.layer.add(name="data", type="Input", top=["data", "label"])
    inp.input_param.shape.add().dim.extend([batch, *image_shape])
    inp.input_param.shape.add().dim.extend([batch])
    net.layer.extend(layers)
    return net


def phase_net(net, phase: str):
    """The net Caffe builds for `phase` ('TRAIN' or 'TEST'): layers filtered by their include/exclude phase."""
    value = pb2().Phase.Value(phase)
    out = pb2().NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    for layer in net.layer:
        rules = list(layer.include) + list(layer.exclude)
        if any(r.HasField("min_level") or r.HasField("max_level") or r.stage or r.not_stage for r in rules):
            raise KitError(f"layer {layer.name!r} has level/stage rules", "use phase rules only in templates")
        if layer.include and not any(_rule_matches(r, value) for r in layer.include):
            continue
        if any(_rule_matches(r, value) for r in layer.exclude):
            continue
        kept = out.layer.add()
        kept.CopyFrom(layer)
        del kept.include[:]
        del kept.exclude[:]
    return out


def to_deploy(net, input_shape: tuple[int, ...]):
    """The net for inference on an Input blob: no Data, Accuracy or loss layers (for surgery)."""
    deploy = pb2().NetParameter()
    deploy.name = net.name
    inp = deploy.layer.add()
    inp.name = "data"
    inp.type = "Input"
    inp.top.append("data")
    inp.input_param.shape.add().dim.extend(input_shape)
    for layer in net.layer:
        if layer.type in ("Data", "Accuracy", "SoftmaxWithLoss"):
            continue
        deploy.layer.add().CopyFrom(layer)
    return deploy


def to_text(message) -> str:
    """Prototxt text of a message."""
    return text_format.MessageToString(message)
