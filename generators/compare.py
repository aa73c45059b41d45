"""`compare-original`: the kit's prototxt against an authors' run folder, message by message.

The authors' V0 train net, val net and solver are upgraded with Caffe's own
`upgrade_net_proto_text` / `upgrade_solver_proto_text`; the kit generates the
same treatment (read from the folder name, generators/authors.py) from its
templates and splits its train_val net into the TRAIN and TEST nets Caffe
builds. Fields are compared by effective value (an unset field counts as its
default), layers are paired by name. Every difference is reported; the ones in
`ALLOWED` (each with its reason) are expected, any other one fails.
"""
from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from generators import netgen
from generators.authors import AuthorsRun, parse_run_name
from generators.runfiles import run_files
from kitcore.caffe_env import caffe_env, pb2, tool
from kitcore.errors import KitError
from kitcore.profiles import profile

log = logging.getLogger(__name__)
REPEATED = 3  # FieldDescriptor.LABEL_REPEATED


@dataclass(frozen=True)
class Difference:
    """One field that differs: where ('train net', 'test net', 'solver'), layer, field path, both values."""

    where: str
    layer: str | None
    layer_type: str | None
    field: str
    kit: Any
    authors: Any

    def __str__(self) -> str:
        at = f"{self.where}" + (f" layer {self.layer!r} ({self.layer_type})" if self.layer else "")
        return f"{at}: {self.field}: kit {self.kit!r}, authors {self.authors!r}"


@dataclass(frozen=True)
class Allowed:
    """A difference the kit keeps on purpose: a key, the reason, and which differences it covers."""

    key: str
    reason: str
    covers: Callable[[Difference], bool]


def _in_data(d: Difference, field: str) -> bool:
    return d.layer_type == "Data" and d.field == field


ALLOWED: tuple[Allowed, ...] = (
    Allowed("data source", "the kit's LMDBs live in its split folders; the authors linked LevelDB folders "
            "into each run folder", lambda d: _in_data(d, "data_param.source")),
    Allowed("data backend", "this Caffe is built without LevelDB; LMDB holds the same Datums (the upgraded "
            "V0 Data layer keeps the old default LEVELDB)",
            lambda d: _in_data(d, "data_param.backend") and (d.kit, d.authors) == ("LMDB", "LEVELDB")),
    Allowed("mean file", "the kit's means live in its split folders (the base net's half, as the authors)",
            lambda d: _in_data(d, "transform_param.mean_file")),
    Allowed("net name", "the kit names each net <template>_<treatment> so a log says which treatment it is",
            lambda d: d.layer is None and d.field == "name" and d.where != "solver"),
    Allowed("blob names above n", "the authors renamed the blobs of re-initialised layers with the layers "
            "(conv4-new); Caffe copies weights by layer name only, so the kit renames layers and keeps the "
            "template's blob names, identical in every treatment",
            lambda d: bool(re.fullmatch(r"(top|bottom)\[\d+\]", d.field)) and isinstance(d.kit, str)
            and d.authors == d.kit + netgen.NEW_SUFFIX),
    Allowed("loss top", "the authors' loss layer had no top (Caffe makes an anonymous one); the kit names it "
            "'loss' so the log reads `loss = ...`",
            lambda d: d.layer_type == "SoftmaxWithLoss" and d.field == "top[0]"
            and (d.kit, d.authors) == ("loss", None)),
    Allowed("learning fields in the test net", "the kit writes one train_val net; a test net shares the train "
            "net's weights (Solver::ShareTrainedLayersWith), so its lr/decay multipliers and fillers do nothing",
            lambda d: d.where == "test net" and bool(re.match(
                r"param\[\d+\]|(convolution|inner_product)_param\.(weight|bias)_filler\.", d.field))),
    Allowed("loss in the test net", "2014 Caffe's accuracy layer also output the test loss (`Test score #1`); "
            "modern Accuracy does not, so the kit's loss layer runs in both phases to keep that number",
            lambda d: d.where == "test net" and d.layer == "loss" and d.field == "(layer)"
            and (d.kit, d.authors) == ("SoftmaxWithLoss", None)),
    Allowed("net files", "one train_val.prototxt (phase rules) instead of train_net + test_net files",
            lambda d: d.where == "solver" and d.field in ("net", "train_net", "test_net[0]")),
    Allowed("snapshot prefix", "snapshots go to the run folder's snapshots/ (the runner reads them there)",
            lambda d: d.where == "solver" and d.field == "snapshot_prefix"),
    Allowed("random seed", "the kit seeds every run for reproducibility; the authors' runs were unseeded",
            lambda d: d.where == "solver" and d.field == "random_seed" and d.authors == -1),
    Allowed("solver mode",
            "solver files say CPU; `--gpu` (MODE=gpu) runs `caffe train -gpu 0` on a GPU build (make caffe CUDA=1)",
            lambda d: d.where == "solver" and d.field == "solver_mode" and (d.kit, d.authors) == ("CPU", "GPU")),
    Allowed("no test at iteration 0", "2014 Caffe first tested at iteration test_interval (the authors' logs: "
            "first `Testing net` at iteration 1000); modern Caffe tests at 0 unless told not to",
            lambda d: d.where == "solver" and d.field == "test_initialization"
            and (d.kit, d.authors) == (False, True)),
)


def _value(fd, v):
    if fd.enum_type is not None and isinstance(v, int):
        return fd.enum_type.values_by_number[v].name if v in fd.enum_type.values_by_number else v
    return v


