"""Figure 3 (analysis.figure3): every point drawn and each level's 95% bar in its CSV, a one-split piece's
replicates paired with their own bases as the verdicts pair them, what is absent, and the classes named."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_analysis_figures import _all_rows, _read, _table1_rows

from analysis import intervals as iv
from analysis.figure3 import plot_figure3
from analysis.figures import write_figures
from analysis.rules import figure3_controls


def test_figure3_csv_holds_every_point_drawn(tmp_path: Path):
    (_, _, numbers), _ = plot_figure3(_all_rows(), tmp_path / "figure3")
    runs = [r for r in _read(numbers) if r["treatment"] != "mean"]
    got = {(r["panel"], r["series"], r["split"], r["treatment"]): float(r["value"]) for r in runs}
    assert len(got) == len(runs) == (14 + 2) + (7 + 1) + (14 + 7 + 7)
    means = {(r["panel"], r["series"], int(r["n"])): r for r in _read(numbers) if r["treatment"] == "mean"}
    assert len(means) == (8 + 8 + 8) + (7 + 7 + 7 + 7)  # a mean row per level drawn: one run each, so no bar
    assert all(r["units"] == "1" and r["lo"] == r["hi"] == "" for r in means.values())
    assert float(means["normalized", "random-split AnB (similar)", 3]["value"]) == pytest.approx(-0.03)
    for n in range(1, 8):  # the scores _all_rows gives, and minus their own base (natman A 0.60, B 0.50; all 0.57)
        assert got["natman", "target B", "natman", f"A{n}B"] == pytest.approx(0.5 - n / 30)
        assert got["random", "target all", "all", f"None{n}all"] == pytest.approx(0.4 / n)
        assert got["normalized", "natman BnA (B to A)", "natman", f"B{n}A"] == \
            pytest.approx(-0.05 - n / 30)
        assert got["normalized", "random frozen weights (randfrozen{n})", "all", f"None{n}all"] == \
            pytest.approx(0.4 / n - 0.57)
        assert got["normalized", "random-split AnB (similar)", "random0", f"A{n}B"] == pytest.approx(-n / 100)
    assert got["natman", "target A", "natman", "base mean"] == 0.6
    assert got["random", "target all", "all", "base mean"] == 0.57


def test_figure3_error_bars_are_95_intervals_over_seeds_or_over_one_splits_replicates(tmp_path: Path):
    """A level with runs on several splits: the interval over the splits (a split's replicates averaged first);
    a level of one split (natman, all): over its replicates."""
    rows = _all_rows()
    anb3 = next(r for r in rows if r["split"] == "random0" and r["treatment"] == "A3B")
    frozen2 = next(r for r in rows if r["kind"] == "random-weights" and r["n"] == 2)
    rows += [{**anb3, "split": "random1", "score": anb3["score"] + 0.02},
             {**anb3, "split": "random1", "score": anb3["score"] + 0.04, "repeat": 1},
             {**frozen2, "score": frozen2["score"] + 0.01, "repeat": 1},
             {**frozen2, "score": frozen2["score"] + 0.03, "repeat": 2}]
    (_, _, numbers), _ = plot_figure3(rows, tmp_path / "figure3")
    means = {(r["series"], int(r["n"])): r for r in _read(numbers) if r["treatment"] == "mean"
             and r["panel"] == "normalized"}
    anb = means["random-split AnB (similar)", 3]  # random0: 0.59 - 0.62; random1: 0.61 and 0.63 - 0.64, averaged
    want = iv.interval([-0.03, -0.02])
    assert (int(anb["units"]), float(anb["value"])) == (2, pytest.approx(want.mean))
    assert (float(anb["lo"]), float(anb["hi"])) == (pytest.approx(want.lo), pytest.approx(want.hi))
    frozen = means["random frozen weights (randfrozen{n})", 2]
    want = iv.interval([0.2 - 0.57, 0.21 - 0.57, 0.23 - 0.57])
    assert int(frozen["units"]) == 3 and float(frozen["lo"]) == pytest.approx(want.lo)


def test_figure3_pairs_a_one_split_replicate_with_its_own_base_as_the_verdicts_do(tmp_path: Path):
    """natman's replicate r minus baseB's replicate r: the bar at n = 7 is the verdicts' natman_A7B interval."""
    rows = _all_rows()
    a7b = next(r for r in rows if r["split"] == "natman" and r["treatment"] == "A7B")
    base_b = next(r for r in rows if r["split"] == "natman" and r["kind"] == "base" and r["target"] == "B")
    rows += [{**a7b, "score": a7b["score"] + 0.01, "repeat": 1}, {**a7b, "score": a7b["score"] - 0.03, "repeat": 2},
             {**base_b, "score": 0.52, "repeat": 1}, {**base_b, "score": 0.47, "repeat": 2}]
    (_, _, numbers), _ = plot_figure3(rows, tmp_path / "figure3")
    bar = next(r for r in _read(numbers) if r["treatment"] == "mean" and r["panel"] == "normalized"
               and r["series"] == "natman AnB (A to B)" and r["n"] == "7")
    control = next(c for c in figure3_controls(rows) if c["key"] == "natman_A7B")
    assert control["values"] == pytest.approx([100 * (-7 / 30), 100 * (-7 / 30 - 0.01), 100 * (-7 / 30)])
    want = iv.interval(control["values"])  # (0.5 - 7/30, + 0.01, - 0.03) minus base B of the same r: 0.50, 0.52, 0.47
    assert (100 * float(bar["lo"]), 100 * float(bar["hi"])) == (pytest.approx(want.lo), pytest.approx(want.hi))


def test_figure3_says_what_is_absent(tmp_path: Path):
    only_random = [r for r in _all_rows() if r["split"].startswith("random")]
    paths, absent = plot_figure3(only_random, tmp_path / "f3")
    assert len(paths) == 3 and paths[0].is_file() and paths[2].name == "f3.csv"
    assert len(absent) == 2 and "natman" in absent[0] and "random frozen" in absent[1]
    no_bases = [r for r in _all_rows() if not (r["split"] == "natman" and r["kind"] == "base")]
    _, absent = plot_figure3(no_bases, tmp_path / "f3b")
    assert absent == ["figure3 bottom natman transfer (XnY, dissimilar): no base run to normalize by"]
    assert plot_figure3(_table1_rows()[:3], tmp_path / "none")[0] == []


def test_figure3_names_each_splits_classes_once(tmp_path: Path):
    """The caption (and the PNG's Description) names natman's halves after the split, and the whole split's one
    half, itself named `all`, once."""
    from PIL import Image  # noqa: PLC0415  (matplotlib's own dependency)
    classes = {"natman": {"A": ["Bear", "Bird"], "B": ["Coat", "Sandal"]}, "all": {"all": ["Bear", "Coat"]}}
    out = write_figures(_all_rows(), tmp_path / "figs", classes=classes)
    text = Image.open(out["figure3_png"]).info["Description"]
    assert text == "natman A: Bear, Bird | B: Coat, Sandal; all: Bear, Coat"
