"""docs/img/verdicts.csv (analysis.verdicts): one row per judged measure, protocol and k, whose numbers and verdict
are analysis.intervals' over the per-seed values computed by hand from a small synthetic results table."""
from __future__ import annotations

import csv
import math

import pytest
from test_findings import _row, _three
from test_small import ROWS as SMALL_ROWS

from analysis import intervals as iv
from analysis.readings import markdown, reading_rows, rescored
from analysis.small import per_k, points
from analysis.verdicts import COLUMNS, verdict_rows, write_verdicts


def _rows() -> list[dict]:
    """test_findings' three seeds, baseB's plateau climbs 0.1, 0.5, 0.3 pp, and Figure 3's natman control over
    three replicates (-10, -9, -8 pp) and one random frozen net (-5 pp)."""
    rows = _three()
    for r in rows:
        if r["kind"] == "base" and r["target"] == "B":
            r["plateau_pp"] = {"random0": 0.1, "random1": 0.5, "random2": 0.3}[r["split"]]
    return rows + [
        _row("natman", "base", 0.90), _row("natman", "base", 0.88, repeat=1), _row("natman", "base", 0.89, repeat=2),
        _row("natman", "transfer", 0.80, "A", "B", 7), _row("natman", "transfer", 0.79, "A", "B", 7, repeat=1),
        _row("natman", "transfer", 0.81, "A", "B", 7, repeat=2),
        _row("all", "base", 0.85, target="all"), _row("all", "random-weights", 0.80, target="all", n=2)]


def _read(path) -> tuple[list[str], dict[tuple[str, str, str], dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
        f.seek(0)
        return header, {(r["measure"], r["protocol"], r["k"]): r for r in csv.DictReader(f)}


def _numbers(row: dict) -> tuple[int, float, float, float]:
    return int(row["seeds"]), float(row["mean"]), float(row["lo"]), float(row["hi"])


def test_verdicts_csv_holds_the_intervals_verdicts(tmp_path):
    path = write_verdicts(_rows(), tmp_path / "verdicts.csv", per_k(points(SMALL_ROWS, 800)))
    header, rows = _read(path)
    assert tuple(header) == COLUMNS and COLUMNS[:12] == ("measure", "protocol", "k", "seeds", "mean", "lo", "hi",
                                                         "margin", "verdict", "claim", "label", "decide_at")
    assert COLUMNS[12:] == tuple(f"{c}_{r}" for r in ("final", "last10") for c in ("mean", "lo", "hi", "verdict"))
    # the dip per seed, by hand: BnB at n = 3..6 is 1, 7, 1, 1 pp under baseB (seed 0), 1, 5, 1, 1 (seed 1),
    # 1, 9, 1, 1 (seed 2): -2.5, -2.0, -3.0 pp
    dip = rows["dip", "random", ""]
    expected = iv.interval([-2.5, -2.0, -3.0])
    half = 4.302652729749462 * 0.5 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert _numbers(dip) == (3, pytest.approx(-2.5), pytest.approx(-2.5 - half, abs=1e-6),
                             pytest.approx(-2.5 + half, abs=1e-6))
    assert (dip["claim"], dip["margin"], dip["decide_at"]) == ("-", "1.0", "")
    assert dip["verdict"] == iv.verdict(expected, "-") == "shown"
    assert dip["label"] == "co-adaptation dip: BnB - base, mean over n = 3..6 (pp)"
    # Figure 3's natman control over its replicates: 0.80 - 0.90, 0.79 - 0.88, 0.81 - 0.89: -10, -9, -8 pp
    natman = rows["natman_A7B", "natman", ""]
    assert _numbers(natman)[:2] == (3, pytest.approx(-9.0)) and natman["verdict"] == "shown"
    frozen = rows["randfrozen2", "whole", ""]  # one value: no interval, no number of units to project from
    assert (frozen["seeds"], frozen["lo"], frozen["verdict"], frozen["decide_at"]) == ("1", "", "inconclusive", "")
    # control (a): baseB's climbs 0.1, 0.5, 0.3: 0.3 +- t(0.975, 2) * 0.2 / sqrt 3 reaches across 0.3 pp
    plateau = rows["plateau_B", "random", ""]
    assert (plateau["claim"], plateau["verdict"]) == ("below 0.3", "inconclusive")
    assert float(plateau["hi"]) == pytest.approx(0.3 + 4.302652729749462 * 0.2 / math.sqrt(3), abs=1e-6)
    assert rows["plateau_A", "random", ""]["verdict"] == "inconclusive"  # no baseA climbs in the table
    # Table 1's boosts per seed: AnB+ 1 pp over baseB and BnB+ at every layer of every seed
    boost = rows["table1_over_BnB+_3-7", "random", ""]
    assert _numbers(boost) == (3, pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))
    assert boost["verdict"] == "shown" and boost["claim"] == "+"
    # the small target at k = 5: dips -3, -1, -2 pp; inconclusive, 4 seeds would decide it (t(3) / 2 < 2)
    small = rows["dip", "small", "5"]
    assert _numbers(small)[:2] == (3, pytest.approx(-2.0))
    assert (small["verdict"], small["decide_at"]) == ("inconclusive", "4")
    assert small["verdict"] == iv.verdict(iv.interval([-3.0, -1.0, -2.0]), "-")
    assert rows["over_base", "small", "800"]["decide_at"] == "3" and rows["dip", "small", "800"]["verdict"] == "none"
    assert {r["verdict"] for r in rows.values()} <= {*iv.WORDS, "held", "not held"}
    assert {k[1] for k in rows} == {"random", "natman", "whole", "small"}


def test_the_readings_without_selection_are_the_same_measures_on_the_final_and_last_tests(tmp_path):
    """The final-test and last-10 columns are the score's measures with that reading as each run's score: a run
    whose final test sits 2 pp under its score moves the measure by exactly that much."""
    rows = _rows()
    for r in rows:
        r["final_accuracy"], r["last10"] = r["score"], r["score"]
        if r["split"] == "random0" and r["kind"] == "transfer" and r["n"] == 7 and not r["finetuned"] \
                and r["source"] == "A":
            r["final_accuracy"] = r["score"] - 0.02  # seed 0's A7B: -2 pp on its final test
    _, got = _read(write_verdicts(rows, tmp_path / "verdicts.csv"))
    anb7 = got["anb7", "random", ""]
    assert float(anb7["mean_last10"]) == pytest.approx(float(anb7["mean"]))
    assert float(anb7["mean_final"]) == pytest.approx(float(anb7["mean"]) - 2 / 3)  # one seed of three
    assert anb7["verdict_final"] in iv.WORDS and got["natman_A7B", "natman", ""]["mean_final"] == ""
    page = markdown(verdict_rows(rows), reading_rows(rows))
    assert page[-1].startswith("The verdict changes for") or page[-1] == "No verdict changes with the reading."
    assert any(line.startswith("| AnB drop: AnB - base at n = 7 (pp) |") for line in page)
    assert rescored([{"score": 0.5, "final_accuracy": ""}], "final_accuracy")[0]["score"] != 0.5
