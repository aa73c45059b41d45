"""Tests of Table 1, Figures 2 (bottom) and 3 (their CSVs against the results tables), curves, conv1 filters."""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from matplotlib.image import imread
from test_findings import _seed

from analysis.figures import notes, write_figures
from analysis.filters import conv1_weights, filter_grid, write_filters
from analysis.findings import findings, verdicts
from analysis.results import analyze_split, read_results_csv, write_results_csv
from analysis.rules import baseline, collect
from kitcore.errors import KitError
from runner.cli import main

from test_analysis import mark_finished, modern

T1 = 12.706204736174694  # Student's t(0.975) with 1 degree of freedom (tables)


def _row(split: str, kind: str, source, target: str, n: int, ft: bool, score: float, finished: bool = True) -> dict:
    return {"dataset": "t", "split": split, "treatment": f"{source}{n}{target}{'+' * ft}", "kind": kind,
            "source": source, "target": target, "n": n, "finetuned": ft, "score": score, "finished": finished}


def _table1_rows() -> list[dict]:
    return [
        _row("random0", "base", None, "A", 0, False, 0.60), _row("random0", "base", None, "B", 0, False, 0.62),
        _row("random1", "base", None, "B", 0, False, 0.64),
        _row("random0", "transfer", "A", "B", 1, True, 0.63), _row("random0", "transfer", "B", "A", 1, True, 0.65),
        _row("random1", "transfer", "A", "B", 3, True, 0.66), _row("random0", "transfer", "A", "B", 5, True, 0.70),
        _row("random0", "transfer", "B", "B", 1, True, 0.61), _row("random0", "transfer", "A", "A", 3, True, 0.62),
        _row("random1", "transfer", "B", "B", 3, True, 0.60), _row("random0", "transfer", "B", "B", 5, True, 0.65),
        # none of these may count: not a random split, unfinished, no score, frozen, a random-weights net
        _row("natman", "transfer", "A", "B", 3, True, 0.99),
        _row("random0", "transfer", "A", "B", 5, True, 0.99, False),
        _row("random0", "transfer", "A", "B", 7, True, math.nan), _row("random0", "transfer", "A", "B", 6, False, 0.99),
        _row("natman", "base", None, "B", 0, False, 0.10), _row("all", "random-weights", None, "all", 4, False, 0.99),
    ]


def _all_rows() -> list[dict]:
    rows = _table1_rows()[:11]
    for n in range(1, 8):
        rows += [_row("random0", "transfer", "A", "B", n, False, 0.62 - n / 100),
                 _row("random0", "transfer", "B", "B", n, False, 0.61 - (3 <= n <= 5) / 50),
                 _row("natman", "transfer", "A", "B", n, False, 0.5 - n / 30),
                 _row("natman", "transfer", "B", "A", n, False, 0.55 - n / 30),
                 _row("all", "random-weights", None, "all", n, False, 0.4 / n)]
    rows += [_row("natman", "base", None, "A", 0, False, 0.60), _row("natman", "base", None, "B", 0, False, 0.50),
             _row("all", "base", None, "all", 0, False, 0.57)]
    return rows


_LABEL = {(True, False): "BnB", (True, True): "BnB+", (False, False): "AnB", (False, True): "AnB+"}


def _figure2_expected(rows: list[dict], who: str = "") -> list[tuple]:
    """(group, n, score) Figure 2 draws for rows whose every finished random-split base is a baseline."""
    return sorted((who + ("baseB" if r["kind"] == "base" else _LABEL[r["source"] == r["target"], r["finetuned"]]),
                   r["n"], round(r["score"], 9)) for r in rows
                  if r["split"].startswith("random") and r["finished"] and not math.isnan(r["score"])
                  and r["kind"] in ("base", "transfer"))


