"""docs/img/verdicts.csv: every measure the kit judges, one row per measure, protocol and k, with its interval.

Rows come from the modules that measure (analysis.findings: the findings,
the controls and Figure 3's controls; analysis.table1: Table 1's boosts;
analysis.small: each k of the small target), and their intervals and verdicts
from analysis.intervals. Columns (COLUMNS): the measure's key, the protocol
(random, natman, whole, small), k (blank but for the small target), the
number of units (seeds; Figure 3's: replicates of their one split), mean,
lo, hi (the 95% interval), the margin, the verdict, the paper's claim, the
label, and for an inconclusive verdict the units that would decide it at
the observed spread (`decide_at`). Controls (a) and (b) are rows too: (a)
held when the interval lies below PLATEAU_PP, (b) as a claim of no difference.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from analysis import intervals as iv
from analysis.findings import controls, findings
from analysis.readings import READINGS, reading_rows
from analysis.table1 import BOOSTS, table1
from kitcore.atomic import write_text

COLUMNS = ("measure", "protocol", "k", "seeds", "mean", "lo", "hi", "margin", "verdict", "claim", "label",
           "decide_at", *(f"{c}_{name}" for name, _, _ in READINGS for c in ("mean", "lo", "hi", "verdict")))


def _row(key: str, protocol: str, k, interval: iv.Interval, claim: str, label: str) -> dict:
    if claim.startswith("below"):
        word, need = iv.plateau_word(interval), None
    else:
        word = iv.verdict(interval, claim)
        need = iv.units_to_decide(interval, claim) if word == "inconclusive" else None
    return {"measure": key, "protocol": protocol, "k": "" if k is None else k, "seeds": interval.n,
            "mean": interval.mean, "lo": interval.lo, "hi": interval.hi, "margin": iv.MARGIN_PP, "verdict": word,
            "claim": claim, "label": label, "decide_at": "" if need is None else need}


def verdict_rows(rows: list[dict], small_ks: list[dict] | None = None) -> list[dict]:
    """The VERDICTS rows of a records' rows (and of analysis.small.per_k's rows, when given)."""
    out = []
    _, measures = findings(rows)
    for m in measures:
        if m["claim"]:
            protocol = "random" if m["finding"] else ("natman" if m["key"].startswith("natman") else "whole")
            out.append(_row(m["key"], protocol, None, m["interval"], m["claim"], m["label"]))
    _, cmeasures, _ = controls(rows)
    for m in cmeasures:
        if m["key"] in ("b1b", "b1bplus", "plateau_A", "plateau_B"):
            claim = m["claim"] or f"below {iv.PLATEAU_PP:g}"
            out.append(_row(m["key"], "random", None, m["interval"], claim, m["label"]))
    for t in table1(rows):
        for b in BOOSTS:
            if b.startswith("over_baseB2x") and not t[f"{b}_iv"].n:
                continue  # no baseB2x runs: nothing to say
            out.append(_row(f"table1_{b.removesuffix('_layer_means')}_{t['layers']}", "random", None, t[f"{b}_iv"],
                            "+", f"Table 1: AnB+ {b.split('_')[0]} {b.split('_')[1]}, layers {t['layers']} "
                                 "(layer means, pp)"))
    from analysis.small import CLAIMS, LABELS  # noqa: PLC0415  (small imports findings too)
    for r in small_ks or []:
        for key, claim in CLAIMS.items():
            out.append(_row(key, "small", r["k"], r[f"{key}_iv"], claim, LABELS[key] + " (pp)"))
        for key, claim, label in (("b1b", "0", "B1B - baseB (pp)"), ("b1bplus", "0", "B1B+ - baseB (pp)"),
                                  ("plateau_B", f"below {iv.PLATEAU_PP:g}", "baseB's last tests' climb (pp)")):
            out.append(_row(key, "small", r["k"], r[f"{key}_iv"], claim, label))
    return out


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else str(round(value, 6))
    return str(value)


def write_verdicts(rows: list[dict], path: Path, small_ks: list[dict] | None = None,
                   readings: dict | None = None) -> Path:
    """Write verdicts.csv (COLUMNS) of the rows; return its path. `readings`: reading_rows(rows), when the caller
    has it already."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows_out, readings = verdict_rows(rows, small_ks), reading_rows(rows) if readings is None else readings
    for r in rows_out:  # the random protocol's measures under the readings without selection (analysis.readings)
        other = readings.get((r["measure"], r["protocol"], r["k"]), {})
        r.update({f"{c}_{name}": other[name][c] if name in other else "" for name, _, _ in READINGS
                  for c in ("mean", "lo", "hi", "verdict")})
    writer.writerows([_cell(r[c]) for c in COLUMNS] for r in rows_out)
    return write_text(Path(path), text.getvalue())
