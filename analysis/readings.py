"""The findings and Table 1 read three ways: the score, and two readings that select nothing on the val set.

A run's score, the authors' figure of merit, is the mean of its 10 best
tests on the val set, which is also what it is scored on: a selection. Two
readings select nothing: `final`, the run's last test accuracy, and
`last10`, the mean of its last 10 tests (results columns `final_accuracy`
and `last10`). `rescored` puts a reading in the rows' score, so every measure
of analysis.findings and analysis.table1 is computed from it unchanged;
`reading_rows` gives, per verdicts.csv row of the random protocol, the
mean, interval and verdict under each reading, and `markdown` the results
page's table, which says where a verdict changes.
"""
from __future__ import annotations

import math

from kitcore.errors import KitError

READINGS = (("final", "final_accuracy", "final test"), ("last10", "last10", "mean of the last 10 tests"))


def rescored(rows: list[dict], column: str) -> list[dict]:
    """The rows with `column` as their score (nan where a row has none)."""
    out = []
    for row in rows:
        value = row.get(column)
        out.append({**row, "score": math.nan if value in (None, "") else float(value)})
    return out


def reading_rows(rows: list[dict]) -> dict[tuple, dict[str, dict]]:
    """(measure, protocol, k) -> reading name -> its verdicts.csv row, for the random protocol's measures."""
    from analysis.verdicts import verdict_rows  # noqa: PLC0415  (verdicts imports this module)
    out: dict[tuple, dict[str, dict]] = {}
    for name, column, _ in READINGS:
        try:
            judged = verdict_rows(rescored(rows, column))
        except KitError:  # rows without that reading (a results table of older runs): the columns stay blank
            continue
        for r in judged:
            if r["protocol"] == "random":
                out.setdefault((r["measure"], r["protocol"], r["k"]), {})[name] = r
    return out


def _cell(r: dict | None) -> str:
    if r is None or r["seeds"] == 0:
        return "n/a"
    mean, lo, hi = r["mean"], r["lo"], r["hi"]
    interval = "" if math.isnan(lo) else f" [{lo:+.2f}, {hi:+.2f}]"
    return f"{mean:+.2f}{interval} {r['verdict']}"


def markdown(score_rows: list[dict], readings: dict[tuple, dict[str, dict]]) -> list[str]:
    """The results page's table: each random-protocol measure under the score and each reading, and where the
    verdict changes."""
    labels = " | ".join(label for _, _, label in READINGS)
    out = [f"| measure | score (10 best tests) | {labels} | verdict changes |",
           "|---|---|" + "---|" * (len(READINGS) + 1)]
    changed = []
    for r in score_rows:
        if r["protocol"] != "random":
            continue
        other = readings.get((r["measure"], r["protocol"], r["k"]), {})
        moves = [label for name, _, label in READINGS if name in other and other[name]["verdict"] != r["verdict"]]
        if moves:
            changed.append(r["measure"])
        out.append(f"| {r['label']} | {_cell(r)} | " + " | ".join(_cell(other.get(name)) for name, _, _ in READINGS)
                   + f" | {', '.join(moves) or 'no'} |")
    summary = (f"The verdict changes for {len(changed)} of {len(out) - 2} measures: {', '.join(changed)}."
               if changed else "No verdict changes with the reading.")
    return out + ["", summary]
