"""The paper's five findings, measured per seed from a results table with known scores."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from analysis.findings import findings, to_markdown, verdicts
from analysis.results import write_results_csv
from conftest import ROOT


def _row(split, kind, score, source=None, target="B", n=0, finetuned=False):
    return {"dataset": "fa20", "split": split, "treatment": "x", "kind": kind, "source": source, "target": target,
            "n": n, "finetuned": finetuned, "score": score, "finished": True}


def _seed(split: str, shift: float) -> list[dict]:
    """baseA 0.80 (no transfer targets A: not the baseline) and baseB 0.82; BnB dips to 0.75 at n=4; AnB 0.81 at n=1-2, 0.70 at n=7; BnB+ 0.82; AnB+ 0.83 (+ shift)."""
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


def test_findings_command(tmp_path):
    csv = write_results_csv(_seed("random3", 0.0), tmp_path / "r.csv")
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "findings", str(csv)], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| seed 3 | mean | sd |" in proc.stdout and "| 5 | AnB+ vs base" in proc.stdout
