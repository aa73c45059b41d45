"""Task distance as a curve (issue 36, part 3): the gap and the boost per (m, seed) from known rows, the means and
intervals per m, the CSV the figure draws and the sentence read from it."""
from __future__ import annotations

import csv
import math

import pytest

from analysis.distance import points, summary, write_distance
from analysis.intervals import interval
from kitcore.errors import KitError

SEEDS = {1: -1.0, 2: 0.0, 3: 1.0}  # each seed's offset of the gap (pp): the means stay the levels'
GAP7 = {0: -30.0, 1: -25.0, 2: -10.0}  # A7B - baseB per m (pp); the random splits: -10
SLOPE = {1: 0.0, 2: 0.1, 3: -0.1}  # each seed's boost change per m (pp): 0, +0.2, -0.2 from m = 0 to 2


def _row(split, kind, score, source=None, n=0, finetuned=False):
    return {"dataset": "fa20", "split": split, "treatment": "x", "kind": kind, "source": source, "target": "B",
            "n": n, "finetuned": finetuned, "score": score, "finished": True}


def _grid(split: str, gap7: float, boost: float) -> list[dict]:
    """baseB 80%, AnB at baseB + gap7 * n / 7 (pp), AnB+ at baseB + boost, baseA at 90%."""
    rows = [_row(split, "base", 0.9) | {"target": "A"}, _row(split, "base", 0.8)]
    for n in range(1, 8):
        rows += [_row(split, "transfer", 0.8 + gap7 * n / 700, "A", n),
                 _row(split, "transfer", 0.8 + boost / 100, "A", n, True)]
    return rows


ROWS = [r for m, g in GAP7.items() for s, off in SEEDS.items() for r in _grid(f"mix{s}m{m}", g + off, 2 + SLOPE[s] * m)]
ROWS += _grid("random0", -10.0, 1.0) + _grid("random1", -10.0, 1.0) + _grid("natman", -50.0, 0.0)
SHARES = {f"mix{s}m{m}": m / 10 for m in GAP7 for s in SEEDS}


def test_points_per_m_and_seed_then_the_means_with_intervals():
    pts = points(ROWS, SHARES)
    assert [(p["m"], p["seed"]) for p in pts] == [(m, s) for m in ("0", "1", "2") for s in (1, 2, 3, "mean")] + \
        [("random", 0), ("random", 1), ("random", "mean")]
    first = pts[0]
    assert first["split"] == "mix1m0" and first["runs"] == 16 and first["share"] == 0.0
    assert first["gap7"] == pytest.approx(-31.0) and first["gap1"] == pytest.approx(-31.0 / 7)
    assert first["boost"] == pytest.approx(2.0)
    mean = pts[3]
    want = interval([-31.0, -30.0, -29.0])
    assert mean["gap7"] == pytest.approx(-30.0) and mean["runs"] == 48
    assert (mean["gap7_lo"], mean["gap7_hi"]) == (pytest.approx(want.lo), pytest.approx(want.hi))
    assert pts[-1]["gap7"] == pytest.approx(-10.0) and pts[-1]["boost"] == pytest.approx(1.0)


def test_a_base_trained_twice_as_long_is_not_the_base():
    """baseB2x (extra/ records: kind base, budget 2) beside a random split's baseB leaves its gaps as they were."""
    twice = _row("random0", "base", 0.5) | {"budget": 2}
    assert points(_grid("random0", -10.0, 1.0) + [twice])[0]["gap7"] == pytest.approx(-10.0)


def test_a_missing_run_leaves_its_measure_out():
    rows = [r for r in _grid("mix0m1", -20.0, 2.0) if not (r["n"] == 3 and r["finetuned"])]
    (pt, _mean) = points(rows)
    assert math.isnan(pt["boost"]) and pt["gap3"] == pytest.approx(-60 / 7) and pt["runs"] == 15


def test_the_figure_its_csv_and_the_sentence_read_from_it(tmp_path):
    out = write_distance(ROWS, tmp_path, SHARES)
    assert out["distance_png"].stat().st_size > 10_000 and out["distance_pdf"].is_file()
    with open(out["distance_csv"], newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 15 and records[3]["seed"] == "mean" and float(records[3]["gap7"]) == pytest.approx(-30)
    line = summary(records)
    assert line == out["line"]
    # halfway between natman's -30 and the random splits' -10 is -20: between m = 1 (-25) and m = 2 (-10)
    assert "is -30.00 pp on natman's halves (m = 0) and -10.00 pp on the random splits" in line
    assert "crosses halfway (-20.00 pp) at m = 1.3, 13% of A's classes from group 2" in line
    change = interval([0.0, 0.2, -0.2])
    assert f"does not depend on m: its change from m = 0 to m = 2, each seed's straight-line fit, is " \
           f"{change.text()} pp over 3 seeds" in line


def test_no_crossing_and_an_inconclusive_boost_say_so():
    rows = [r for m, g in ((0, -30.0), (1, -29.0)) for s, off in SEEDS.items()
            for r in _grid(f"mix{s}m{m}", g + off, 2 + 3 * s * m)] + _grid("random0", -10.0, 1.0)
    text = summary([{k: str(v) for k, v in p.items()} for p in points(rows)])
    assert "it does not cross halfway (-20.00 pp) up to m = 1 (-29.00 pp there)" in text
    assert "Whether the fine-tuned boost (AnB+ - baseB, mean over n = 1..7) depends on m is inconclusive" in text
    assert "seeds would decide it" in text or "no number of seeds" in text
    alone = [r for r in rows if not r["split"].startswith("random")]
    assert "No halfway point" in summary([{k: str(v) for k, v in p.items()} for p in points(alone)])


def test_a_seed_not_at_every_m_yet_is_left_out_of_the_boosts_change_and_named():
    rows = ROWS + _grid("mix4m0", -30.0, 9.0) + _grid("mix4m1", -25.0, -9.0)  # seed 4: m = 0, 1 of 0..2
    text = summary([{k: str(v) for k, v in p.items()} for p in points(rows, SHARES)])
    change = interval([0.0, 0.2, -0.2])
    assert f"is {change.text()} pp over 3 seeds (within ±1 pp is no dependence; seed 4 left out, not at every " \
           "m yet)." in text, text


def test_without_mixed_runs_it_is_an_error(tmp_path):
    with pytest.raises(KitError, match="no runs on a mixed split"):
        write_distance(_grid("random0", -10.0, 1.0), tmp_path)
