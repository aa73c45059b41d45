"""Tests of what Figure 2 writes beside its lines: the findings' numbers (never two in one place) and whose
class names its caption lists."""
from pathlib import Path

from PIL import Image
from test_findings import _seed

from analysis.figures import number_offsets, write_figures


def test_figure2_bottom_numbers_never_share_a_place():
    # findings 4 and 5 both at n = 7 on lines 0.002 apart (FA-20 seed 0: BnB+ and AnB+ meet there)
    offsets = number_offsets([(2, 0.96), (5, 0.961), (7, 0.76), (7, 0.965), (7, 0.967)], 0.21)
    assert offsets == [(6, 9)] * 4 + [(6, -19)]  # alone at its n: above right; the second one near: below
    assert len(set(number_offsets([(7, 0.9)] * 4, 0.2))) == 4


def test_figure2_names_whose_halves_it_lists(tmp_path: Path):
    halves, where = {"random0": {"A": ["cat", "dog"], "B": ["car", "cup"]}}, tmp_path / "random0" / "runs"
    out = write_figures(_seed("random0", 0.0), tmp_path / "one", where=where, classes=halves)
    assert Image.open(out["figure_png"]).info["Description"] == "A: cat, dog | B: car, cup"
    out = write_figures(_seed("random0", 0.0) + _seed("random1", 0.01), tmp_path / "two", where=where, classes=halves)
    for key in ("figure_png", "figure2_bottom_png"):  # two seeds drawn together: the names are random0's
        assert Image.open(out[key]).info["Description"] == \
            "random0: A: cat, dog | B: car, cup; random1: other halves"
