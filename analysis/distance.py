"""Task distance as a curve: the frozen transfer's gap and the fine-tuned boost against m, the classes mixed.

A split `mix<s>m<m>` (kitcore.layout; data_prep.splits.mixed_split) holds
natman's halves with m classes swapped between them: m = 0 is natman (A
natural, B man-made: dissimilar tasks), the largest m makes A half and half.
Its grid is baseA, baseB, AnB and AnB+ for n = 1..7. Per (m, seed), from the
split's rows (finished, scored; a run's replicates averaged first), in
percentage points against baseB:

- `gap<n>`: AnB - baseB at n = 1..7 (the frozen transfer's gap, the paper's
  Figure 3 measure of task distance);
- `boost`: AnB+ - baseB, the mean over n = 1..7 (Table 1's boost).
The random splits' AnB - baseB per seed (rows `m` = `random`) are the similar
tasks' curve, drawn beside. Per m (and for the random splits) a `mean` row
holds the means over seeds and the 95% intervals of gap5..7 and the boost
(analysis.intervals). `summary` reads the CSV alone: where the gap at n = 7
crosses halfway between natman's (m = 0) and the random splits', and whether
the boost depends on m: each seed's least-squares change of the boost from
the fewest to the most m (a seed without every m left out, and named), its
interval over seeds and its verdict against no dependence (a "0" claim:
within the margin). `write_distance_records`
draws the grids published under `<records>/mix/` (MIX_RECORDS), beside the
full protocol's records, whose random splits give the reference.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from analysis import intervals as iv
from analysis.records import check_pooled, record_dirs, record_rows
from analysis.rules import scored
from kitcore.builds import classes
from kitcore.errors import KitError
from kitcore.layout import split_mix, split_protocol

MIX_RECORDS = "mix"  # <records>/mix/<split>/<treatment>/: the mixed splits' run records
NS = range(1, 8)
BOUNDS = ("gap5", "gap6", "gap7", "boost")  # drawn with their 95% intervals against m
COLUMNS = ("m", "share", "seed", "split", "runs", *(f"gap{n}" for n in NS), "boost",
           *(f"{b}_{end}" for b in BOUNDS for end in ("lo", "hi")))
RANDOM = "random"  # the `m` of the random splits' rows


def _unit(row: dict) -> tuple[str, int] | None:
    """(level, seed) of a row: (m, seed) of a mixed split, ('random', seed) of a random one, else None."""
    try:
        protocol, seed, _ = split_protocol(str(row.get("split")))
    except KitError:
        return None
    if protocol == "mix":
        return str(split_mix(str(row["split"]))), seed
    return (RANDOM, seed) if protocol == RANDOM else None


def _measures(rows: list[dict]) -> dict[str, float]:
    """gap1..7 and boost (pp) of one split's rows (replicates averaged first); nan where a run is missing."""
    runs: dict[str, list[float]] = {}
    for r in rows:
        if scored(r) and int(r.get("budget") or 1) == 1:  # baseB2x (extra/ records) is not the base
            kind = "base" if r.get("kind") == "base" else f"A{int(r['n'])}B{'+' * bool(r.get('finetuned'))}"
            if r.get("target") == "B" and (kind == "base" or r.get("source") == "A"):
                runs.setdefault(kind, []).append(100 * float(r["score"]))
    mean = {k: float(np.mean(v)) for k, v in runs.items()}
    base = mean.get("base", math.nan)
    out = {f"gap{n}": mean.get(f"A{n}B", math.nan) - base for n in NS}
    boosts = [mean.get(f"A{n}B+", math.nan) - base for n in NS]
    out["boost"] = float(np.mean(boosts)) if not any(map(math.isnan, boosts)) else math.nan
    return out


def points(rows: list[dict], shares: dict[str, float] | None = None) -> list[dict]:
    """One COLUMNS record per (m, seed) of the mixed splits' rows and per random seed, then a `mean` row per
    level with the BOUNDS' intervals; `shares`: split -> A's share from group 2 (split.json's `mix`)."""
    by: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        if (key := _unit(row)) is not None:
            by.setdefault(key, []).append(row)
    order = sorted({lv for lv, _ in by}, key=lambda lv: (lv == RANDOM, int(lv) if lv != RANDOM else 0))
    out = []
    for level in order:
        seeds = sorted(s for lv, s in by if lv == level)
        at = [{"m": level, "share": (shares or {}).get(by[(level, s)][0]["split"], ""), "seed": s,
               "split": by[(level, s)][0]["split"], "runs": sum(map(scored, by[(level, s)])),
               **_measures(by[(level, s)])} for s in seeds]
        mean = {"m": level, "share": at[0]["share"], "seed": "mean", "split": "", "runs": sum(p["runs"] for p in at)}
        for key in [f"gap{n}" for n in NS] + ["boost"]:
            interval = iv.interval([p[key] for p in at])
            mean[key] = interval.mean
            if key in BOUNDS:
                mean[f"{key}_lo"], mean[f"{key}_hi"] = interval.lo, interval.hi
        out += at + [mean]
    return out