def test_write_figures_everything(tmp_path: Path):
    rows, original = _all_rows(), _all_rows()[:30]
    out = write_figures(rows, tmp_path / "figs", original=original)
    assert out["absent"] == []
    for key in ("figure_png", "figure2_bottom_png", "figure3_png", "table1_md", "table1_original_md"):
        assert out[key].is_file()
    for key, stem in (("figure_png", "figure2"), ("figure2_bottom_png", "figure2_bottom"), ("figure3_png", "figure3")):
        assert out[key].read_bytes()[:4] == b"\x89PNG" and out[key.replace("png", "pdf")].read_bytes()[:4] == b"%PDF"
        assert out[f"{stem}_csv"] == out[key].with_suffix(".csv") == tmp_path / "figs" / f"{stem}.csv"
    assert not [p for p in (tmp_path / "figs").iterdir() if ".tmp" in p.name]
    # figure2.csv: every usable random-split run (both halves are targeted on seed 0), then the authors'
    drawn = sorted((r["group"], int(r["n"]), round(float(r["score"]), 9)) for r in _read(out["figure2_csv"]))
    assert drawn == sorted(_figure2_expected(rows) + _figure2_expected(original, "authors' "))
    assert len(drawn) == (11 + 14) + (11 + 8)
    # figure2_bottom.csv: the means of those points by group and n, the baseline the seed-weighted 0.625
    bottom = {(r["group"], int(r["n"])): (float(r["mean"]), int(r["runs"])) for r in _read(out["figure2_bottom_csv"])}
    by: dict[tuple, list[float]] = {}
    for group, n, value in _figure2_expected(rows) + _figure2_expected(original, "authors' "):
        by.setdefault((group, n), []).append(value)
    assert set(bottom) == set(by)
    for key, values in by.items():
        mean = 0.625 if key[0].endswith("baseB") else sum(values) / len(values)
        assert bottom[key] == (pytest.approx(mean, abs=1e-9), len(values)), key
    assert bottom["AnB", 7] == (pytest.approx(0.55), 1) and bottom["BnB+", 3] == (pytest.approx(0.61), 2)
    assert float(_read(out["table1_csv"])[0]["over_baseB_pooled"]) == pytest.approx(3.5)  # as by hand above
    # figure3.csv: the kit's points and the authors' (their 30 rows: no natman or `all` bases to normalize by)
    f3 = Counter((r["panel"], r["series"]) for r in _read(out["figure3_csv"]) if r["treatment"] != "mean")
    assert f3 == {("natman", "target A"): 7 + 1, ("natman", "target B"): 7 + 1, ("random", "target all"): 7 + 1,
                  ("normalized", "natman AnB (A to B)"): 7, ("normalized", "natman BnA (B to A)"): 7,
                  ("normalized", "random frozen weights (randfrozen{n})"): 7,
                  ("normalized", "random-split AnB (similar)"): 7,
                  ("natman", "authors' target A"): 4, ("natman", "authors' target B"): 4,
                  ("random", "authors' target all"): 3, ("normalized", "authors' random-split AnB (similar)"): 4}
    pieces = collect(rows)
    assert [len(pieces[p]) for p in ("natman", "random", "anb")] == [14, 7, 7]


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_figure2_bottom_numbers_baseline_and_notes(tmp_path: Path):
    rows = _seed("random0", 0.0) + _seed("random1", 0.01)  # baseA 0.80/0.81 targets no transfer: not the base
    out = write_figures(rows, tmp_path)
    assert out["figure2_bottom_csv"].read_text().splitlines()[0] == "group,n,mean,runs,seeds,lo,hi"
    got = {(r["group"], int(r["n"])): r for r in _read(out["figure2_bottom_csv"])}
    # by hand: the mean of seeds 0 and 1 (one run each): baseB 0.82/0.83, BnB 0.81 but 0.75 at n = 4,
    # AnB 0.81 but 0.70 at n = 7, BnB+ 0.82, AnB+ 0.83, each + 0.01 on seed 1; two seeds 0.01 apart:
    # the interval is the mean +- t(0.975, 1) * 0.005
    expected = {("baseB", 0): 0.825}
    for n in range(1, 8):
        expected.update({("BnB", n): 0.755 if n == 4 else 0.815, ("AnB", n): 0.705 if n == 7 else 0.815,
                         ("BnB+", n): 0.825, ("AnB+", n): 0.835})
    assert set(got) == set(expected)
    assert {k: (int(r["runs"]), int(r["seeds"])) for k, r in got.items()} == dict.fromkeys(expected, (2, 2))
    assert {k: float(r["mean"]) for k, r in got.items()} == pytest.approx(expected)
    for end, sign in (("lo", -1), ("hi", 1)):
        assert {k: float(r[end]) for k, r in got.items()} == pytest.approx({k: v + sign * T1 * 0.005
                                                                            for k, v in expected.items()})
    base = {m["key"]: m for m in findings(rows)[1]}["base"]["mean"]
    assert float(got[("baseB", 0)]["mean"]) == pytest.approx(baseline(rows)[0]) == pytest.approx(base / 100)
    text = out["findings_md"].read_text()
    assert text.startswith("**Controls**") and text.index("(b) B1B and B1B+") < text.index("**The paper's findings**")
    assert "\n\n- (b) B1B and B1B+ score like baseB" in text  # a list, line by line
    assert "| 1 | base nets of the target halves: top-1 accuracy, % | 82.00 | 83.00 | 82.50 [76.15, 88.85] |" in text
    lines = notes(rows)
    judged = verdicts(rows)
    in_md = [line for line in text.splitlines() if line[:2] in {f"{i}." for i in range(1, 6)}]
    assert in_md == [v["text"] for v in judged] and [v["finding"] for v in judged] == [2, 3, 4, 5]
    joined = " ".join(lines)  # the notes: each finding's short line (wrapped), with findings.md's verdict word
    assert all(len(line) <= 125 for line in lines) and all(v["short"] in joined for v in judged)
    assert "seeds 0, 1" in lines[0] and "2. co-adaptation dip of BnB at n = 3..6: shown (BnB - base, n = 3..6: " \
        "-2.50 [-2.50, -2.50] pp)" in joined
    assert "4. AnB: layers 1-2 transfer, a drop at high n: shown (AnB - BnB, n = 1, 2: +0.00 [+0.00, +0.00]; AnB - " \
        "base, n = 7: -12.00 [-12.00, -12.00]; AnB - BnB, n = 6, 7: -5.50 [-5.50, -5.50] pp)" in joined
    assert "means and 95% intervals over seed 0;" in notes(_seed("random0", 0.0))[0]  # one seed: singular
    assert not [line for line in lines if "fragile" in line or "500 classes" in line]
    assert joined.count("paper") == 1 and "numbered as the paper's Section 4.1" in joined  # a label, no claim


