"""The paper's CaffeNet and solvers, the authors' run names, and `compare-original` on their folders."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format

from generators import netgen
from generators.authors import parse_run_name
from generators.compare import ALLOWED, Difference, allowed_by, diff_fields
from kitcore.caffe_env import pb2
from kitcore.errors import KitError
from kitcore.treatments import PROTOCOLS, valid_names
from runner.cli import main

from conftest import ROOT

caffe_pb2 = pb2()
NET = ROOT / "prototxt" / "caffenet.prototxt"
FOLDERS = ["half0A", "half0B", "nolearn_1_3", "transfer-ft0A0B_1_3", "transfer0A0A_1_3", "transfer0A0B_1_3",
           "transfernatmanAB_1_3"]


def test_caffenet_template_has_the_papers_layers_and_fillers():
    net = netgen.load_net(NET)
    conv = {layer.name: layer.convolution_param for layer in netgen.weight_layers(net)[:5]}
    shapes = {n: (p.num_output, p.kernel_size[0], p.stride[0] if p.stride else 1, p.pad[0] if p.pad else 0, p.group)
              for n, p in conv.items()}
    assert shapes == {"conv1": (96, 11, 4, 0, 1), "conv2": (256, 5, 1, 2, 2), "conv3": (384, 3, 1, 1, 1),
                      "conv4": (384, 3, 1, 1, 2), "conv5": (256, 3, 1, 1, 2)}
    fillers = {layer.name: (p.weight_filler.type, round(p.weight_filler.std, 6), p.bias_filler.value)
               for layer in netgen.weight_layers(net)
               for p in [layer.convolution_param if layer.type == "Convolution" else layer.inner_product_param]}
    assert fillers == {"conv1": ("gaussian", 0.01, 0), "conv2": ("gaussian", 0.01, 1), "conv3": ("gaussian", 0.01, 0),
                       "conv4": ("gaussian", 0.01, 1), "conv5": ("gaussian", 0.01, 1),
                       "fc6": ("gaussian", 0.005, 1), "fc7": ("gaussian", 0.005, 1), "fc8": ("gaussian", 0.01, 0)}
    assert [layer.inner_product_param.num_output for layer in netgen.weight_layers(net)[5:]] == [4096, 4096, 1000]
    lrn = [layer.lrn_param for layer in net.layer if layer.type == "LRN"]
    assert [(p.local_size, round(p.alpha, 6), p.beta) for p in lrn] == [(5, 0.0001, 0.75)] * 2
    assert [round(layer.dropout_param.dropout_ratio, 3) for layer in net.layer if layer.type == "Dropout"] == [0.5] * 2
    data = {layer.include[0].phase: layer for layer in net.layer if layer.type == "Data"}
    train, test = data[caffe_pb2.TRAIN], data[caffe_pb2.TEST]
    assert (train.transform_param.crop_size, train.transform_param.mirror,
            train.data_param.batch_size) == (227, True, 256)
    assert (test.transform_param.crop_size, test.transform_param.mirror,
            test.data_param.batch_size) == (227, False, 50)


@pytest.mark.parametrize("name,numbers", [
    ("caffenet_solver", (0.01, 100000, 450000)), ("caffenet_reduced_solver", (0.0125, 64000, 200000))])
def test_paper_solvers(name, numbers):
    s = netgen.load_solver(ROOT / "solvers" / f"{name}.prototxt")
    assert (round(s.base_lr, 6), s.stepsize, s.max_iter) == numbers
    assert (s.lr_policy, round(s.gamma, 6), round(s.momentum, 6),
            round(s.weight_decay, 6)) == ("step", 0.1, 0.9, 0.0005)
    assert (list(s.test_iter), s.test_interval, s.snapshot, s.display) == ([1000], 1000, 10000, 20)
    assert s.HasField("random_seed") and not s.test_initialization


def test_paper_fc8_keeps_1000_outputs_unless_exact():
    t = parse_run_name("transfernatmanAB_1_5").treatment
    data = netgen.DataSpec("t", "v", "m")
    assert netgen.weight_layers(netgen.make_treatment(netgen.load_net(NET), t, data, 551))[-1] \
        .inner_product_param.num_output == 1000
    assert netgen.weight_layers(netgen.make_treatment(netgen.load_net(NET), t, data, 551, exact_classes=True))[-1] \
        .inner_product_param.num_output == 551


def test_every_authors_run_name_is_a_kit_treatment(reference_dir):
    names = (reference_dir / "original_runs" / "ALL_RUNS.txt").read_text().split()
    assert len(names) == 170
    runs = [parse_run_name(n) for n in names]
    assert len({(r.protocol, r.split, r.treatment.name) for r in runs}) == 170
    assert {r.protocol for r in runs} == set(PROTOCOLS) - {"small", "mix"}  # the small target, the mixed split: kit's
    for r in runs:
        assert r.treatment.name in valid_names(r.protocol)
    by_name = {r.run_name: r for r in runs}
    assert (by_name["transfer-ft1B1A_1_7"].split, by_name["transfer-ft1B1A_1_7"].treatment.name) == ("random1", "B7A+")
    assert by_name["nolearn_1_4"].treatment.kind == "random-weights"
    assert (by_name["reduced-0025"].split, by_name["netbase"].treatment.name) == ("reduced25", "base")
    assert (by_name["halfnatmanB"].num_classes, by_name["transfernatmanBA_1_2"].num_classes) == (551, 449)


@pytest.mark.parametrize("name", ["half0C", "transfer0A1B_1_3", "transfer0A0B_1_8", "transfernatmanAA_1_1",
                                  "nolearn_2_3", "reduced-0003", "netbase2", ""])
def test_bad_authors_names(name):
    with pytest.raises(KitError, match="not one of the authors' run names"):
        parse_run_name(name)


@pytest.mark.parametrize("folder", FOLDERS)
def test_compare_original_on_the_authors_folders(reference_dir, folder, capsys):
    assert main(["compare-original", str(reference_dir / "original_runs" / folder)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].endswith("not allowed: OK") and "NOT ALLOWED" not in out
    assert "allowed [data source]" in out and "allowed [mean file]" in out
    assert ("allowed [blob names above n]" in out) == folder.startswith("transfer")


def _copy(reference_dir, folder, tmp_path):
    dest = tmp_path / folder
    dest.mkdir()
    for name in ("imagenet_train.prototxt", "imagenet_val.prototxt", "imagenet_solver.prototxt"):
        shutil.copy(reference_dir / "original_runs" / folder / name, dest / name)
    return dest


def _edit_v0(path, edit):
    msg = caffe_pb2.NetParameter()
    text_format.Merge(path.read_text(), msg)
    edit({layers.layer.name: layers.layer for layers in msg.layers})
    path.write_text(text_format.MessageToString(msg))


@pytest.mark.parametrize("what,expect", [
    ("conv2 bias 0.1", "conv2' (Convolution): convolution_param.bias_filler.value"),
    ("conv3 not frozen", "conv3' (Convolution): param[0].lr_mult"),
    ("fc8 500 outputs", "fc8-new' (InnerProduct): inner_product_param.num_output"),
    ("stepsize", "solver: stepsize")])
def test_compare_original_fails_on_an_altered_copy(reference_dir, tmp_path, capsys, what, expect):
    dest = _copy(reference_dir, "transfer0A0B_1_3", tmp_path)
    train = dest / "imagenet_train.prototxt"
    if what == "conv2 bias 0.1":
        _edit_v0(train, lambda layers: setattr(layers["conv2"].bias_filler, "value", 0.1))
    elif what == "conv3 not frozen":
        _edit_v0(train, lambda layers: layers["conv3"].blobs_lr.__setitem__(0, 1.0))
    elif what == "fc8 500 outputs":
        _edit_v0(train, lambda layers: setattr(layers["fc8-new"], "num_output", 500))
    else:
        solver = caffe_pb2.SolverParameter()
        text_format.Merge((dest / "imagenet_solver.prototxt").read_text(), solver)
        solver.stepsize = 90000
        (dest / "imagenet_solver.prototxt").write_text(text_format.MessageToString(solver))
    assert main(["compare-original", str(dest)]) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if "NOT ALLOWED" in line]
    assert len(bad) == 1 and expect in bad[0], out
    assert out.strip().splitlines()[-1].endswith("1 not allowed: FAIL")


def _reduced_folder(reference_dir, tmp_path, k: int, schedule: tuple[float, int, int]) -> Path:
    """An authors' reduced-volume run folder `reduced-<k:04d>` as theirs are (yosinski/convnet_transfer results/):
    the V0 nets of a 1000-output CaffeNet (their half0A's files are the same nets) and a V0 solver with
    `schedule` = (base_lr, stepsize, max_iter)."""
    dest = _copy(reference_dir, "half0A", tmp_path).rename(tmp_path / f"reduced-{k:04d}")
    solver = caffe_pb2.SolverParameter()
    text_format.Merge((dest / "imagenet_solver.prototxt").read_text(), solver)
    solver.base_lr, solver.stepsize, solver.max_iter = schedule
    (dest / "imagenet_solver.prototxt").write_text(text_format.MessageToString(solver))
    return dest


@pytest.mark.parametrize("k", [1, 25])
def test_compare_original_reads_k_of_a_reduced_folder(reference_dir, tmp_path, capsys, k):
    assert parse_run_name(f"reduced-{k:04d}").per_class == k
    dest = _reduced_folder(reference_dir, tmp_path, k, (0.0125, 64000, 200000))  # the authors' reduced solver
    assert main(["compare-original", str(dest)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].endswith("not allowed: OK") and "NOT ALLOWED" not in out


def test_compare_original_holds_a_reduced_folder_to_the_reduced_solver(reference_dir, tmp_path, capsys):
    dest = _reduced_folder(reference_dir, tmp_path, 10, (0.01, 100000, 450000))  # the full protocol's schedule
    assert main(["compare-original", str(dest)]) == 1
    bad = [line for line in capsys.readouterr().out.splitlines() if "NOT ALLOWED" in line]
    assert [line.split(": ")[3] for line in bad] == ["base_lr", "max_iter", "stepsize"], bad


def test_compare_original_refuses_an_unknown_folder(tmp_path, capsys):
    folder = tmp_path / "my_run"
    folder.mkdir()
    assert main(["compare-original", str(folder)]) == 2
    assert "not one of the authors' run names" in capsys.readouterr().err


def test_every_allowed_difference_has_a_reason_and_is_narrow():
    assert len({a.key for a in ALLOWED}) == len(ALLOWED) and all(len(a.reason) > 30 for a in ALLOWED)
    assert allowed_by(Difference("train net", "conv4-new", "Convolution", "top[0]", "conv4", "conv4-new"))
    assert not allowed_by(Difference("train net", "conv4-new", "Convolution", "top[0]", "conv4", "conv5-new"))
    assert not allowed_by(Difference("train net", "conv1", "Convolution", "param[0].lr_mult", 0.0, 1.0))
    assert allowed_by(Difference("test net", "conv1", "Convolution", "param[0].lr_mult", 0.0, 1.0))
    assert not allowed_by(Difference("solver", None, None, "base_lr", 0.01, 0.02))
    assert not allowed_by(Difference("train net", "data", "Data", "transform_param.crop_size", 227, 224))


def test_diff_fields_compares_effective_values():
    a, b = caffe_pb2.LayerParameter(), caffe_pb2.LayerParameter()
    text_format.Merge('name: "c" convolution_param { num_output: 4 group: 1 }', a)
    text_format.Merge('name: "c" convolution_param { num_output: 4 }', b)
    assert list(diff_fields(a, b)) == [], "an explicit default equals an unset field"
    b.convolution_param.group = 2
    assert list(diff_fields(a, b)) == [("convolution_param.group", 1, 2)]


def test_reduced_runs_use_the_reduced_solver():
    assert parse_run_name("reduced-0100").solver_template.endswith("caffenet_reduced_solver.prototxt")
    assert parse_run_name("netbase").solver_template.endswith("/caffenet_solver.prototxt")
    assert (ROOT / parse_run_name("reduced-0001").solver_template).is_file()
