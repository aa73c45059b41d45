"""The paper's five findings, measured per seed from a results table with known scores."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from analysis.findings import findings, to_markdown
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


def test_findings_command(tmp_path):
    csv = write_results_csv(_seed("random3", 0.0), tmp_path / "r.csv")
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "findings", str(csv)], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| seed 3 | mean | sd |" in proc.stdout and "| 5 | AnB+ vs base" in proc.stdout