def test_analyze_split_with_original_and_sibling_splits(tmp_path: Path):
    dataset = tmp_path / "fa20"
    for split, name, meta, acc in (
            ("random0", "baseB", {"kind": "base", "target": "B"}, 0.5),
            ("random0", "A2B+", {"kind": "transfer", "source": "A", "target": "B", "n": 2, "finetune": True}, 0.6),
            ("random1", "baseB", {"kind": "base", "target": "B"}, 0.4),
            ("all", "randfrozen2", {"kind": "random-weights", "target": "all", "n": 2}, 0.2),
            ("all", "base", {"kind": "base", "target": "all"}, 0.4)):
        run = dataset / split / "runs" / name
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"treatment": name, "dataset": "fa20", "split": split, **meta}))
        (run / "train.log").write_text(modern("0403", 0, range(0, 50, 10), acc))
        mark_finished(run)
    original = write_results_csv(_all_rows(), tmp_path / "orig.csv")
    out = analyze_split(dataset / "random0", original=original)
    table = read_results_csv(out["results_csv"])
    assert sorted((r["split"], r["treatment"]) for r in table) == [
        ("all", "base"), ("all", "randfrozen2"), ("random0", "A2B+"), ("random0", "baseB"), ("random1", "baseB")]
    assert out["curves_png"].is_file() and out["table1_md"].is_file() and out["table1_original_md"].is_file()
    assert out["absent"] == ["figure3 natman transfer (XnY, dissimilar): no runs",
                             "figure3 random-split AnB (similar): no runs"]
    assert "| 1-7 | 1 | +15.00 |" in out["table1_md"].read_text()  # A2B+ 0.62 vs baseB 0.52 and 0.42 (seed 1)
    # what is drawn, from results.csv (scores 0.52, 0.62, 0.42, 0.22, 0.42: each log's accuracy + 0.02)
    mine = [(r["group"], int(r["n"]), round(float(r["score"]), 9), r["split"]) for r in _read(out["figure2_csv"])
            if not r["group"].startswith("authors'")]
    assert sorted(mine) == [("AnB+", 2, 0.62, "random0"), ("baseB", 0, 0.42, "random1"), ("baseB", 0, 0.52, "random0")]
    bottom = {(r["group"], int(r["n"])): (float(r["mean"]), int(r["runs"])) for r in _read(out["figure2_bottom_csv"])}
    assert bottom["baseB", 0] == (pytest.approx(0.47), 2) and bottom["AnB+", 2] == (pytest.approx(0.62), 1)
    assert bottom["authors' baseB", 0] == (pytest.approx(0.625), 3)  # the original table's own baseline
    assert len(bottom) == 2 + len({(r["group"], r["n"]) for r in _read(out["figure2_csv"])
                                   if r["group"].startswith("authors'")})
    f3 = {(r["panel"], r["series"], r["treatment"]): float(r["value"]) for r in _read(out["figure3_csv"])
          if r["treatment"] != "mean"}
    assert f3["random", "target all", "randfrozen2"] == pytest.approx(0.22)
    assert f3["random", "target all", "base mean"] == pytest.approx(0.42)
    assert f3["normalized", "random frozen weights (randfrozen{n})", "randfrozen2"] == pytest.approx(-0.20)
    assert len([k for k in f3 if not k[1].startswith("authors'")]) == 3


