"""Treatment names and the nets and solvers generated for them."""
from __future__ import annotations

import pytest

from generators import netgen
from kitcore.errors import KitError
from kitcore.treatments import PROTOCOLS, figure2_names, in_dependency_order, parse, valid_names

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


def test_other_protocols():
    assert valid_names("natman") == ["baseA", "baseB"] + [f"{s}{n}{d}{p}" for n in range(1, 8) for p in ("", "+")
                                                          for s, d in (("A", "B"), ("B", "A"))]
    assert valid_names("whole") == ["base"] + [f"randfrozen{n}" for n in range(1, 8)]
    assert valid_names("reduced") == ["base"]
    assert valid_names("small") == figure2_names() and parse("A3B+", "small").protocol == "small"
    for protocol in PROTOCOLS:
        assert all(parse(n, protocol).name == n and parse(n, protocol).protocol == protocol
                   for n in valid_names(protocol))
    r = parse("randfrozen3", "whole")
    assert (r.kind, r.target, r.n, r.base_name, r.finetune) == ("random-weights", "all", 3, None, False)
    assert [r.frozen(i) for i in range(1, 9)] == [True] * 3 + [False] * 5
    assert not any(r.copied(i) for i in range(1, 9)), "random weights copy nothing"
    assert parse("base", "whole").kind == "base" and parse("base", "reduced").target == "all"
    for name, protocol in [("A3A", "natman"), ("base", "random"), ("randfrozen3", "random"),
                           ("randfrozen8", "whole"), ("randfrozen0", "whole"), ("baseA", "whole"), ("A1B", "reduced"),
                           ("B1A", "small"), ("A2A+", "small")]:
        with pytest.raises(KitError, match=f"invalid treatment.*{protocol}"):
            parse(name, protocol)


def test_unknown_protocol():
    with pytest.raises(KitError, match="unknown protocol"):
        valid_names("imagenet-2015")
    with pytest.raises(KitError, match="unknown protocol"):
        parse("baseA", "imagenet-2015")


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


@pytest.mark.parametrize("protocol,name", [(p, n) for p in PROTOCOLS for n in valid_names(p)])
def test_every_treatment_net(protocol, name):
    t = parse(name, protocol)
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
    net = netgen.make_treatment(template, parse("A5B"), DATA, num_classes=7, exact_classes=True)
    assert _layers(net)[-1].inner_product_param.num_output == 7
    net = netgen.make_treatment(template, parse("A5B"), DATA, num_classes=7)
    assert _layers(net)[-1].inner_product_param.num_output == 10, "default: the template's width"
    assert template.SerializeToString() == before
    with pytest.raises(KitError, match="exact_classes"):
        netgen.make_treatment(template, parse("A5B"), DATA, num_classes=11)


def test_text_round_trip_is_a_valid_caffe_net():
    net = netgen.make_treatment(netgen.load_net(TEMPLATE), parse("B4A+"), DATA, num_classes=10)
    again = netgen.pb2().NetParameter()
    netgen.text_format.Merge(netgen.to_text(net), again)
    assert again == net


def test_solver_budget_scales_the_schedule():
    tpl = netgen.load_solver(SOLVER)
    s = netgen.make_solver(tpl, "train_val.prototxt", random_seed=3, iters=tpl.max_iter * 2)
    assert (s.net, s.random_seed, s.max_iter) == ("train_val.prototxt", 3, tpl.max_iter * 2)
    assert s.stepsize == tpl.stepsize * 2 and s.test_interval == tpl.test_interval * 2
    assert (s.momentum, s.weight_decay) == pytest.approx((0.9, 0.0005)) and s.lr_policy == "step"


def test_a_cut_half_trains_for_its_schedule(tmp_path):
    """solvers/small_iters.toml: the row of the smallest k at or above the run's; above them all, the
    template's own; a run on an uncut half (baseA of small) is never rescaled."""
    from generators.runfiles import cut_iters, read_schedule, run_files
    from kitcore.profiles import profile
    rows = read_schedule()["fa20_solver.prototxt"]
    fa20, tpl = profile("fa20"), netgen.load_solver(SOLVER)
    smallest, largest = min(rows), max(rows)
    assert cut_iters(fa20, parse("B3B", "small"), smallest) == rows[smallest]
    assert cut_iters(fa20, parse("baseB", "small"), 1) == rows[smallest]
    assert cut_iters(fa20, parse("baseB", "small"), largest + 1) is None
    assert cut_iters(fa20, parse("baseA", "small"), smallest) is None
    assert cut_iters(fa20, parse("B3B", "random"), smallest) is None
    files = run_files(fa20, parse("A3B+", "small"), 10, 0, "d", val_records=2000, per_class=smallest)
    assert files.solver.max_iter == rows[smallest] != tpl.max_iter
    assert files.solver.stepsize == round(tpl.stepsize * rows[smallest] / tpl.max_iter)
    with pytest.raises(KitError, match="small protocol needs k"):
        cut_iters(fa20, parse("baseB", "small"), None)
    bad = tmp_path / "bad.toml"
    bad.write_text("[fa20_solver.prototxt]\nfive = 'x'\n")
    with pytest.raises(KitError, match="is not a table of solver -> k = iterations"):
        read_schedule(bad)


