"""The paper's five findings, measured per seed from a results table with known scores; one baseline for all."""
from __future__ import annotations

import csv
import math
import subprocess
import sys

import pytest

from analysis.figures import write_figures
from analysis.findings import controls, findings, to_markdown, verdicts
from analysis.results import read_results_csv, write_results_csv
from analysis.rules import baseline

from conftest import ROOT


def _row(split, kind, score, source=None, target="B", n=0, finetuned=False):
    return {"dataset": "fa20", "split": split, "treatment": "x", "kind": kind, "source": source, "target": target,
            "n": n, "finetuned": finetuned, "score": score, "finished": True}


def _seed(split: str, shift: float) -> list[dict]:
    """baseA 0.80 (no transfer targets A: not the baseline) and baseB 0.82; BnB dips to 0.75 at n=4; AnB 0.81 at n=1-2,
    0.70 at n=7; BnB+ 0.82; AnB+ 0.83 (+ shift)."""
    rows = [_row(split, "base", 0.80 + shift, target="A"), _row(split, "base", 0.82 + shift)]
    for n in range(1, 8):
        bnb = {4: 0.75}.get(n, 0.81) + shift
        anb = 0.70 + shift if n == 7 else 0.81 + shift
        rows += [_row(split, "transfer", bnb, "B", n=n), _row(split, "transfer", anb, "A", n=n),
                 _row(split, "transfer", 0.82 + shift, "B", n=n, finetuned=True),
                 _row(split, "transfer", 0.83 + shift, "A", n=n, finetuned=True)]
    return rows


def test_findings_per_seed_mean_and_spread():
    rows = _seed("random0", 0.0) + _seed("random1", 0.01) + [
        _row("natman", "base", 0.9, target="B"), _row("natman", "transfer", 0.8, "A", "B", 7),
        _row("all", "base", 0.85, target="all"), _row("all", "random-weights", 0.80, target="all", n=2)]
    seeds, measures = findings(rows)
    by = {m["key"]: m for m in measures if m["key"] != "control"}
    assert seeds == [0, 1]
    assert by["base"]["values"] == pytest.approx([82.0, 83.0]) and by["base"]["sd"] == pytest.approx(math.sqrt(0.5))
    assert by["general"]["mean"] == pytest.approx(0.0)
    assert by["dip"]["values"] == pytest.approx([-7.0, -7.0]) and by["dip_n"]["values"] == [4.0, 4.0]
    assert by["anb7"]["mean"] == pytest.approx(-12.0) and by["specific"]["mean"] == pytest.approx(-5.5)
    assert by["bnbplus"]["mean"] == pytest.approx(0.0) and by["anbplus"]["mean"] == pytest.approx(1.0)
    controls = {m["label"]: m["mean"] for m in measures if m["key"] == "control"}
    assert controls == pytest.approx({"natman A7B - baseB (natural to man-made, pp)": -10.0,
                                      "random frozen weights: randfrozen2 - base of all classes (pp)": -5.0})
    text = to_markdown(rows)
    assert "| 2 | co-adaptation dip: lowest BnB - base over n = 2..6 (pp) | -7.00 | -7.00 | -7.00 | 0.00 |" in text


def test_verdicts_shown_not_shown_and_not_measured():
    rows = _seed("random0", 0.0) + _seed("random1", 0.01)
    assert [v["shown"] for v in verdicts(rows)] == [True] * 5  # general 0, dip -7, drop -12 / -5.5, BnB+ 0, AnB+ +1 pp
    assert verdicts(rows)[4]["text"] == "5. AnB+ reaches or beats the base: shown (AnB+ - base, mean over n = 1..7: " \
                                        "+1.00 pp, sd 0.00)"
    # BnB 0.84 everywhere (2 pp above baseB 0.82): no dip, and AnB 0.81 at n = 1, 2 is 3 pp below it; no AnB+ runs
    flat = [{**r, "score": 0.84} if r["kind"] == "transfer" and r["source"] == "B" and not r["finetuned"] else r
            for r in _seed("random0", 0.0) if not (r["source"] == "A" and r["finetuned"])]
    found = {v["finding"]: v for v in verdicts(flat)}
    assert [found[i]["shown"] for i in range(1, 6)] == [False, False, True, True, None]
    assert found[1]["text"] == "1. first layers general: not shown (AnB - BnB at n = 1, 2: -3.00 pp)"
    assert found[2]["text"] == ("2. co-adaptation dip of BnB: not shown "
                                "(lowest BnB - base over n = 2..6: +2.00 pp, at n = 2)")
    assert found[5]["text"] == ("5. AnB+ reaches or beats the base: not measured "
                                "(AnB+ - base, mean over n = 1..7: no runs)")
    assert found[2]["text"] in to_markdown(flat)


