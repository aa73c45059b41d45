"""The paper's Table 1: the boost of AnB+ over baseB and over BnB+, by ranges of layers.

Rows, groups and the baseline are analysis.rules' (the ones Figure 2 and the
findings use): finished runs with a score on random A/B splits (`random<s>`),
pooled as in the paper (footnote 3): a fine-tuned transfer with source ==
target is BnB+, one with source != target AnB+; "baseB" is rules.baseline,
the base nets of the halves the transfers target (the FA-20 grid trains
transfers to B only, so its baseA is left out), averaged per split, then over
the splits. For each range of layers (1-7, 3-7, 5-7) the boost, in
percentage points, is computed two ways:

- pooled: the mean of all AnB+ runs with n in the range, minus the baseline
  (over baseB), or minus the mean of all BnB+ runs with n in the range (over
  BnB+);
- layer means: for each n in the range the mean AnB+ score, minus the
  baseline (over baseB) or minus that layer's mean BnB+ score (over BnB+),
  then the plain average over the layers that have both.

The two agree when every layer has the same number of runs. Each boost also
gets, from the layer means of each random split on its own, its mean and 95%
interval over the seeds and its verdict against the paper's claim (a positive
boost; analysis.intervals): `seed_boosts`, the columns `*_lo`, `*_hi` of the
CSV and the interval columns of the Markdown table.
"""
from __future__ import annotations

import math
from pathlib import Path

from analysis import intervals as iv
from analysis.rules import baseline, by_seed, mean, pooled_groups
from kitcore.atomic import write_text
from kitcore.errors import KitError

RANGES = ((1, 7), (3, 7), (5, 7))
BOOSTS = ("over_baseB_layer_means", "over_BnB+_layer_means", "over_baseB2x_layer_means")  # per seed, then over seeds
COLUMNS = ("layers", "AnB+_runs", "base_runs", "BnB+_runs", "over_baseB_pooled", "over_BnB+_pooled",
           "over_baseB_layer_means", "over_BnB+_layer_means", "seeds",
           *(f"{b.removesuffix('_layer_means')}_{end}" for b in BOOSTS for end in ("mean", "lo", "hi")))
PAPER = {"1-7": (1.6, 1.4), "3-7": (1.8, 1.4), "5-7": (2.1, 1.7)}  # the paper's over baseB / over BnB+


def table1(rows: list[dict]) -> list[dict]:
    """Table 1 (see the module doc) from results rows: one dict per range, boosts in percentage points, with
    each boost's Interval over the seeds (`<boost>_iv`, `seeds`, and the CSV's mean, lo, hi)."""
    table = _table(rows)
    per_seed = [_table(seed_rows) for seed_rows in by_seed(rows).values()
                if any(pooled_groups(seed_rows)["AnB+"].values())]
    for i, row in enumerate(table):
        row["seeds"] = len(per_seed)
        for b in BOOSTS:
            interval = iv.interval([t[i][b] for t in per_seed])
            row[f"{b}_iv"] = interval
            stem = b.removesuffix("_layer_means")
            row.update({f"{stem}_mean": interval.mean, f"{stem}_lo": interval.lo, f"{stem}_hi": interval.hi})
        row["seeds"] = row[f"{BOOSTS[0]}_iv"].n  # the seeds behind the range's interval
    return table


def _table(rows: list[dict]) -> list[dict]:
    """The boosts of the module doc from results rows (all their splits pooled)."""
    groups = pooled_groups(rows)
    base_mean, base_runs = baseline(rows)
    long_mean = mean(groups["base2x"].get(0, []))  # baseB2x (nan without it): a base trained as long
    if not any(groups["AnB+"].values()):
        raise KitError("no finished AnB+ runs on a random split in this table",
                       "train some fine-tuned transfers first, e.g. make train TREATMENT=A3B+")
    out = []
    for lo, hi in RANGES:
        layers = range(lo, hi + 1)
        anb = {n: groups["AnB+"].get(n, []) for n in layers}
        bnb = {n: groups["BnB+"].get(n, []) for n in layers}
        all_anb = [v for vs in anb.values() for v in vs]
        all_bnb = [v for vs in bnb.values() for v in vs]
        per_base = [mean(anb[n]) - base_mean for n in layers if anb[n]]
        per_self = [mean(anb[n]) - mean(bnb[n]) for n in layers if anb[n] and bnb[n]]
        per_long = [mean(anb[n]) - long_mean for n in layers if anb[n]]
        out.append({"layers": f"{lo}-{hi}", "AnB+_runs": len(all_anb), "base_runs": base_runs,
                    "BnB+_runs": len(all_bnb),
                    "over_baseB_pooled": 100 * (mean(all_anb) - base_mean),
                    "over_BnB+_pooled": 100 * (mean(all_anb) - mean(all_bnb)),
                    "over_baseB_layer_means": 100 * mean(per_base),
                    "over_BnB+_layer_means": 100 * mean(per_self),
                    "over_baseB2x_layer_means": 100 * mean(per_long)})
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:+.2f}"
    return str(value)


def to_markdown(table: list[dict], title: str = "Table 1") -> str:
    """The table as Markdown, with the paper's numbers beside for comparison."""
    head = ["layers", "AnB+ runs", "over baseB (pooled)", "over BnB+ (pooled)", "over baseB (layer means)",
            "over BnB+ (layer means)", "over baseB: seeds' mean [95% interval], verdict",
            "over BnB+: seeds' mean [95% interval], verdict", "over baseB2x (trained as long): seeds' mean [95% "
            "interval], verdict", "paper: over baseB / BnB+"]
    lines = [f"**{title}**: mean boost of AnB+ in percentage points", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        paper = PAPER.get(row["layers"])
        judged = [f"{row[b + '_iv'].text()}, {iv.verdict_text(row[b + '_iv'], '+')}" if row[b + "_iv"].n
                  else "n/a (no runs)" for b in BOOSTS]
        cells = [row["layers"], row["AnB+_runs"], row["over_baseB_pooled"], row["over_BnB+_pooled"],
                 row["over_baseB_layer_means"], row["over_BnB+_layer_means"], *judged,
                 f"{paper[0]} / {paper[1]}" if paper else ""]
        lines.append("| " + " | ".join(map(_fmt, cells)) + " |")
    seeds = table[0]["seeds"] if table else 0
    return "\n".join(lines + ["", f"Pooled and layer means: every run of every seed together; the intervals: "
                                  f"the layer means of each of the {seeds} seeds on its own ({iv.METHOD})."]) + "\n"


def to_csv(table: list[dict]) -> str:
    """The table as CSV text (9 decimals, float noise removed; empty cells for n/a)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else str(round(value, 9))
        return str(value)
    lines = [",".join(COLUMNS)] + [",".join(cell(row[k]) for k in COLUMNS) for row in table]
    return "\n".join(lines) + "\n"


def write_table1(rows: list[dict], out_stem: Path, title: str = "Table 1") -> list[Path]:
    """Write out_stem.md and out_stem.csv from results rows; return their paths."""
    table = table1(rows)
    out_stem = Path(out_stem)
    md = write_text(out_stem.with_name(out_stem.name + ".md"), to_markdown(table, title))
    return [md, write_text(out_stem.with_name(out_stem.name + ".csv"), to_csv(table))]
