"""The paper's findings (its Section 4.1 numbering), measured per seed from a results table with known scores, their
95% intervals and verdicts, the fairness controls, and one baseline for Figure 2, Table 1 and findings.md."""
from __future__ import annotations

import csv
import math
import subprocess
import sys

import pytest

from analysis.figures import write_figures
from analysis.findings import combine, controls, findings, to_markdown, verdicts
from analysis.results import read_results_csv, write_results_csv
from analysis.rules import baseline

from conftest import ROOT

T1, T2 = 12.706204736174694, 4.302652729749462  # Student's t(0.975) with 1 and 2 degrees of freedom (tables)


def _row(split, kind, score, source=None, target="B", n=0, finetuned=False, **extra):
    return {"dataset": "fa20", "split": split, "treatment": "x", "kind": kind, "source": source, "target": target,
            "n": n, "finetuned": finetuned, "score": score, "finished": True, **extra}


def _seed(split: str, shift: float, low: float = 0.75, plus: float = 0.83) -> list[dict]:
    """baseA 0.80 (no transfer targets A: not the baseline) and baseB 0.82; BnB 0.81 but `low` at n=4; AnB 0.81 at
    n=1-6, 0.70 at n=7; BnB+ 0.82; AnB+ `plus` (each + shift)."""
    rows = [_row(split, "base", 0.80 + shift, target="A"), _row(split, "base", 0.82 + shift)]
    for n in range(1, 8):
        bnb = {4: low}.get(n, 0.81) + shift
        anb = 0.70 + shift if n == 7 else 0.81 + shift
        rows += [_row(split, "transfer", bnb, "B", n=n), _row(split, "transfer", anb, "A", n=n),
                 _row(split, "transfer", 0.82 + shift, "B", n=n, finetuned=True),
                 _row(split, "transfer", plus + shift, "A", n=n, finetuned=True)]
    return rows


def _three() -> list[dict]:
    """Three seeds whose BnB at n = 4 is 7, 5 and 9 pp under baseB: dip over n = 3..6 -2.5, -2.0, -3.0 pp."""
    return _seed("random0", 0.0) + _seed("random1", 0.01, low=0.77) + _seed("random2", 0.02, low=0.73)


def test_findings_per_seed_values_and_intervals():
    rows = _three() + [  # Figure 3's natman control over 3 replicates (replicate 2 has no base: the base mean)
        _row("natman", "base", 0.90), _row("natman", "base", 0.88, repeat=1),
        _row("natman", "transfer", 0.80, "A", "B", 7), _row("natman", "transfer", 0.79, "A", "B", 7, repeat=1),
        _row("natman", "transfer", 0.81, "A", "B", 7, repeat=2),
        _row("all", "base", 0.85, target="all"), _row("all", "random-weights", 0.80, target="all", n=2)]
    seeds, measures = findings(rows)
    by = {m["key"]: m for m in measures}
    assert seeds == [0, 1, 2]
    assert by["base"]["values"] == pytest.approx([82.0, 83.0, 84.0]) and by["base"]["sd"] == pytest.approx(1.0)
    dip = by["dip"]["interval"]  # (-1 - 7 - 1 - 1) / 4, (-1 - 5 - 1 - 1) / 4, (-1 - 9 - 1 - 1) / 4
    assert by["dip"]["values"] == pytest.approx([-2.5, -2.0, -3.0]) and (dip.n, dip.sd) == (3, pytest.approx(0.5))
    assert (dip.lo, dip.hi) == pytest.approx((-2.5 - T2 * 0.5 / math.sqrt(3), -2.5 + T2 * 0.5 / math.sqrt(3)))
    assert by["dip45"]["values"] == pytest.approx([-4.0, -3.0, -5.0]) and by["dip_n"]["values"] == [4.0] * 3
    assert by["dip"]["verdict"] == by["dip45"]["verdict"] == "shown" and by["dip_n"]["verdict"] == ""
    expect = {"bnbplus": 0.0, "general": 0.0, "anb7": -12.0, "specific": -5.5, "anbplus": 1.0, "anbplus_self": 1.0}
    assert {k: by[k]["mean"] for k in expect} == pytest.approx(expect)
    assert [by[k]["claim"] for k in expect] == ["0", "0", "-", "-", "+", "+"]
    # the natman control per replicate: 0.80 - 0.90, 0.79 - 0.88, 0.81 - 0.89 (the base mean): -10, -9, -8 pp
    nat = by["natman_A7B"]
    assert nat["interval"].mean == pytest.approx(-9.0) and nat["interval"].sd == pytest.approx(1.0)
    assert nat["finding"] is None and nat["unit"] == "replicates" and nat["verdict"] == "shown"
    frozen = by["randfrozen2"]
    assert frozen["interval"].mean == pytest.approx(-5.0) and frozen["interval"].n == 1
    assert frozen["verdict_text"] == "inconclusive (1 replicate: no interval)"
    text = to_markdown(rows)
    assert ("| 2 | co-adaptation dip: BnB - base, mean over n = 3..6 (pp) | -2.50 | -2.00 | -3.00 "
            "| -2.50 [-3.74, -1.26] | shown |") in text
    assert "| 2 | ... the layer where BnB - base is lowest (n = 2..6; a description) | 4 | 4 | 4 |  |  |" in text
    assert "|  | natman A7B - baseB (natural to man-made, pp) |  |  |  | -9.00 [-11.48, -6.52] | shown |" in text


