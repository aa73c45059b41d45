"""Treatment names and the nets and solvers generated for them."""
from __future__ import annotations

import pytest

from generators import netgen
from generators.treatments import figure2_names, in_dependency_order, parse, valid_names
from runner.errors import KitError
from conftest import ROOT

TEMPLATE = ROOT / "prototxt" / "fa20_caffenet.prototxt"
SOLVER = ROOT / "solvers" / "fa20_solver.prototxt"
DATA = netgen.DataSpec("T_lmdb", "V_lmdb", "M.binaryproto")
NAMES = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


def test_registry_lists_every_name():
    names = valid_names("random")
    assert len(names) == 2 + 2 * 2 * 7 * 2 == len(set(names))
    assert names[:2] == ["baseA", "baseB"]
    assert {"A1B", "B7A+", "A4A", "B3B+"} <= set(names)
    assert all(parse(n).name == n for n in names)


def test_figure2_grid_is_2_bases_and_28_transfers_into_b():
    names = figure2_names()
    assert len(names) == 30 == len(set(names)) and set(names) <= set(valid_names("random"))
    assert all(parse(n).target == "B" for n in names[2:])


@pytest.mark.parametrize("name,source,target,n,ft", [
    ("baseA", None, "A", 0, False), ("baseB", None, "B", 0, False),
    ("A3B", "A", "B", 3, False), ("A3B+", "A", "B", 3, True), ("B7B+", "B", "B", 7, True),
    ("B1A", "B", "A", 1, False)])
def test_parse_valid(name, source, target, n, ft):
    t = parse(name)
    assert (t.source, t.target, t.n, t.finetune, t.name) == (source, target, n, ft, name)
    assert t.kind == ("base" if source is None else "transfer")


@pytest.mark.parametrize("name", ["", "base", "baseC", "A0B", "A8B", "A3C", "a3b", "A3B++", "A3B-", " A3B", "A10B"])
def test_parse_invalid_lists_the_valid_names(name):
    with pytest.raises(KitError) as err:
        parse(name)
    assert "invalid treatment" in str(err.value) and "baseA" in str(err.value) and "fix:" in str(err.value)


def test_unknown_protocol():
    with pytest.raises(KitError, match="unknown protocol"):
        valid_names("imagenet-2015")


def test_dependency_order_puts_bases_first():
    order = [t.name for t in in_dependency_order([parse(n) for n in ["A2B+", "B1A", "baseB", "A1B", "baseA"]])]
    assert order[:2] == ["baseA", "baseB"] and order.index("A1B") < order.index("A2B+")


def _layers(net):
    return netgen.weight_layers(net)


def _mults(layer):
    return [(p.lr_mult, p.decay_mult) for p in layer.param]


def test_template_has_caffenet_structure():
    net = netgen.load_net(TEMPLATE)
    assert [layer.name for layer in _layers(net)] == NAMES
    groups = {layer.name: layer.convolution_param.group for layer in _layers(net)[:5]}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    types = [layer.type for layer in net.layer]
    assert types.count("LRN") == 2 and types.count("Dropout") == 2 and types.count("ReLU") == 7
    assert types.count("Pooling") == 3


@pytest.mark.parametrize("name", [n for n in valid_names("random")])
def test_every_treatment_net(name):
    t = parse(name)
    net = netgen.make_treatment(netgen.load_net(TEMPLATE), t, DATA, num_classes=10)
    layers = _layers(net)
    for i, layer in enumerate(layers, start=1):
        assert len(layer.param) == 2, "both param blocks are always written"
        if i <= t.n and not t.finetune:
            assert _mults(layer) == [(0, 0), (0, 0)], layer.name
        else:
            assert _mults(layer) == [(1, 1), (2, 0)], layer.name
        expected = NAMES[i - 1] + ("-new" if t.kind == "transfer" and i > t.n else "")
        assert layer.name == expected
    assert layers[-1].inner_product_param.num_output == 10
    sources = {layer.data_param.source for layer in net.layer if layer.type == "Data"}
    assert sources == {"T_lmdb", "V_lmdb"}
    assert {layer.transform_param.mean_file for layer in net.layer if layer.type == "Data"} == {"M.binaryproto"}


def test_classifier_width_and_template_untouched():
    template = netgen.load_net(TEMPLATE)
    before = template.SerializeToString()
    net = netgen.make_treatment(template, parse("A5B"), DATA, num_classes=7)
    assert _layers(net)[-1].inner_product_param.num_output == 7
    assert template.SerializeToString() == before


def test_text_round_trip_is_a_valid_caffe_net():
    net = netgen.make_treatment(netgen.load_net(TEMPLATE), parse("B4A+"), DATA, num_classes=10)
    again = netgen.caffe_pb2.NetParameter()
    netgen.text_format.Merge(netgen.to_text(net), again)
    assert again == net


def test_solver_budget_scales_the_schedule():
    tpl = netgen.load_solver(SOLVER)
    s = netgen.make_solver(tpl, "train_val.prototxt", random_seed=3, iters=tpl.max_iter * 2)
    assert (s.net, s.random_seed, s.max_iter) == ("train_val.prototxt", 3, tpl.max_iter * 2)
    assert s.stepsize == tpl.stepsize * 2 and s.test_interval == tpl.test_interval * 2
    assert (s.momentum, s.weight_decay) == pytest.approx((0.9, 0.0005)) and s.lr_policy == "step"


def test_deploy_has_no_data_or_loss():
    net = netgen.make_treatment(netgen.load_net(TEMPLATE), parse("A3B"), DATA, num_classes=10)
    deploy = netgen.to_deploy(net, (1, 1, 28, 28))
    types = [layer.type for layer in deploy.layer]
    assert types[0] == "Input" and "Data" not in types and "SoftmaxWithLoss" not in types
