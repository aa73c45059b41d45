"""Table 1 from a results table: the pooled and layer-mean boosts of AnB+ computed by hand, and each boost's 95%
interval over the seeds (analysis.table1, analysis.intervals)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_analysis_figures import T1, _table1_rows

from analysis.results import read_results_csv, write_results_csv
from analysis.table1 import table1, to_markdown
from kitcore.errors import KitError
from runner.cli import main


def test_table1_against_hand_computation(tmp_path: Path, capsys):
    # by hand: the baseline is the mean over seeds of each seed's base mean: seed 0's transfers target A and B
    # (0.60, 0.62: 0.61), seed 1's B (0.64): 0.625 from 3 runs (pooled over runs it would be 0.62);
    # AnB+ 1:.63,.65 3:.66 5:.70; BnB+ 1:.61 3:.62,.60 5:.65
    expected = {  # layers: (runs, over base pooled, over BnB+ pooled, over base layer means, over BnB+ layer means)
        "1-7": (4, 3.5, 4.0, (1.5 + 3.5 + 7.5) / 3, (3 + 5 + 5) / 3),
        "3-7": (2, 5.5, 100 * (0.68 - (0.62 + 0.60 + 0.65) / 3), 5.5, 5.0),
        "5-7": (1, 7.5, 5.0, 7.5, 5.0),
    }
    path = write_results_csv(_table1_rows(), tmp_path / "t.csv")
    table = table1(read_results_csv(path))
    for row in table:
        runs, *values = expected[row["layers"]]
        got = [row[k] for k in ("over_baseB_pooled", "over_BnB+_pooled", "over_baseB_layer_means",
                                "over_BnB+_layer_means")]
        assert row["AnB+_runs"] == runs and row["base_runs"] == 3
        assert got == pytest.approx(values, abs=1e-9), row["layers"]
    assert [r["layers"] for r in table] == ["1-7", "3-7", "5-7"]
    # per seed, on its own baseline: seed 0 (0.61) AnB+ 1:.64 5:.70, BnB+ 1:.61 3:.62 5:.65; seed 1 (0.64) AnB+ 3:.66,
    # BnB+ 3:.60. Over baseB 1-7: seed 0 (3 + 9) / 2 = 6, seed 1 2; over BnB+ 1-7: (3 + 5) / 2 = 4 and 6;
    # 3-7: 9 and 2, 5 and 6; 5-7: seed 0 alone (9, 5). Intervals: mean +- t(0.975, 1) * |a - b| / 2
    seeds = {"1-7": ((6, 2), (4, 6)), "3-7": ((9, 2), (5, 6)), "5-7": ((9,), (5,))}
    for row, boost in ((row, boost) for row in table for boost in ("over_baseB", "over_BnB+")):
        values, m = seeds[row["layers"]][boost != "over_baseB"], row[f"{boost}_mean"]
        half = T1 * abs(values[0] - values[-1]) / 2 if len(values) == 2 else math.nan
        assert (row["seeds"], row[f"{boost}_layer_means_iv"].n, m) == (len(values), len(values),
                                                                        pytest.approx(np.mean(values)))
        assert (row[f"{boost}_lo"], row[f"{boost}_hi"]) == pytest.approx((m - half, m + half), nan_ok=True)
    text = to_markdown(table)
    # 1-7 over baseB: mean 4, sd 2 sqrt 2: its lower end passes 0 at t(n - 1) / sqrt(n) < sqrt 2: t(4) / sqrt 5
    # = 1.24 (t(3) / 2 = 1.59): 5 seeds; over BnB+ (mean 5, sd sqrt 2): t(2) / sqrt 3 = 2.48 < 3.54: 3 seeds
    assert ("| 1-7 | 4 | +3.50 | +4.00 | +4.17 | +4.33 | +4.00 [-21.41, +29.41], inconclusive (about 5 seeds would "
            "decide it at this spread) | +5.00 [-7.71, +17.71], inconclusive (about 3 seeds would decide it at this "
            "spread) | n/a (no runs) | 1.6 / 1.4 |") in text
    assert "| 5-7 | 1 | +7.50 | +5.00 | +7.50 | +5.00 | +9.00, inconclusive (1 seed: no interval) |" in text
    assert main(["table1", str(path), "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("layers,AnB+_runs") and lines[0].endswith(
        ",seeds,over_baseB_mean,over_baseB_lo,over_baseB_hi,over_BnB+_mean,over_BnB+_lo,over_BnB+_hi,"
        "over_baseB2x_mean,over_baseB2x_lo,over_baseB2x_hi")
    assert lines[1].endswith(",2,4.0,-21.412409472,29.412409472,5.0,-7.706204736,17.706204736,,,")
    assert lines[3].startswith("5-7,1,3,1,7.5") and lines[3].endswith(",1,9.0,,,5.0,,,,,")


def test_table1_over_a_base_trained_as_long():
    """baseB2x (budget 2) is never the baseline: Table 1 reads AnB+ over it in a column of its own."""
    rows = _table1_rows() + [{**r, "treatment": "baseB2x", "budget": 2, "score": 0.60} for r in _table1_rows()
                             if r["kind"] == "base" and r["target"] == "B" and r["split"] in ("random0", "random1")]
    table, plain = table1(rows), table1(_table1_rows())
    assert [t["over_baseB_layer_means"] for t in table] == pytest.approx([t["over_baseB_layer_means"] for t in plain])
    # AnB+ pooled by layer: 1: (.63 + .65) / 2, 3: .66, 5: .70, each minus .60 -> 4, 6, 10 pp
    assert table[0]["over_baseB2x_layer_means"] == pytest.approx(20 / 3)
    # per seed: seed 0 (layers 1, 5) 7, seed 1 (layer 3) 6
    got = table[0]["over_baseB2x_layer_means_iv"]
    assert (got.n, got.mean) == (2, pytest.approx(6.5)) and table[2]["over_baseB2x_layer_means_iv"].n == 1


def test_table1_needs_anb_plus():
    with pytest.raises(KitError, match="no finished AnB\\+ runs"):
        table1([r for r in _table1_rows() if not (r["finetuned"] and r["source"] != r["target"])])