def test_the_verdict_words_of_each_finding():
    found = {v["finding"]: v for v in verdicts(_three())}
    assert [found[i]["verdict"] for i in (2, 3, 4, 5)] == ["shown"] * 4
    assert found[2]["text"] == ("2. co-adaptation dip of BnB at n = 3..6: shown "
                                "(BnB - base, mean over n = 3..6: -2.50 [-3.74, -1.26] pp, shown)")
    assert found[2]["short"] == "2. co-adaptation dip of BnB at n = 3..6: shown (BnB - base, n = 3..6: -2.50 " \
                                "[-3.74, -1.26] pp)"
    # BnB 0.84 everywhere (2 pp above baseB): a rise, not a dip; AnB - BnB at n = 1, 2 is -3 pp; no AnB+ runs
    flat = [{**r, "score": 0.84 + s} if r["kind"] == "transfer" and r["source"] == "B" and not r["finetuned"] else r
            for s, split in ((0.0, "random0"), (0.01, "random1")) for r in _seed(split, s)
            if not (r["source"] == "A" and r["finetuned"])]
    found = {v["finding"]: v for v in verdicts(flat)}
    assert [found[i]["verdict"] for i in (2, 3, 4, 5)] == ["opposite", "shown", "opposite", "not measured"]
    assert found[4]["text"].startswith("4. AnB: layers 1-2 transfer, a drop at high n: opposite (AnB - BnB at "
                                       "n = 1, 2: -3.00 [-3.00, -3.00] pp, opposite; AnB - base at n = 7: -12.00")
    assert found[2]["text"] in to_markdown(flat)
    # AnB+ 0.1, 0.2, 0.3 pp above baseB and BnB+: within the margin, a boost that does not matter
    near = (_seed("random0", 0.0, plus=0.821) + _seed("random1", 0.01, plus=0.822)
            + _seed("random2", 0.02, plus=0.823))
    five = {v["finding"]: v for v in verdicts(near)}[5]
    assert five["verdict"] == "none" and "+0.20 [-0.05, +0.45] pp, none" in five["text"]
    # 0.1 and 2.0 pp on two seeds: mean 1.05, sd 1.9 / sqrt 2; the lower end passes 0 when
    # t(n - 1) / sqrt(n) < 1.05 / 1.3435: t(7) / sqrt 8 = 0.836, t(8) / sqrt 9 = 0.769: 9 seeds
    wide = {v["finding"]: v for v in verdicts(_seed("random0", 0.0, plus=0.821) + _seed("random1", 0.01, plus=0.84))}
    assert wide[5]["verdict"] == "inconclusive"
    assert "+1.05 [-11.02, +13.12] pp, inconclusive (about 9 seeds would decide it at this spread)" in wide[5]["text"]


def test_combine():
    assert combine(["shown", "shown"]) == "shown" and combine(["shown", "opposite", "none"]) == "opposite"
    assert combine(["none", "none"]) == "none" and combine(["none", "shown"]) == "partly shown"
    assert combine(["shown", "inconclusive"]) == "partly shown"
    assert combine(["none", "inconclusive"]) == "inconclusive" and combine(["inconclusive"]) == "inconclusive"


def _controlled(split: str, shift: float, plateau: tuple, after: tuple, b1b: float, b1bplus: float) -> list[dict]:
    """_seed's rows, its bases with (baseA, baseB) plateau_pp and best_after_step, B1B and B1B+ at baseB + b1b(plus)."""
    rows = _seed(split, shift)
    for r in rows:
        if r["kind"] == "base":
            r.update(plateau_pp=plateau[r["target"] == "B"], best_after_step=after[r["target"] == "B"])
        elif r["source"] == "B" and r["n"] == 1:
            r["score"] = 0.82 + shift + (b1bplus if r["finetuned"] else b1b)
    return rows