def _text(message) -> str:
    return text_format.MessageToString(message, as_one_line=True)


def diff_fields(kit, authors, prefix: str = "", skip: tuple[str, ...] = ()) -> Iterator[tuple[str, Any, Any]]:
    """Yield (path, kit value, authors value) for every field whose effective values differ."""
    for fd in kit.DESCRIPTOR.fields:
        if fd.name in skip:
            continue
        k, a, path = getattr(kit, fd.name), getattr(authors, fd.name), prefix + fd.name
        if fd.label == REPEATED:
            for i in range(max(len(k), len(a))):
                ki, ai = (k[i] if i < len(k) else None), (a[i] if i < len(a) else None)
                if fd.message_type is not None and ki is not None and ai is not None:
                    yield from diff_fields(ki, ai, f"{path}[{i}].")
                elif fd.message_type is not None:
                    yield f"{path}[{i}]", ki and _text(ki), ai and _text(ai)
                elif ki != ai:
                    yield f"{path}[{i}]", _value(fd, ki), _value(fd, ai)
        elif fd.message_type is not None:
            if kit.HasField(fd.name) or authors.HasField(fd.name):
                yield from diff_fields(k, a, path + ".")
        elif k != a:
            yield path, _value(fd, k), _value(fd, a)


def diff_nets(kit, authors, where: str) -> list[Difference]:
    """Differences between two NetParameters: net fields, then layers paired by name."""
    out = [Difference(where, None, None, p, k, a) for p, k, a in diff_fields(kit, authors, skip=("layer", "layers"))]
    kit_layers = {layer.name: layer for layer in kit.layer}
    auth_layers = {layer.name: layer for layer in authors.layer}
    kit_order = [n for n in kit_layers if n in auth_layers]
    auth_order = [n for n in auth_layers if n in kit_layers]
    if kit_order != auth_order:
        out.append(Difference(where, None, None, "layer order", kit_order, auth_order))
    for name, layer in kit_layers.items():
        if name not in auth_layers:
            out.append(Difference(where, name, layer.type, "(layer)", layer.type, None))
            continue
        out += [Difference(where, name, layer.type, p, k, a) for p, k, a in diff_fields(layer, auth_layers[name])]
    out += [Difference(where, n, layer.type, "(layer)", None, layer.type)
            for n, layer in auth_layers.items() if n not in kit_layers]
    return out


def _upgrade(kind: str, src: Path, tmp: Path):
    out = tmp / f"{src.stem}.{kind}.prototxt"
    tool_name = "upgrade_net_proto_text" if kind == "net" else "upgrade_solver_proto_text"
    proc = subprocess.run([tool(tool_name), str(src), str(out)], capture_output=True, text=True,
                          env=caffe_env(), check=False)
    if proc.returncode != 0 or not out.is_file():
        raise KitError(f"{tool_name} failed on {src}: {proc.stderr.strip().splitlines()[-1:]}",
                       "check that the file is an authors' prototxt")
    message = pb2().NetParameter() if kind == "net" else pb2().SolverParameter()
    text_format.Merge(out.read_text(), message)
    return message


def authors_messages(folder: Path) -> tuple:
    """The authors' (train net, test net, solver) of a run folder, upgraded by Caffe's tools."""
    solver_path = folder / "imagenet_solver.prototxt"
    if not solver_path.is_file():
        raise KitError(f"{solver_path} does not exist", "pass one of the authors' run folders")
    with tempfile.TemporaryDirectory(prefix="kit-compare-") as tmp:
        solver = _upgrade("solver", solver_path, Path(tmp))
        if not solver.train_net or len(solver.test_net) != 1:
            raise KitError(f"{solver_path} names no train_net and one test_net", "pass an authors' run folder")
        train = _upgrade("net", folder / solver.train_net, Path(tmp))
        test = _upgrade("net", folder / solver.test_net[0], Path(tmp))
    return train, test, solver


def kit_messages(run: AuthorsRun) -> tuple:
    """The kit's (train net, test net, solver) for an authors' run: exactly what `transfer-kit train`
    writes for that treatment on ImageNet (generators.runfiles.run_files), split seed 0 (random_seed 1), and a
    reduced run's k from its folder name (reduced-0025: PERCLASS=25)."""
    files = run_files(profile("imagenet"), run.treatment, run.num_classes, seed=0, data_root="data",
                      per_class=run.per_class)
    return netgen.phase_net(files.net, "TRAIN"), netgen.phase_net(files.net, "TEST"), files.solver


def allowed_by(d: Difference) -> Allowed | None:
    """The entry of ALLOWED that covers difference `d`, or None."""
    return next((a for a in ALLOWED if a.covers(d)), None)


def compare_folder(folder: Path) -> list[tuple[Difference, Allowed | None]]:
    """Every difference between an authors' run folder and the kit's files, with the rule that allows it."""
    folder = Path(folder)
    run = parse_run_name(folder.resolve().name)
    kit, authors = kit_messages(run), authors_messages(folder)
    diffs = diff_nets(kit[0], authors[0], "train net") + diff_nets(kit[1], authors[1], "test net")
    diffs += [Difference("solver", None, None, p, k, a) for p, k, a in diff_fields(kit[2], authors[2])]
    log.info("%s: kit %s %s (%s), %d differences", folder.name, run.protocol, run.treatment.name, run.split, len(diffs))
    return [(d, allowed_by(d)) for d in diffs]