def _num(value) -> float:
    return math.nan if value in (None, "") else float(value)


def _crossing(levels: list[tuple[float, float, float]], half: float) -> tuple[float, float] | None:
    """(m, share) where the line through (m, share, gap) first crosses `half` from its value at the first m."""
    for (m0, s0, g0), (m1, s1, g1) in zip(levels, levels[1:]):
        if (g0 - half) * (g1 - half) <= 0 and g1 != g0:
            t = (half - g0) / (g1 - g0)
            return m0 + t * (m1 - m0), s0 + t * (s1 - s0)
    return None


def summary(records: list[dict]) -> str:
    """What the figure shows, from its CSV records: where the gap at n = 7 crosses halfway between natman's
    (m = 0) and the random splits', and whether the fine-tuned boost depends on m."""
    means = {r["m"]: r for r in records if r["seed"] == "mean"}
    mixed = sorted((int(m), _num(r["share"]), _num(r["gap7"])) for m, r in means.items() if m != RANDOM)
    if not mixed:
        return ""
    parts = []
    if "0" in means and RANDOM in means:
        natman, similar = _num(means["0"]["gap7"]), _num(means[RANDOM]["gap7"])
        half = (natman + similar) / 2
        where = _crossing(mixed, half)
        start = (f"The frozen transfer's gap at n = 7 (A7B - baseB) is {natman:+.2f} pp on natman's halves (m = 0) "
                 f"and {similar:+.2f} pp on the random splits; ")
        if where is None:
            parts.append(start + f"it does not cross halfway ({half:+.2f} pp) up to m = {mixed[-1][0]} "
                         f"({mixed[-1][2]:+.2f} pp there).")
        else:
            share = "" if math.isnan(where[1]) else f", {100 * where[1]:.0f}% of A's classes from group 2"
            parts.append(start + f"it crosses halfway ({half:+.2f} pp) at m = {where[0]:.1f}{share} (the means, "
                         "joined by straight lines).")
    else:
        parts.append("No halfway point: it needs the m = 0 grids and the random splits' records.")
    changes, partial, levels = [], [], {m for m, _, _ in mixed}
    for seed in sorted({r["seed"] for r in records if r["seed"] != "mean" and r["m"] != RANDOM}, key=int):
        pts = [(int(r["m"]), _num(r["boost"])) for r in records if r["seed"] == seed and r["m"] != RANDOM
               and not math.isnan(_num(r["boost"]))]
        if {m for m, _ in pts} != levels:  # a seed's change spans every m, or it is left out
            partial.append(seed)
        elif len(pts) >= 2:
            ms, bs = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts])
            changes.append(float(np.polyfit(ms, bs, 1)[0]) * (ms.max() - ms.min()))
    left_out = (f"; seed{'s' * (len(partial) > 1)} {', '.join(partial)} left out, not at every m yet"
                if partial else "")
    if changes:
        interval = iv.interval(changes)
        word = iv.verdict_text(interval, "0")
        boost = "the fine-tuned boost (AnB+ - baseB, mean over n = 1..7)"
        reading = {"shown": f"{boost} does not depend on m", "opposite": f"{boost} depends on m"}.get(
            word, f"whether {boost} depends on m is {word}")
        parts.append(f"{reading[0].upper()}{reading[1:]}: its change from "
                     f"m = {mixed[0][0]} to m = {mixed[-1][0]}, each seed's straight-line fit, is "
                     f"{interval.text()} pp over {interval.n} seed{'s' * (interval.n != 1)} (within "
                     f"±{iv.MARGIN_PP:g} pp is no dependence{left_out}).")
    return " ".join(parts)


def _errorbar(ax, xs, means: list[dict], key: str, colour: str, label: str, marker: str = "o") -> None:
    lo = [0 if math.isnan(r[f"{key}_lo"]) else r[key] - r[f"{key}_lo"] for r in means]
    hi = [0 if math.isnan(r[f"{key}_hi"]) else r[f"{key}_hi"] - r[key] for r in means]
    ax.errorbar(xs, [r[key] for r in means], yerr=[lo, hi], color=colour, marker=marker, capsize=3, linewidth=1.2,
                label=label, zorder=4)