HELD = (_controlled("random0", 0.0, (0.1, 0.0), (10, 10), -0.003, 0.004)
        + _controlled("random1", 0.01, (0.12, 0.02), (10, 10), -0.003, 0.0046))


def test_controls_per_seed_held():
    seeds, measures, lines = controls(HELD)
    by = {m["key"]: m for m in measures}
    assert seeds == [0, 1]
    assert by["plateau_A"]["values"] == [0.1, 0.12] and by["plateau_A"]["mean"] == pytest.approx(0.11)
    assert by["plateau_A"]["interval"].hi == pytest.approx(0.11 + T1 * 0.01)  # sd 0.02 / sqrt 2, over sqrt 2
    assert by["baseB"]["values"] == pytest.approx([82.0, 83.0]) and by["baseB"]["sd"] == pytest.approx(math.sqrt(0.5))
    assert by["b1b"]["values"] == pytest.approx([-0.3, -0.3]) and by["b1bplus"]["mean"] == pytest.approx(0.43)
    assert (by["b1b"]["verdict"], by["b1bplus"]["verdict"], by["b1bplus"]["claim"]) == ("shown", "shown", "0")
    assert by["after_step"]["values"] == [10.0, 10.0]
    assert lines == ["(a) bases on their plateau (interval of the last tests' climb below 0.3 pp): held "
                     "(baseA +0.11 [-0.02, +0.24]; baseB +0.01 [-0.12, +0.14] pp)",
                     "(b) B1B and B1B+ score like baseB (intervals within ±1 pp): held (B1B - baseB -0.30 "
                     "[-0.30, -0.30]: shown; B1B+ - baseB +0.43 [+0.05, +0.81]: shown)",
                     "(c) the 10 best tests after the last lr step: held (fewest: 10 of 10, on every unit)"]


def test_controls_not_held_and_inconclusive():
    rows = (_controlled("random0", 0.0, (0.1, 0.0), (10, 10), -0.003, 0.02)
            + _controlled("random1", 0.01, (0.12, 0.45), (7, 10), -0.003, 0.021))
    a, b, c = controls(rows)[2]
    assert a.startswith("(a) bases on their plateau (interval of the last tests' climb below 0.3 pp): inconclusive (")
    assert "baseB +0.23 [-2.63, +3.08]" in a  # 0.225 +- T1 * 0.225
    assert b.endswith("not held (B1B - baseB -0.30 [-0.30, -0.30]: shown; B1B+ - baseB +2.05 [+1.41, +2.69]: "
                      "opposite)")
    assert c == "(c) the 10 best tests after the last lr step: not held (fewest: 7 of 10, on every unit)"
    # B1B+ 0.4 and 1.2 pp: mean 0.8, sd 0.566; within +-1 pp needs t(n - 1) / sqrt(n) <= 0.2 / 0.566 = 0.354:
    # t(32) / sqrt 33 = 0.355, t(33) / sqrt 34 = 0.349: 34 seeds
    wide = (_controlled("random0", 0.0, (0.1, 0.0), (10, 10), -0.003, 0.004)
            + _controlled("random1", 0.01, (0.12, 0.02), (10, 10), -0.003, 0.012))
    assert controls(wide)[2][1].endswith(
        "inconclusive (B1B - baseB -0.30 [-0.30, -0.30]: shown; B1B+ - baseB +0.80 [-4.28, +5.88]: inconclusive "
        "(about 34 seeds would decide it at this spread))")
    one = controls(_controlled("random0", 0.0, (0.1, 0.0), (10, 10), -0.003, 0.004))[2]
    assert one[0] == ("(a) bases on their plateau (interval of the last tests' climb below 0.3 pp): inconclusive "
                      "(one unit: no interval) (baseA +0.10; baseB +0.00 pp)")
    assert one[1].endswith("inconclusive (B1B - baseB -0.30: inconclusive (1 seed: no interval); "
                           "B1B+ - baseB +0.40: inconclusive (1 seed: no interval))")
    # seed 2 has only a finished baseB without the columns and an unfinished baseA: left out of the intervals
    partial = HELD + [_row("random2", "base", 0.9),
                      _row("random2", "base", 0.9, target="A", plateau_pp=5.0, best_after_step=2, finished=False)]
    seeds, measures, lines = controls(partial)
    by = {m["key"]: m for m in measures}
    assert seeds == [0, 1, 2] and math.isnan(by["plateau_A"]["values"][2]) and by["plateau_A"]["interval"].n == 2
    assert lines == controls(HELD)[2]
    # no plateau or step columns at all: only (b) is measured
    assert [x[:3] for x in controls(_seed("random0", 0.0) + _seed("random1", 0.01))[2]] == ["(b)"]


