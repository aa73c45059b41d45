"""Where transfer pays: the small-target measures per (seed, k), per k with 95% intervals and verdicts, the controls
per k, the figure and its CSV, and the build check of its records."""
from __future__ import annotations

import csv
import json
import math

import pytest

from analysis.small import (
    CLAIMS,
    TUNING_SEED,
    check_small,
    full_k,
    per_k,
    point_of,
    points,
    summary,
    to_markdown,
    write_small,
)
from kitcore.errors import KitError

T1, T2 = 12.706204736174694, 4.302652729749462  # Student's t(0.975) with 1 and 2 degrees of freedom


def _row(split, kind, score, source=None, target="B", n=0, finetuned=False, **extra):
    return {"dataset": "fa20", "split": split, "treatment": "x", "kind": kind, "source": source, "target": target,
            "n": n, "finetuned": finetuned, "score": score, "finished": True, "wall_seconds": 2.0, **extra}


def _grid(split: str, base: float, boost: float, dip: float, plateau_b: float = 0.1) -> list[dict]:
    """baseB at `base`; BnB at base + `dip` at n = 3..6; AnB base - 0.05 at n = 7; BnB+ at base; AnB+ base + boost;
    the controls' columns: baseA's plateau 0.1 pp, baseB's `plateau_b`, every best test after the step."""
    rows = [_row(split, "base", 0.9, target="A", plateau_pp=0.1, best_after_step=10),
            _row(split, "base", base, plateau_pp=plateau_b, best_after_step=10)]
    for n in range(1, 8):
        rows += [_row(split, "transfer", base + (dip if 3 <= n <= 6 else 0), "B", n=n),
                 _row(split, "transfer", base - (0.05 if n == 7 else 0), "A", n=n),
                 _row(split, "transfer", base, "B", n=n, finetuned=True),
                 _row(split, "transfer", base + boost, "A", n=n, finetuned=True)]
    return rows


# k = 5: boosts 4, 6, 5 pp (mean 5, sd 1), dips -3, -1, -2 pp (mean -2, sd 1); k = 800 (the random splits): boosts
# 0 and 0.2 pp (mean 0.1, sd 0.1 sqrt 2), no dip; A7B 5 pp under baseB everywhere
ROWS = (_grid("small3k5", 0.50, 0.04, -0.03) + _grid("small1k5", 0.52, 0.06, -0.01)
        + _grid("small2k5", 0.51, 0.05, -0.02) + _grid("random0", 0.90, 0.0, 0.0) + _grid("random1", 0.91, 0.002, 0.0))
H5, H800 = T2 / math.sqrt(3), T1 * 0.1  # half widths: t(0.975, 2) * 1 / sqrt 3; t(0.975, 1) * 0.1 sqrt 2 / sqrt 2


def test_points_per_seed_and_k_with_the_full_protocol_at_its_k():
    assert point_of({"split": "small3k25"}) == (3, 25) and point_of({"split": "random3"}) is None
    assert point_of({"split": "random3"}, 800) == (3, 800) and point_of({"split": "natman"}, 800) is None
    pts = points(ROWS, 800)
    assert [(p["k"], p["seed"]) for p in pts] == [(5, 1), (5, 2), (5, 3), (800, 0), (800, 1)]
    first = pts[2]
    assert first["runs"] == 30 and first["baseB"] == pytest.approx(50.0) and first["run_seconds"] == 60.0
    assert first["over_base"] == pytest.approx(4.0) and first["over_self"] == pytest.approx(4.0)
    assert first["dip"] == pytest.approx(-3.0) and first["dip_n"] == 3.0 and first["anb7"] == pytest.approx(-5.0)
    assert first["b1b"] == pytest.approx(0.0) and first["after_step"] == 10 and first["plateau_B"] == 0.1
    assert [p["k"] for p in points(ROWS)] == [5, 5, 5]  # no full k: the random splits are left out