def _controlled(split: str, shift: float, plateau: tuple, after: tuple, b1b: float, b1bplus: float) -> list[dict]:
    """_seed's rows, its bases with (baseA, baseB) plateau_pp and best_after_step, B1B and B1B+ at baseB + b1b(plus)."""
    rows = _seed(split, shift)
    for r in rows:
        if r["kind"] == "base":
            r.update(plateau_pp=plateau[r["target"] == "B"], best_after_step=after[r["target"] == "B"])
        elif r["source"] == "B" and r["n"] == 1:
            r["score"] = 0.82 + shift + (b1bplus if r["finetuned"] else b1b)
    return rows


def test_controls_per_seed_held():
    rows = (_controlled("random0", 0.0, (0.1, -0.2), (10, 10), -0.003, 0.004)
            + _controlled("random1", 0.01, (0.3, 0.0), (10, 10), -0.003, 0.005))
    seeds, measures, lines = controls(rows)
    by = {m["key"]: m for m in measures}
    assert seeds == [0, 1]
    assert by["plateau_A"]["values"] == [0.1, 0.3] and by["plateau_A"]["mean"] == pytest.approx(0.2)
    assert by["plateau_A"]["sd"] == pytest.approx(math.sqrt(0.02))
    assert by["baseB"]["values"] == pytest.approx([82.0, 83.0]) and by["baseB"]["sd"] == pytest.approx(math.sqrt(0.5))
    assert by["b1b"]["values"] == pytest.approx([-0.3, -0.3]) and by["b1bplus"]["mean"] == pytest.approx(0.45)
    assert by["after_step"]["values"] == [10.0, 10.0]
    assert lines == ["(a) bases on their plateau: held (worst: +0.30 pp, seed 1, baseA)",
                     "(b) B1B and B1B+ within 0.6 pp of baseB (or within the seed-to-seed sd of baseB, if larger): "
                     "held (worst: +0.50 pp, seed 1, B1B+: within 0.6 pp; "
                     "seed-to-seed sd of baseB: 0.71 pp)",
                     "(c) the 10 best tests after the last lr step: held (fewest: 10 of 10, seed 0)"]


def test_controls_not_held_and_not_measured():
    rows = (_controlled("random0", 0.0, (0.1, -0.2), (10, 10), -0.003, 0.007)
            + _controlled("random1", 0.01, (0.0, 0.45), (7, 10), -0.003, 0.005))
    assert controls(rows)[2] == [
        "(a) bases on their plateau: not held (worst: +0.45 pp, seed 1, baseB)",
        "(b) B1B and B1B+ within 0.6 pp of baseB (or within the seed-to-seed sd of baseB, if larger): "
        "held (worst: +0.70 pp, seed 0, B1B+: not within 0.6 pp; "
        "bound: the seed-to-seed sd of baseB; seed-to-seed sd of baseB: 0.71 pp)",
        "(c) the 10 best tests after the last lr step: not held (fewest: 7 of 10, seed 1)"]
    beyond = (_controlled("random0", 0.0, (0.1, -0.2), (10, 10), -0.003, 0.009)
              + _controlled("random1", 0.01, (0.0, 0.0), (10, 10), -0.003, 0.005))
    assert controls(beyond)[2][1] == ("(b) B1B and B1B+ within 0.6 pp of baseB "
                                      "(or within the seed-to-seed sd of baseB, if larger): "
                                      "not held (worst: +0.90 pp, seed 0, B1B+: not within 0.6 pp; "
                                      "bound: the seed-to-seed sd of baseB; seed-to-seed sd of baseB: 0.71 pp)")
    near = (_controlled("random0", 0.0, (0.1, -0.2), (10, 10), -0.003, 0.007)
            + _controlled("random1", 0.002, (0.0, 0.0), (10, 10), -0.003, 0.005))
    assert controls(near)[2][1] == ("(b) B1B and B1B+ within 0.6 pp of baseB "
                                    "(or within the seed-to-seed sd of baseB, if larger): "
                                    "not held (worst: +0.70 pp, seed 0, B1B+: not within 0.6 pp; "
                                    "seed-to-seed sd of baseB: 0.14 pp)")
    # seed 2 has only a finished baseB without the columns and an unfinished baseA far from its plateau
    partial = _controlled("random0", 0.0, (0.1, -0.2), (10, 10), -0.003, 0.004) + [
        _row("random2", "base", 0.9), {**_row("random2", "base", 0.9, target="A"), "plateau_pp": 5.0,
                                       "best_after_step": 2, "finished": False}]
    seeds, measures, lines = controls(partial)
    assert seeds == [0, 2] and math.isnan({m["key"]: m for m in measures}["plateau_A"]["values"][1])
    assert lines[0] == ("(a) bases on their plateau: held (worst: +0.10 pp, seed 0, baseA; "
                        "not measured: seed 2 baseA, seed 2 baseB)")
    assert lines[1].endswith("(worst: +0.40 pp, seed 0, B1B+: within 0.6 pp; seed-to-seed sd of baseB: 5.66 pp; "
                             "not measured: seed 2 B1B, seed 2 B1B+)")
    assert lines[2] == ("(c) the 10 best tests after the last lr step: held (fewest: 10 of 10, seed 0; "
                        "not measured: seed 2 base nets)")
    assert controls(_seed("random0", 0.0))[2][::2] == ["(a) bases on their plateau: not measured",
                                                        "(c) the 10 best tests after the last lr step: not measured"]
    assert controls([_row("random0", "base", 0.8)])[2][1] == ("(b) B1B and B1B+ within 0.6 pp of baseB "
                                                              "(or within the seed-to-seed sd of baseB, if larger): "
                                                              "not measured")