def test_deploy_has_no_data_or_loss():
    net = netgen.make_treatment(netgen.load_net(TEMPLATE), parse("A3B"), DATA, num_classes=10)
    deploy = netgen.to_deploy(net, (1, 1, 28, 28))
    types = [layer.type for layer in deploy.layer]
    assert types[0] == "Input" and "Data" not in types and "SoftmaxWithLoss" not in types


def test_phase_net_filters_by_phase():
    net = netgen.make_treatment(netgen.load_net(TEMPLATE), parse("A3B"), DATA, num_classes=10)
    train, test = netgen.phase_net(net, "TRAIN"), netgen.phase_net(net, "TEST")
    assert [layer.type for layer in train.layer].count("Data") == 1 and "Accuracy" not in [x.type for x in train.layer]
    assert test.layer[0].data_param.source == "V_lmdb" and train.layer[0].data_param.source == "T_lmdb"
    assert "Accuracy" in [layer.type for layer in test.layer]
    assert not any(layer.include or layer.exclude for layer in list(train.layer) + list(test.layer))


def _blobs(path):
    msg = netgen.pb2().NetParameter()
    msg.ParseFromString(path.read_bytes())
    return {layer.name: [list(b.data) for b in layer.blobs] for layer in msg.layer if layer.blobs}


def test_random_weights_init_is_audited_and_stays_frozen_in_caffe(tmp_path):
    """randfrozen3: init.caffemodel from seeded fillers, then real caffe train keeps conv1-3 at it."""
    import numpy as np

    from data_prep.lmdb_io import compute_mean, write_datum_lmdb
    from generators.surgery import random_init, transplant

    from conftest import run_caffe
    rng = np.random.default_rng(0)
    for phase in ("train", "val"):
        write_datum_lmdb(tmp_path / f"{phase}_lmdb", rng.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8),
                         np.arange(40) % 10, shuffle_seed=1)
    compute_mean(tmp_path / "train_lmdb", tmp_path / "mean.binaryproto")
    t = parse("randfrozen3", "whole")
    data = netgen.DataSpec(str(tmp_path / "train_lmdb"), str(tmp_path / "val_lmdb"), str(tmp_path / "mean.binaryproto"))
    net = netgen.make_treatment(netgen.load_net(TEMPLATE), t, data, num_classes=10, batch_train=8, batch_val=8)
    assert [layer.name for layer in _layers(net)] == NAMES, "the authors' nolearn nets rename nothing"
    audit = random_init(net, t, tmp_path / "init.caffemodel", (1, 1, 28, 28), seed=5)
    assert len(audit) == 16 and all("nothing copied" in line and "left at filler" in line for line in audit)
    assert "frozen at random init" in audit[5] and "trained" in audit[6]
    random_init(net, t, tmp_path / "again.caffemodel", (1, 1, 28, 28), seed=5)
    random_init(net, t, tmp_path / "other.caffemodel", (1, 1, 28, 28), seed=6)
    init = _blobs(tmp_path / "init.caffemodel")
    assert init == _blobs(tmp_path / "again.caffemodel") != _blobs(tmp_path / "other.caffemodel")
    with pytest.raises(KitError, match="not random weights"):
        random_init(net, parse("A3B"), tmp_path / "x.caffemodel", (1, 1, 28, 28), seed=5)
    with pytest.raises(KitError):
        transplant(net, tmp_path / "missing.caffemodel", net, t, tmp_path / "x.caffemodel", (1, 1, 28, 28), 5)
    solver = netgen.make_solver(netgen.load_solver(SOLVER), "train_val.prototxt", random_seed=2, iters=3,
                                test_iter=1, snapshot=3)
    (tmp_path / "train_val.prototxt").write_text(netgen.to_text(net))
    (tmp_path / "solver.prototxt").write_text(netgen.to_text(solver))
    (tmp_path / "snapshots").mkdir()
    run_caffe(["train", "--solver=solver.prototxt", "--weights=init.caffemodel"], tmp_path, tmp_path / "train.log")
    trained = _blobs(tmp_path / "snapshots" / "snap_iter_3.caffemodel")
    for name in NAMES[:3]:
        assert trained[name] == init[name], f"{name} is frozen at its random init"
    for name in NAMES[3:]:
        assert trained[name][0] != init[name][0], f"{name} trains"
    assert "conv1 does not need backward computation" in (tmp_path / "train.log").read_text()