def write_distance(rows: list[dict], out_dir: Path, shares: dict[str, float] | None = None) -> dict:
    """Draw the task-distance figure (distance.png, .pdf) and write what it draws (distance.csv) into out_dir;
    return {name: path} and the summary line."""
    pts = points(rows, shares)
    means = [p for p in pts if p["seed"] == "mean" and p["m"] != RANDOM]
    if not means:
        raise KitError("no runs on a mixed split (mix<seed>m<m>)",
                       "make split-mix SEED=s MIX=m, then make grid PROTOCOL=mix SEED=s MIX=m")
    from matplotlib import colormaps  # noqa: PLC0415  (slow to import: only when drawing)
    from matplotlib.figure import Figure  # noqa: PLC0415
    fig = Figure(figsize=(11, 4.6))
    left, right = fig.subplots(1, 2)
    colours = colormaps["plasma"](np.linspace(0.05, 0.8, len(means)))
    for r, colour in zip(means, colours):
        share = f" ({100 * float(r['share']):.0f}%)" if r["share"] != "" else ""
        left.plot(list(NS), [r[f"gap{n}"] for n in NS], color=colour, marker="o", markersize=4,
                  label=f"m = {r['m']}{share}" + (" natman" if r["m"] == "0" else ""))
    similar = [p for p in pts if p["seed"] == "mean" and p["m"] == RANDOM]
    if similar:
        left.plot(list(NS), [similar[0][f"gap{n}"] for n in NS], color="black", linestyle="--", marker="D",
                  markersize=4, label="random splits (similar)")
    left.set_xlabel("Layer n at which the net is chopped and frozen (AnB)")
    left.set_title("Frozen transfer: AnB - baseB, one line per m (means over seeds)", fontsize=10)
    xs = [int(r["m"]) for r in means]
    for key, colour, label in (("gap5", "tab:blue", "A5B - baseB"), ("gap6", "tab:green", "A6B - baseB"),
                               ("gap7", "tab:orange", "A7B - baseB"),
                               ("boost", "tab:red", "AnB+ - baseB (mean over n = 1..7)")):
        _errorbar(right, xs, means, key, colour, label)
    right.set_xticks(xs, [f"{m}\n({100 * float(r['share']):.0f}%)" if r["share"] != "" else str(m)
                          for m, r in zip(xs, means)], fontsize=8)
    right.set_xlabel("m: classes swapped between natman's halves\n(in brackets: the share of A from group 2)")
    right.set_title("Against m: the gap at n = 5, 6, 7 and the fine-tuned boost", fontsize=10)
    for ax in (left, right):
        ax.axhline(0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_ylabel("Percentage points")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7.5, frameon=False)
    datasets = ", ".join(sorted({str(r.get("dataset")) for r in rows if _unit(r) is not None}))
    fig.suptitle(f"{datasets}: task distance as a curve (natman's halves with m classes swapped)", fontsize=11)
    fig.text(0.01, 0.005, "Lines: means over seeds; bars: 95% t-intervals over seeds; the numbers: distance.csv.",
             fontsize=7, color="dimgrey", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    from analysis.plots import save_both, write_numbers  # noqa: PLC0415  (matplotlib)
    out_dir = Path(out_dir)
    csv_path = write_numbers(out_dir / "distance", COLUMNS, pts)
    with open(csv_path, newline="", encoding="utf-8") as f:
        line = summary(list(csv.DictReader(f)))  # the sentence is read from the CSV, as it is published
    png, pdf = save_both(fig, out_dir / "distance", line)
    return {"distance_png": png, "distance_pdf": pdf, "distance_csv": csv_path, "line": line}


def write_distance_records(records: Path, full_rows: list[dict], out_dir: Path,
                           allow_mixed: bool = False) -> tuple[dict, list[dict]]:
    """write_distance over the grids published under <records>/mix and the full records' random splits; return
    its outputs and the mixed splits' rows ({}, [] when there are none). allow_mixed: as make plots MIXED=1."""
    mixed = Path(records) / MIX_RECORDS
    if not record_dirs(mixed):
        return {}, []
    rows = record_rows(mixed, allow_mixed)
    check_pooled(rows + full_rows, allow_mixed, joined=classes(records))  # one build and protocol beside the random
    shares = {p.parent.name: json.loads(p.read_text()).get("mix", {}).get("share", "")
              for p in sorted(mixed.glob("*/split.json"))}
    return write_distance(rows + full_rows, out_dir, shares), rows