def test_findings_md_opens_with_the_controls():
    text = to_markdown(HELD)
    assert text.startswith("**Controls**")
    assert ("| a | baseA on its plateau: mean of its last 3 tests - the 3 before (pp) | +0.10 | +0.12 "
            "| +0.11 [-0.02, +0.24] |  |") in text
    assert "| c | fewest of the 10 best tests after the last lr step (base nets) | 10 | 10 | fewest: 10 |  |" in text
    assert "| b | B1B+ - baseB (pp) | +0.40 | +0.46 | +0.43 [+0.05, +0.81] | shown |" in text
    order = [text.index(s) for s in ("| a | baseA", "(a) bases", "(c) the 10 best", "**The paper's findings**",
                                     "| 1 | base nets", "2. co-adaptation dip of BnB at n = 3..6:", "5. AnB+")]
    assert order == sorted(order)


def test_findings_command(tmp_path):
    csv = write_results_csv(_seed("random3", 0.0), tmp_path / "r.csv")
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "findings", str(csv)], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| # | measure | seed 3 | mean [95% interval] | verdict |" in proc.stdout
    assert "| 5 | AnB+ over the base: AnB+ - base, mean over n = 1..7 (pp) | +1.00 | +1.00 | " \
           "inconclusive (1 seed: no interval) |" in proc.stdout


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
        per_seed, runs, seeds, anb_plus = [0.80, (0.78 + 0.86) / 2, (0.60 + 0.90) / 2], 5, 4, (0.82, 0.88, 0.83)
        bases = [("random0", 0.80), ("random1", 0.78), ("random1", 0.86), ("random2", 0.60), ("random2", 0.90)]
        # seeds 80, 82, 75 %: mean 79, sd sqrt(13), t(0.975, 2) * sd / sqrt 3
        interval = (79.0 - T2 * math.sqrt(13 / 3), 79.0 + T2 * math.sqrt(13 / 3))
    else:
        rows += [base("random1", "A", 0.60), base("random1", "B", 0.90)]  # no transfers: the table's target, B
        per_seed, runs, seeds, anb_plus = [0.80, 0.90], 2, 3, (0.82,)
        bases = [("random0", 0.80), ("random1", 0.90)]
        interval = (85.0 - T1 * 5.0, 85.0 + T1 * 5.0)  # seeds 80, 90 %: sd 5 sqrt 2, over sqrt 2
    expected = sum(per_seed) / len(per_seed)
    rows += [  # none of these may count
        base("random0", "B", 0.10, finished=False), base("random1", "B", math.nan), base("natman", "B", 0.99),
        base("all", "all", 0.99), base("randomX", "B", 0.99), base("random", "B", 0.99),
        base("random3", "B", 0.50, finished=False)]
    out = write_figures(read_results_csv(write_results_csv(rows, tmp_path / "results.csv")), tmp_path / "figs")
    bottom = {(r["group"], int(r["n"])): r for r in _csv(out["figure2_bottom_csv"])}
    point = bottom["baseB", 0]
    assert (float(point["mean"]), int(point["runs"]), int(point["seeds"])) == (
        pytest.approx(expected, abs=1e-9), runs, len(per_seed))
    assert (float(point["lo"]), float(point["hi"])) == pytest.approx(tuple(v / 100 for v in interval))
    assert baseline(rows) == (pytest.approx(expected, abs=1e-12), runs)
    table = _csv(out["table1_csv"])[0]
    assert int(table["base_runs"]) == runs
    assert float(table["over_baseB_pooled"]) == pytest.approx(100 * (sum(anb_plus) / len(anb_plus) - expected))
    seed_list, measures = findings(rows)
    assert len(seed_list) == seeds  # seed 3 has only an unfinished run: a column of n/a
    assert {m["key"]: m for m in measures}["base"]["mean"] == pytest.approx(100 * expected)
    line = next(x for x in out["findings_md"].read_text().splitlines() if "base nets of the target halves" in x)
    assert line.split(" | ")[-2] == f"{100 * expected:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"  # mean column
    # Figure 2 (top) draws exactly the baseline runs as baseB
    drawn = sorted((r["split"], float(r["score"])) for r in _csv(out["figure2_csv"]) if r["group"] == "baseB")
    assert drawn == bases and len(bases) == runs
