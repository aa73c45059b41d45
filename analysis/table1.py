"""The paper's Table 1: the boost of AnB+ over baseB and over BnB+, by ranges of layers.

Rows used: finished runs with a score on a random A/B split (`random<s>`),
pooled as in the paper (footnote 3): every base net of a half that some
transfer targets counts as baseB (a half no transfer trains on is no
baseline: the FA-20 grid trains transfers to B only, so its baseA is left
out, which matters when the halves differ in difficulty), a
fine-tuned transfer with source == target as BnB+, one with source != target
as AnB+. For each range of layers (1-7, 3-7, 5-7) the boost, in percentage
points, is computed two ways:

- pooled: the mean of all AnB+ runs with n in the range, minus the mean of all
  base runs (over baseB), or minus the mean of all BnB+ runs with n in the
  range (over BnB+);
- layer means: for each n in the range the mean AnB+ score, minus the base
  mean (over baseB) or minus that layer's mean BnB+ score (over BnB+), then
  the plain average over the layers that have both.

The two agree when every layer has the same number of runs.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from kitcore.atomic import write_text
from kitcore.errors import KitError

GROUPS = ("base", "BnB", "BnB+", "AnB", "AnB+")
RANGES = ((1, 7), (3, 7), (5, 7))
COLUMNS = ("layers", "AnB+_runs", "base_runs", "BnB+_runs", "over_baseB_pooled", "over_BnB+_pooled",
           "over_baseB_layer_means", "over_BnB+_layer_means")
PAPER = {"1-7": (1.6, 1.4), "3-7": (1.8, 1.4), "5-7": (2.1, 1.7)}  # the paper's over baseB / over BnB+
_RANDOM_SPLIT = re.compile(r"random\d+")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def usable(row: dict) -> bool:
    """Whether a results row is a finished run with a score on a random A/B split."""
    value = row.get("score")
    return (bool(_RANDOM_SPLIT.fullmatch(str(row.get("split") or ""))) and row.get("finished", True) is not False
            and value is not None and not math.isnan(float(value)))


def group_of(row: dict, targets: set | frozenset = frozenset()) -> str | None:
    """The paper group of a results row: base, BnB, BnB+, AnB or AnB+ (footnote 3's pooling); None for any
    other kind, and for the base net of a half outside `targets` (the halves some transfer trains on; empty:
    every half)."""
    if row.get("kind") == "base":
        return "base" if not targets or row.get("target") in targets else None
    if row.get("kind") != "transfer":
        return None
    return ("BnB" if row.get("source") == row.get("target") else "AnB") + ("+" if row.get("finetuned") else "")


def grouped(rows: list[dict]) -> list[tuple[str, int, dict]]:
    """(group, n, row) of every usable row in a paper group, in the rows' order; n is 0 for a base net.

    The one rule of Figure 2, Table 1 and the findings: the base of a half that no transfer targets is
    not the baseline of any (the FA-20 grid trains transfers to B only: a harder half A would otherwise
    pull "base" down); with no transfers at all, every base counts."""
    rows = list(filter(usable, rows))
    targets = {row.get("target") for row in rows if row.get("kind") == "transfer"}
    out = []
    for row in rows:
        group = group_of(row, targets)
        if group is not None:
            out.append((group, 0 if group == "base" else int(row["n"]), row))
    return out


def pooled_groups(rows: list[dict]) -> dict[str, dict[int, list[float]]]:
    """Scores of the usable rows by paper group (base, BnB, BnB+, AnB, AnB+) and layer n (see grouped)."""
    groups: dict[str, dict[int, list[float]]] = {g: {} for g in GROUPS}
    for group, n, row in grouped(rows):
        groups[group].setdefault(n, []).append(float(row["score"]))
    return groups


def baseline(rows: list[dict]) -> tuple[float, int]:
    """(mean score, number) of the base runs Table 1 compares with (nan, 0 when there are none)."""
    base = [v for vs in pooled_groups(rows)["base"].values() for v in vs]
    return _mean(base), len(base)


def table1(rows: list[dict]) -> list[dict]:
    """Table 1 (see the module doc) from results rows: one dict per range, boosts in percentage points."""
    groups = pooled_groups(rows)
    base_mean, base_runs = baseline(rows)
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
        per_base = [_mean(anb[n]) - base_mean for n in layers if anb[n]]
        per_self = [_mean(anb[n]) - _mean(bnb[n]) for n in layers if anb[n] and bnb[n]]
        out.append({"layers": f"{lo}-{hi}", "AnB+_runs": len(all_anb), "base_runs": base_runs,
                    "BnB+_runs": len(all_bnb),
                    "over_baseB_pooled": 100 * (_mean(all_anb) - base_mean),
                    "over_BnB+_pooled": 100 * (_mean(all_anb) - _mean(all_bnb)),
                    "over_baseB_layer_means": 100 * _mean(per_base),
                    "over_BnB+_layer_means": 100 * _mean(per_self)})
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:+.2f}"
    return str(value)


def to_markdown(table: list[dict], title: str = "Table 1") -> str:
    """The table as Markdown, with the paper's numbers beside for comparison."""
    head = ["layers", "AnB+ runs", "over baseB (pooled)", "over BnB+ (pooled)", "over baseB (layer means)",
            "over BnB+ (layer means)", "paper: over baseB / BnB+"]
    lines = [f"**{title}**: mean boost of AnB+ in percentage points", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        paper = PAPER.get(row["layers"])
        cells = [row["layers"], row["AnB+_runs"], row["over_baseB_pooled"], row["over_BnB+_pooled"],
                 row["over_baseB_layer_means"], row["over_BnB+_layer_means"],
                 f"{paper[0]} / {paper[1]}" if paper else ""]
        lines.append("| " + " | ".join(map(_fmt, cells)) + " |")
    return "\n".join(lines) + "\n"


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