# ---- conv1 filters ----------------------------------------------------------------------

def _model(tmp_path: Path, channels: int, weights: np.ndarray) -> Path:
    from kitcore.caffe_env import import_caffe, pb2
    caffe_pb2 = pb2()
    caffe = import_caffe()
    net = caffe_pb2.NetParameter(name="tiny")
    data = net.layer.add(name="data", type="Input", top=["data"])
    data.input_param.shape.add(dim=[1, channels, 8, 8])
    conv = net.layer.add(name="conv1", type="Convolution", bottom=["data"], top=["conv1"])
    conv.convolution_param.num_output = weights.shape[0]
    conv.convolution_param.kernel_size.append(weights.shape[2])
    ip = net.layer.add(name="ip", type="InnerProduct", bottom=["conv1"], top=["ip"])
    ip.inner_product_param.num_output = 2
    proto = tmp_path / f"net{channels}.prototxt"
    proto.write_text(text_format.MessageToString(net))
    model = caffe.Net(str(proto), caffe.TEST)
    model.params["conv1"][0].data[...] = weights
    path = tmp_path / f"net{channels}.caffemodel"
    model.save(str(path))
    return path


def test_filters_grey_and_colour(tmp_path: Path, capsys):
    grey = np.arange(5 * 1 * 3 * 3, dtype=np.float32).reshape(5, 1, 3, 3)
    path = _model(tmp_path, 1, grey)
    name, read = conv1_weights(path)
    assert name == "conv1" and np.array_equal(read, grey)
    png = write_filters(path, tmp_path / "grey.png", scale=2)
    image = imread(png)
    assert image.shape[:2] == (2 * (6 + 1) + 1, 3 * (6 + 1) + 1)  # 5 filters: 3 columns, 2 rows of 6x6 tiles
    tile = image[1:7, 1:7, 0]
    assert tile[0, 0] == 0 and tile[-1, -1] == 1 and tile[0, 2] == pytest.approx(1 / 8, abs=1 / 255)
    assert image[0, 0, 0] == pytest.approx(0.1, abs=1 / 255)  # border
    colour = np.zeros((4, 3, 2, 2), dtype=np.float32)
    colour[0, 0, 0, 0] = 1  # Caffe's channel 0 is blue
    colour[1, 2, 1, 1] = 1  # channel 2 is red
    cpath = _model(tmp_path, 3, colour)
    grid = filter_grid(conv1_weights(cpath)[1], scale=1)
    assert list(grid[1, 1]) == [0, 0, 1] and list(grid[2, 1 + 3 + 1]) == [1, 0, 0]
    assert main(["filters", str(cpath), "--out", str(tmp_path / "c.png")]) == 0
    assert imread(tmp_path / "c.png").shape[2] in (3, 4) and "filters:" in capsys.readouterr().out


def test_filters_bad_input(tmp_path: Path):
    with pytest.raises(KitError, match="does not exist"):
        conv1_weights(tmp_path / "none.caffemodel")
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(KitError, match="not a Caffe model"):
        conv1_weights(junk)
