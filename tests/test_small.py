"""Where transfer pays: the small-target measures per (seed, k), per k with verdicts, the figure and its CSV."""
from __future__ import annotations

import csv
import json
import math

import pytest

from analysis.small import full_k, per_k, point_of, points, summary, to_markdown, write_small
from kitcore.errors import KitError


def _row(split, kind, score, source=None, target="B", n=0, finetuned=False, **extra):
    return {"dataset": "fa20", "split": split, "treatment": "x", "kind": kind, "source": source, "target": target,
            "n": n, "finetuned": finetuned, "score": score, "finished": True, "wall_seconds": 2.0, **extra}


def _grid(split: str, base: float, boost: float, dip: float) -> list[dict]:
    """baseB at `base`; BnB at base except `dip` at n = 3; AnB base - 0.05 at n = 7; BnB+ at base; AnB+ base + boost;
    the controls' columns: plateau 0.1 pp, every best test after the step."""
    good = {"plateau_pp": 0.1, "best_after_step": 10}
    rows = [_row(split, "base", 0.9, target="A", **good), _row(split, "base", base, **good)]
    for n in range(1, 8):
        rows += [_row(split, "transfer", base + (dip if n == 3 else 0), "B", n=n),
                 _row(split, "transfer", base - (0.05 if n == 7 else 0), "A", n=n),
                 _row(split, "transfer", base, "B", n=n, finetuned=True),
                 _row(split, "transfer", base + boost, "A", n=n, finetuned=True)]
    return rows


ROWS = (_grid("small0k5", 0.50, 0.04, -0.03) + _grid("small1k5", 0.52, 0.06, -0.01)
        + _grid("random0", 0.90, 0.0, 0.0) + _grid("random1", 0.91, 0.002, 0.0))


def test_points_per_seed_and_k_with_the_full_protocol_at_its_k():
    assert point_of({"split": "small3k25"}) == (3, 25) and point_of({"split": "random3"}) is None
    assert point_of({"split": "random3"}, 800) == (3, 800) and point_of({"split": "natman"}, 800) is None
    pts = points(ROWS, 800)
    assert [(p["k"], p["seed"]) for p in pts] == [(5, 0), (5, 1), (800, 0), (800, 1)]
    first = pts[0]
    assert first["runs"] == 30 and first["baseB"] == pytest.approx(50.0)
    assert first["over_base"] == pytest.approx(4.0) and first["over_self"] == pytest.approx(4.0)
    assert first["dip"] == pytest.approx(-3.0) and first["dip_n"] == 3.0 and first["anb7"] == pytest.approx(-5.0)
    assert first["b1b"] == pytest.approx(0.0) and first["after_step"] == 10
    assert [p["k"] for p in points(ROWS)] == [5, 5]  # no full k: the random splits are left out


def test_per_k_means_sd_and_verdicts():
    ks = per_k(points(ROWS, 800))
    k5 = ks[0]
    assert k5["over_base"] == pytest.approx(5.0) and k5["over_base_sd"] == pytest.approx(math.sqrt(2))
    assert k5["controls"] == {"a": True, "b": True, "c": True}
    text = to_markdown(points(ROWS, 800), 800)
    assert "| 5 | 2 | 51.00 | +5.00 ± 1.41 | +5.00 ± 1.41 | -2.00 ± 1.41 (3) | -5.00 ± 0.00 | 1.0 |" in text
    assert ("- k = 5 (seeds 0, 1): boost over baseB shown (+5.00 ± 1.41 pp), over BnB+ shown (+5.00 ± 1.41 pp); "
            "co-adaptation dip shown (-2.00 ± 1.41 pp)") in text
    assert "- k = 800 (seeds 0, 1): boost over baseB not shown (+0.10 ± 0.14 pp)" in text
    assert summary(points(ROWS, 800)).startswith("AnB+ - baseB +5.00 (k = 5), +0.10 (k = 800) pp; AnB+ - BnB+ ")


def test_a_control_off_at_one_k_says_where():
    rows = _grid("small0k10", 0.6, 0.0, 0.0)
    rows[1]["plateau_pp"] = 0.8  # baseB still rising
    rows = [r for r in rows if not (r["n"] == 1 and r["source"] == "B" and r["finetuned"])]
    rows.append(_row("small0k10", "transfer", 0.6 - 0.02, "B", n=1, finetuned=True))  # B1B+ 2 pp under baseB
    (k10,) = per_k(points(rows))
    assert k10["controls"] == {"a": False, "b": False, "c": True}
    assert "controls (a) not held (worst +0.80 pp), (b) not held (worst -2.00 pp, bound 0.60)" in to_markdown(
        points(rows), None)


def test_full_k_from_the_small_splits_split_json(tmp_path):
    paths = []
    for i, most in enumerate((800, 800)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps({"uncut_per_class": {"B": [780, most]}}))
    assert full_k(paths) == 800 and full_k([]) is None
    paths[1].write_text(json.dumps({"uncut_per_class": {"B": [5, 900]}}))
    with pytest.raises(KitError, match="different numbers of images per class uncut"):
        full_k(paths)


def test_write_small_draws_what_its_csv_says(tmp_path):
    out = write_small(ROWS, tmp_path, 800)
    assert out["small_png"].stat().st_size > 10_000 and out["small_pdf"].is_file()
    with open(out["small_csv"], newline="") as f:
        records = list(csv.DictReader(f))
    assert [(r["k"], r["seed"], r["split"]) for r in records] == [("5", "0", "small0k5"), ("5", "1", "small1k5"),
                                                                  ("800", "0", "random0"), ("800", "1", "random1")]
    assert float(records[1]["over_base"]) == pytest.approx(6.0)
    assert out["small_md"].read_text() == to_markdown(points(ROWS, 800), 800)
    with pytest.raises(KitError, match="no runs on a small split"):
        write_small(_grid("random0", 0.9, 0, 0), tmp_path, 800)