def test_per_k_means_intervals_and_verdicts():
    assert CLAIMS == {"over_base": "+", "over_self": "+", "dip": "-", "anb7": "-"}
    k5, k800 = per_k(points(ROWS, 800))
    assert k5["seeds"] == [1, 2, 3] and k5["over_base"] == pytest.approx(5.0)
    got = k5["over_base_iv"]
    assert (got.n, got.sd, got.lo, got.hi) == (3, pytest.approx(1.0), pytest.approx(5 - H5), pytest.approx(5 + H5))
    assert (k5["over_base_word"], k5["over_self_word"], k5["anb7_word"]) == ("shown", "shown", "shown")
    # the dip's interval [-4.48, +0.48] reaches past 0: its upper end drops below 0 when t(n - 1) / sqrt(n) < 2,
    # t(3) / 2 = 1.59 (t(2) / sqrt 3 = 2.48): 4 seeds
    assert k5["dip_word"] == "inconclusive"
    assert k5["dip_verdict"] == "inconclusive (about 4 seeds would decide it at this spread)"
    assert k800["over_base_iv"].lo == pytest.approx(0.1 - H800) and k800["over_base_word"] == "inconclusive"
    assert (k800["dip_word"], k800["dip_verdict"]) == ("none", "none")  # 0 pp on both seeds: within the margin
    assert [line[:12] for line in k5["controls"]] == ["(a) bases on", "(b) B1B and ", "(c) the 10 b"]
    assert all(": held (" in line for line in k5["controls"] + k800["controls"])
    text = to_markdown(points(ROWS, 800), 800)
    assert ("| 5 | 3 | 51.00 | +5.00 [+2.52, +7.48] | +5.00 [+2.52, +7.48] | -2.00 [-4.48, +0.48] "
            "| -5.00 [-5.00, -5.00] | n/a | 1.0 |") in text
    assert ("- k = 5 (seeds 1, 2, 3): boost over baseB +5.00 [+2.52, +7.48] pp: shown; over BnB+ +5.00 [+2.52, +7.48] "
            "pp: shown; co-adaptation dip (n = 3..6) -2.00 [-4.48, +0.48] pp: inconclusive (about 4 seeds would "
            "decide it at this spread); AnB drop at n = 7 -5.00 [-5.00, -5.00] pp: shown; controls (a)") in text
    assert "- k = 800 (seeds 0, 1): boost over baseB +0.10 [-1.17, +1.37] pp: inconclusive" in text
    line = summary(points(ROWS, 800))
    assert line.startswith("AnB+ - baseB +5.00 [+2.52, +7.48] (k = 5: shown), +0.10 [-1.17, +1.37] (k = 800: "
                           "inconclusive) pp; AnB+ - BnB+ ")
    assert line.endswith("(means and 95% intervals over 2-3 seeds per k)")


def test_a_control_off_at_one_k_says_where():
    def seed(split: str, plateau: float, under: float) -> list[dict]:  # baseB still rising; B1B+ under baseB
        rows = [r for r in _grid(split, 0.6, 0.0, 0.0, plateau) if not (r["n"] == 1 and r["source"] == "B"
                                                                         and r["finetuned"])]
        return rows + [_row(split, "transfer", 0.6 - under, "B", n=1, finetuned=True)]
    (k10,) = per_k(points(seed("small2k10", 0.8, 0.02) + seed("small1k10", 0.9, 0.0202)))
    a, b, c = k10["controls"]
    # baseB's climb 0.85 +- t(0.975, 1) * 0.05 = [+0.21, +1.49]: across 0.3; B1B+ -2.01 +- 0.127: beyond -1 pp
    assert a.endswith("inconclusive (baseA +0.10 [+0.10, +0.10]; baseB +0.85 [+0.21, +1.49] pp)")
    assert b.endswith("not held (B1B - baseB +0.00 [+0.00, +0.00]: shown; B1B+ - baseB -2.01 [-2.14, -1.88]: "
                      "opposite)")
    assert c.endswith(": held (fewest: 10 of 10, on every unit)")
    assert f"controls {a}; {b}; {c}" in to_markdown(points(seed("small2k10", 0.8, 0.02)
                                                           + seed("small1k10", 0.9, 0.0202)), None)