def test_findings_md_opens_with_the_controls():
    rows = (_controlled("random0", 0.0, (0.1, -0.2), (10, 10), -0.003, 0.004)
            + _controlled("random1", 0.01, (0.3, 0.0), (10, 10), -0.003, 0.005))
    text = to_markdown(rows)
    assert text.startswith("**Controls**")
    assert "| a | baseA on its plateau: mean of its last 3 tests - the 3 before (pp) | +0.10 | +0.30 | +0.20 | 0.14 |" \
        in text
    assert "| c | fewest of the 10 best tests after the last lr step (base nets) | 10 | 10 | 10.0 | 0.00 |" in text
    order = [text.index(s) for s in ("| a | baseA", "(a) bases", "(c) the 10 best", "**The paper's findings**",
                                     "| 1 | first layers", "1. first layers general:")]
    assert order == sorted(order)


def test_findings_command(tmp_path):
    csv = write_results_csv(_seed("random3", 0.0), tmp_path / "r.csv")
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "findings", str(csv)], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| seed 3 | mean | sd |" in proc.stdout and "| 5 | AnB+ vs base" in proc.stdout


def _csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("case", ["seeds weigh the same", "a split with no transfers"])
def test_one_baseline_for_figure2_table1_and_findings(tmp_path, case: str):
    """figure2_bottom.csv's base point, Table 1's and findings.md's baseline: the same number, by hand."""
    def base(split, target, score, **kw):
        return {**_row(split, "base", score, target=target), **kw}
    rows = [base("random0", "A", 0.70), base("random0", "B", 0.80),  # seed 0's transfers target B only
            _row("random0", "transfer", 0.82, "A", "B", 1, True), _row("random0", "transfer", 0.79, "B", "B", 1)]
    if case == "seeds weigh the same":
        rows += [base("random1", "A", 0.78), base("random1", "B", 0.86),  # seed 1's target both halves
                 _row("random1", "transfer", 0.88, "A", "B", 1, True),
                 _row("random1", "transfer", 0.83, "B", "A", 1, True),
                 base("random2", "A", 0.60), base("random2", "B", 0.90)]  # no transfers: the table's targets, A and B
        expected, runs, seeds, anb_plus = (0.80 + (0.78 + 0.86) / 2 + (0.60 + 0.90) / 2) / 3, 5, 4, (0.82, 0.88, 0.83)
        bases = [("random0", 0.80), ("random1", 0.78), ("random1", 0.86), ("random2", 0.60), ("random2", 0.90)]
    else:
        rows += [base("random1", "A", 0.60), base("random1", "B", 0.90)]  # no transfers: the table's target, B
        expected, runs, seeds, anb_plus = (0.80 + 0.90) / 2, 2, 3, (0.82,)
        bases = [("random0", 0.80), ("random1", 0.90)]
    rows += [  # none of these may count
        base("random0", "B", 0.10, finished=False), base("random1", "B", math.nan), base("natman", "B", 0.99),
        base("all", "all", 0.99), base("randomX", "B", 0.99), base("random", "B", 0.99),
        base("random3", "B", 0.50, finished=False)]
    out = write_figures(read_results_csv(write_results_csv(rows, tmp_path / "results.csv")), tmp_path / "figs")
    bottom = {(r["group"], int(r["n"])): (float(r["mean"]), int(r["runs"])) for r in _csv(out["figure2_bottom_csv"])}
    assert bottom["baseB", 0] == (pytest.approx(expected, abs=1e-9), runs)
    assert baseline(rows) == (pytest.approx(expected, abs=1e-12), runs)
    table = _csv(out["table1_csv"])[0]
    assert int(table["base_runs"]) == runs
    assert float(table["over_baseB_pooled"]) == pytest.approx(100 * (sum(anb_plus) / len(anb_plus) - expected))
    seed_list, measures = findings(rows)
    assert len(seed_list) == seeds  # seed 3 has only an unfinished run: a column of n/a
    assert {m["key"]: m for m in measures}["base"]["mean"] == pytest.approx(100 * expected)
    line = next(x for x in out["findings_md"].read_text().splitlines() if "base nets of the target halves" in x)
    assert line.split(" | ")[-2] == f"{100 * expected:.2f}"  # findings.md's mean column
    # Figure 2 (top) draws exactly the baseline runs as baseB
    drawn = sorted((r["split"], float(r["score"])) for r in _csv(out["figure2_csv"]) if r["group"] == "baseB")
    assert drawn == bases and len(bases) == runs
