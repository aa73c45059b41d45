"""The run-to-run noise: how much one treatment's score moves between replicates, beside how much it moves
between seeds.

A replicate (`REPEAT=r`, run.json's `repeat`) trains the same treatment on the
same split with another Caffe random seed (the init of what is not copied,
dropout, mirroring), nothing else. Per split and treatment with at least two
replicates: their number, mean and sample sd (`run_sd`, percentage points of
top-1). Beside it, the seed-to-seed sd of the same treatment and protocol at
the same k (`seed_sd`): the sample sd over the seeds of their replicate-0
scores (the splits differ in their classes, so this spread holds both).
`write_noise` writes noise.csv (COLUMNS) and returns the Markdown table of
the results page.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from analysis.plots import write_numbers
from analysis.rules import scored
from kitcore.errors import KitError
from kitcore.layout import split_protocol

COLUMNS = ("protocol", "k", "split", "treatment", "replicates", "run_mean", "run_sd", "seeds", "seed_sd")


def _where(row: dict) -> tuple[str, int | None, int] | None:
    """(protocol, k, seed) of a row's split (None: a split name the table does not know)."""
    try:
        protocol, seed, k = split_protocol(str(row.get("split")))
    except KitError:
        return None
    return protocol, k, seed


def noise(rows: list[dict]) -> list[dict]:
    """One COLUMNS record per split and treatment with two or more scored replicates, sorted."""
    scores: dict[tuple, dict[int, float]] = {}
    for row in filter(scored, rows):
        where = _where(row)
        if where is not None:
            key = (*where, str(row.get("split")), str(row.get("treatment")))
            scores.setdefault(key, {})[int(row.get("repeat") or 0)] = float(row["score"]) * 100
    out = []
    for (protocol, k, _, split, treatment), by_r in sorted(scores.items(), key=lambda i: (i[0][0], i[0][1] or 0,
                                                                                          i[0][3], i[0][4])):
        if len(by_r) < 2:
            continue
        firsts = [v[0] for (p, kk, _, _, t), v in scores.items() if (p, kk, t) == (protocol, k, treatment) and 0 in v]
        out.append({"protocol": protocol, "k": "" if k is None else k, "split": split, "treatment": treatment,
                    "replicates": len(by_r), "run_mean": statistics.fmean(by_r.values()),
                    "run_sd": statistics.stdev(by_r.values()), "seeds": len(firsts),
                    "seed_sd": statistics.stdev(firsts) if len(firsts) > 1 else math.nan})
    return out


def markdown(table: list[dict]) -> list[str]:
    """The results page's table of the run-to-run and seed-to-seed sd."""
    out = ["| protocol | k | split | treatment | replicates | mean, % | run-to-run sd, pp | seeds "
           "| seed-to-seed sd, pp |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        seed_sd = "n/a" if math.isnan(r["seed_sd"]) else f"{r['seed_sd']:.2f}"
        out.append(f"| {r['protocol']} | {r['k']} | {r['split']} | {r['treatment']} | {r['replicates']} | "
                   f"{r['run_mean']:.2f} | {r['run_sd']:.2f} | {r['seeds']} | {seed_sd} |")
    return out


def write_noise(rows: list[dict], out_dir: Path) -> tuple[Path | None, list[str]]:
    """Write out_dir/noise.csv; return it and the Markdown table (None, [] when no run has replicates)."""
    table = noise(rows)
    if not table:
        return None, []
    return write_numbers(Path(out_dir) / "noise", COLUMNS, table), markdown(table)