def test_full_k_from_the_small_splits_split_json(tmp_path):
    paths = []
    for i, most in enumerate((800, 800)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps({"uncut_per_class": {"B": [780, most]}}))
    assert full_k(paths) == 800 and full_k([]) is None
    paths[1].write_text(json.dumps({"uncut_per_class": {"B": [5, 900]}}))
    with pytest.raises(KitError, match="different numbers of images per class uncut"):
        full_k(paths)


def test_the_tuning_seed_is_drawn_never_judged():
    """Seed 0's small grids chose the iterations per k: its point is kept (tuning 1) but left out of each k's
    interval; seed 0 of the full protocol (random0) is an ordinary point at the full k."""
    assert TUNING_SEED == 0
    tuned = _grid("small0k5", 0.40, 0.20, -0.10)  # far from the others: it would move the mean to 8.75
    pts = points(ROWS + tuned, 800)
    assert [(p["seed"], p["tuning"]) for p in pts if p["k"] == 5] == [(0, 1), (1, 0), (2, 0), (3, 0)]
    assert [p["tuning"] for p in pts if p["k"] == 800] == [0, 0]
    assert [r["k"] for r in per_k(pts)] == [5, 800]
    assert per_k(pts)[0]["seeds"] == [1, 2, 3] and per_k(pts)[0]["over_base"] == pytest.approx(5.0)
    assert per_k(points(tuned, 800)) == []


def test_write_small_draws_what_its_csv_says(tmp_path):
    out = write_small(ROWS, tmp_path, 800)
    assert out["small_png"].stat().st_size > 10_000 and out["small_pdf"].is_file()
    with open(out["small_csv"], newline="") as f:
        records = list(csv.DictReader(f))
    assert [(r["k"], r["seed"], r["split"]) for r in records] == [
        ("5", "1", "small1k5"), ("5", "2", "small2k5"), ("5", "3", "small3k5"), ("800", "0", "random0"),
        ("800", "1", "random1"), ("5", "mean", ""), ("800", "mean", "")]
    assert float(records[0]["over_base"]) == pytest.approx(6.0) and records[0]["over_base_lo"] == ""
    k5 = records[5]
    assert int(k5["runs"]) == 90 and float(k5["over_base"]) == pytest.approx(5.0)
    assert (float(k5["over_base_lo"]), float(k5["over_base_hi"])) == pytest.approx((5 - H5, 5 + H5))
    assert (float(k5["dip_lo"]), float(k5["dip_hi"])) == pytest.approx((-2 - H5, -2 + H5))
    assert (float(k5["anb7_lo"]), float(k5["anb7_hi"])) == pytest.approx((-5.0, -5.0))
    assert float(records[6]["over_self_hi"]) == pytest.approx(0.1 + H800)
    assert out["small_md"].read_text() == to_markdown(points(ROWS, 800), 800)
    with pytest.raises(KitError, match="no runs on a small split"):
        write_small(_grid("random0", 0.9, 0, 0), tmp_path, 800)


def test_check_small_pools_only_builds_shown_alike():
    small = [{**r, "build_key": "b2", "protocol_key": "p"} for r in _grid("small0k5", 0.5, 0.04, -0.03)]
    full = [{**r, "build_key": "b1", "protocol_key": "p"} for r in _grid("random0", 0.9, 0.0, 0.0)]
    with pytest.raises(KitError, match=r"2 Caffe builds: \['b1', 'b2'\]"):
        check_small(small, full)
    check_small(small, full, {"b1": "b1", "b2": "b1"})  # evidence joins b2 to b1's class (kitcore.builds.classes)
    with pytest.raises(KitError, match="more than one protocol"):
        check_small(small + [{**small[-1], "protocol_key": "q"}], full, {"b2": "b1"})


def test_the_table_says_what_anb_plus_and_bnb_plus_trained_for():
    """AnB+ at a small k trains its base's 3000 iterations on all of A and then k's own on B; BnB+ k's twice."""
    rows = [{**r, "iterations": 3000 if r["target"] == "A" and r["kind"] == "base" else 300}
            for r in _grid("small1k5", 0.5, 0.04, -0.03)]
    assert "| 3000 + 300; 300 + 300 (baseB 300) |" in to_markdown(points(rows), None)
