"""Where transfer pays: the transfer grid on a small target, against k, the target's train images per class.

A split `small<s>k<k>` (kitcore.layout) holds random<s>'s halves with B's
train set cut to its first k images per class; its grid is Figure 2's (baseA
on all of A; baseB, BnB, BnB+, AnB, AnB+ on B's k images). Each such split is
one (seed, k) point; the full protocol's random<s> splits, when given, are the
points at the k of B uncut (split.json's `uncut_per_class`, most images of a
class). Per point, in percentage points, from the split's mean scores per
treatment and layer (analysis.findings' measures, base = baseB):

- `over_base`: AnB+ - baseB, mean over n = 1..7 (Table 1's boost over baseB);
- `over_self`: AnB+ - BnB+, the mean over n = 1..7 of each layer's difference
  (Table 1's boost over BnB+, layer means);
- `dip`: the lowest BnB - baseB over n = 2..6 (co-adaptation), at `dip_n`;
- `anb7`: AnB - baseB at n = 7 (the drop of frozen transferred features);
- the controls of analysis.findings: `plateau_B` (and `plateau_A`) of the
  base nets, `b1b` and `b1bplus` against baseB, `after_step`.
Per k: the mean and sample sd over its seeds, and verdicts read as the
findings' are: a mean beyond +-TOLERANCE_PP shows a boost, a dip, a drop; the
controls hold at k when they hold on every seed (b: within CONTROL_PP of
baseB, or within the sd of baseB over the seeds at that k, if larger).
`write_small` draws the figure (small.png, .pdf), writes what it draws
(small.csv: one row per point) and the findings' section (small.md);
`write_small_records` does it for the grids published under
`<records>/small/` (SMALL_RECORDS), beside the full protocol's records whose
random splits are the points at the full k. Their rows must come from the full
records' Caffe build, and the runs on B of one k from one protocol (the
iterations per k of solvers/small_iters.toml make each k's its own).
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from analysis.findings import CONTROL_PP, PLATEAU_PP, TOLERANCE_PP, seed_controls, split_measures
from analysis.records import record_dirs, record_rows
from analysis.rules import group_of, scored
from kitcore.atomic import write_text
from kitcore.caffe_log import SCORE_TOP
from kitcore.errors import KitError
from kitcore.layout import split_protocol

SMALL_RECORDS = "small"  # <records>/small/<split>/<treatment>/: the small-target grids' run records
MEASURES = ("over_base", "over_self", "dip", "dip_n", "anb7", "baseB", "plateau_B", "plateau_A", "b1b", "b1bplus",
            "after_step", "run_seconds")  # run_seconds: the sum of the split's run wall times (what its grid costs)
COLUMNS = ("k", "seed", "split", "runs", *MEASURES)
LABELS = {"over_base": "AnB+ - baseB (mean over n = 1..7)", "over_self": "AnB+ - BnB+ (mean over n = 1..7)",
          "dip": "lowest BnB - baseB over n = 2..6", "anb7": "A7B - baseB"}


def point_of(row: dict, full_k: int | None = None) -> tuple[int, int] | None:
    """(seed, k) of a row of a small split, or of a random split's row at `full_k`; None for any other."""
    try:
        protocol, seed, k = split_protocol(str(row.get("split")))
    except KitError:
        return None
    if protocol == "small":
        return seed, int(k)
    return (seed, full_k) if protocol == "random" and full_k else None


def full_k(split_jsons: list[Path]) -> int | None:
    """The k of a target half uncut: the most train images of a class of B, from the small splits' split.json."""
    ks = {max(json.loads(Path(p).read_text()).get("uncut_per_class", {}).get("B", [0])) for p in split_jsons}
    ks.discard(0)
    if len(ks) > 1:
        raise KitError(f"the small splits' B halves hold different numbers of images per class uncut: {sorted(ks)}",
                       "publish the small grids of one dataset build into one records folder")
    return ks.pop() if ks else None


def _point(rows: list[dict]) -> dict:
    """Every measure of one (seed, k) split's rows."""
    good = [r for r in rows if scored(r)]
    groups: dict[str, dict[int, list[float]]] = {g: {} for g in ("base", "BnB", "BnB+", "AnB", "AnB+")}
    for row in good:
        if (group := group_of(row, {"B"})) is not None:
            groups[group].setdefault(0 if group == "base" else int(row["n"]), []).append(float(row["score"]))
    m = split_measures(groups)
    pairs = [(statistics.fmean(groups["AnB+"][n]) - statistics.fmean(groups["BnB+"][n])) * 100
             for n in range(1, 8) if groups["AnB+"].get(n) and groups["BnB+"].get(n)]
    c = seed_controls(good, keep=scored)
    seconds = [float(r["wall_seconds"]) for r in rows if r.get("wall_seconds") not in (None, "")]
    return {"over_base": m["anbplus"], "over_self": statistics.fmean(pairs) if pairs else math.nan,
            "dip": m["dip"], "dip_n": m["dip_n"], "anb7": m["anb7"], **c,
            "run_seconds": sum(seconds) if seconds else math.nan}


def points(rows: list[dict], k_full: int | None = None) -> list[dict]:
    """One COLUMNS record per (seed, k) the rows have, sorted by k then seed."""
    by: dict[tuple[int, int], list[dict]] = {}
    for row in rows:
        if (key := point_of(row, k_full)) is not None:
            by.setdefault(key, []).append(row)
    return [{"k": k, "seed": s, "split": by[(s, k)][0]["split"], "runs": sum(map(scored, by[(s, k)])),
             **_point(by[(s, k)])} for s, k in sorted(by, key=lambda key: (key[1], key[0]))]


def _stats(values: list[float]) -> tuple[float, float]:
    present = [v for v in values if not math.isnan(v)]
    mean = statistics.fmean(present) if present else math.nan
    return mean, statistics.stdev(present) if len(present) > 1 else math.nan


def per_k(pts: list[dict]) -> list[dict]:
    """Per k: its seeds, the mean and sd of each measure (`<measure>`, `<measure>_sd`), the control verdicts."""
    out = []
    for k in sorted({p["k"] for p in pts}):
        at = [p for p in pts if p["k"] == k]
        row: dict = {"k": k, "seeds": [p["seed"] for p in at]}
        for key in MEASURES:
            row[key], row[f"{key}_sd"] = _stats([float(p[key]) for p in at])
        bound = max(CONTROL_PP, 0 if math.isnan(row["baseB_sd"]) else row["baseB_sd"])
        plateaus = [p[key] for p in at for key in ("plateau_A", "plateau_B") if not math.isnan(p[key])]
        b1 = [p[key] for p in at for key in ("b1b", "b1bplus") if not math.isnan(p[key])]
        steps = [p["after_step"] for p in at if not math.isnan(p["after_step"])]
        row["controls"] = {
            "a": None if not plateaus else max(plateaus) <= PLATEAU_PP + 1e-9,
            "b": None if not b1 else max(map(abs, b1)) <= bound + 1e-9,
            "c": None if not steps else min(steps) >= SCORE_TOP}
        row["worst"] = {"a": max(plateaus, default=math.nan), "b": max(b1, key=abs, default=math.nan),
                        "c": min(steps, default=math.nan), "bound": bound}
        out.append(row)
    return out


def _fmt(v: float, sd: float = math.nan) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:+.2f}" + ("" if math.isnan(sd) else f" ± {sd:.2f}")


def _verdict(v: float, shown) -> str:
    return "not measured" if math.isnan(v) else "shown" if shown(v) else "not shown"


def verdict_lines(ks: list[dict]) -> list[str]:
    """One line per k: the boosts, the dip and the drop with their verdicts, and where a control does not hold."""
    lines = []
    for r in ks:
        word = {True: "held", False: "not held", None: "not measured"}
        w = r["worst"]
        controls = (f"controls (a) {word[r['controls']['a']]} (worst {_fmt(w['a'])} pp), (b) "
                    f"{word[r['controls']['b']]} (worst {_fmt(w['b'])} pp, bound {w['bound']:.2f}), (c) "
                    f"{word[r['controls']['c']]} (fewest {'n/a' if math.isnan(w['c']) else f'{w[chr(99)]:.0f}'} "
                    f"of {SCORE_TOP})")
        lines.append(
            f"k = {r['k']} (seeds {', '.join(map(str, r['seeds']))}): boost over baseB "
            f"{_verdict(r['over_base'], lambda v: v > TOLERANCE_PP)} ({_fmt(r['over_base'], r['over_base_sd'])} pp), "
            f"over BnB+ {_verdict(r['over_self'], lambda v: v > TOLERANCE_PP)} "
            f"({_fmt(r['over_self'], r['over_self_sd'])} pp); co-adaptation dip "
            f"{_verdict(r['dip'], lambda v: v < -TOLERANCE_PP)} ({_fmt(r['dip'], r['dip_sd'])} pp); AnB drop at "
            f"n = 7 {_verdict(r['anb7'], lambda v: v < -TOLERANCE_PP)} ({_fmt(r['anb7'], r['anb7_sd'])} pp); "
            + controls)
    return lines


def to_markdown(pts: list[dict], k_full: int | None) -> str:
    """The findings' section of the small target: a table per k, then the verdict lines."""
    ks = per_k(pts)
    full = f"; k = {k_full} is the full protocol's random splits" if k_full else ""
    out = ["**Where transfer pays: a small target** (percentage points, mean ± sd over seeds; half B cut to its "
           f"first k train images per class, half A and the val sets whole{full})", "",
           "| k | seeds | baseB, % | AnB+ - baseB | AnB+ - BnB+ | dip: lowest BnB - baseB (n) | A7B - baseB "
           "| a grid's runs, min |", "|---|---|---|---|---|---|---|---|"]
    for r in ks:
        dip_n = "" if math.isnan(r["dip_n"]) else f" ({r['dip_n']:.0f})"
        out.append(f"| {r['k']} | {len(r['seeds'])} | {r['baseB']:.2f} | {_fmt(r['over_base'], r['over_base_sd'])} "
                   f"| {_fmt(r['over_self'], r['over_self_sd'])} | {_fmt(r['dip'], r['dip_sd'])}{dip_n} "
                   f"| {_fmt(r['anb7'], r['anb7_sd'])} | {r['run_seconds'] / 60:.1f} |")
    out += ["", "A grid's runs: the sum of its 30 runs' wall times (each run on one core; two grids side by side "
            "on 2 cores take about that long for both), mean over the seeds.", "",
            f"Verdicts per k (a mean beyond ±{TOLERANCE_PP:g} pp shows it; controls as above, per k):", "",
            *(f"- {line}" for line in verdict_lines(ks))]
    return "\n".join(out) + "\n"


def summary(pts: list[dict]) -> str:
    """One line of what the points show: each measure's mean at every k."""
    ks = per_k(pts)

    def by_k(key: str) -> str:
        return ", ".join(f"{_fmt(r[key])} (k = {r['k']})" for r in ks)
    seeds = sorted({len(r["seeds"]) for r in ks})
    return (f"AnB+ - baseB {by_k('over_base')} pp; AnB+ - BnB+ {by_k('over_self')} pp; lowest BnB - baseB "
            f"{by_k('dip')} pp (means over {seeds[0]}{'' if len(seeds) == 1 else f'-{seeds[-1]}'} seeds per k)")


def _panel(ax, pts: list[dict], keys: tuple[str, ...], colours: tuple[str, ...], title: str,
           k_full: int | None) -> None:
    ks = per_k(pts)
    xs = [r["k"] for r in ks]
    for key, colour in zip(keys, colours):
        ax.scatter([p["k"] for p in pts], [p[key] for p in pts], s=14, color=colour, alpha=0.45, zorder=3)
        ax.errorbar(xs, [r[key] for r in ks], yerr=[0 if math.isnan(r[f"{key}_sd"]) else r[f"{key}_sd"]
                                                   for r in ks],
                    color=colour, marker="o", capsize=3, linewidth=1.2, label=LABELS[key], zorder=4)
    ax.axhline(0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{k}\n(full)" if k == k_full else str(k) for k in xs], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("Train images per class of the target half B (k, log axis)")
    ax.set_ylabel("Percentage points")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, frameon=False)


def write_small(rows: list[dict], out_dir: Path, k_full: int | None = None) -> dict:
    """Draw the small-target figure, write its CSV and the findings' section into out_dir; return {name: path}."""
    pts = points(rows, k_full)
    if not [p for p in pts if p["k"] != k_full]:
        raise KitError("no runs on a small split (small<seed>k<k>)",
                       "make split-small PERCLASS=k SEED=s, then make grid PROTOCOL=small PERCLASS=k SEED=s")
    from matplotlib.figure import Figure  # noqa: PLC0415  (slow to import: only when drawing)
    out_dir = Path(out_dir)
    fig = Figure(figsize=(11, 4.6))
    left, right = fig.subplots(1, 2)
    _panel(left, pts, ("over_base", "over_self"), ("tab:red", "tab:purple"),
           "Fine-tuned transfer AnB+: the boost (Table 1's)", k_full)
    _panel(right, pts, ("dip", "anb7"), ("tab:blue", "tab:green"), "Frozen: co-adaptation (BnB) and the AnB drop",
           k_full)
    datasets = ", ".join(sorted({str(r.get("dataset")) for r in rows if point_of(r, k_full)}))
    fig.suptitle(f"{datasets}: transfer to a small target (half B cut to its first k train images per class)",
                 fontsize=11)
    line = summary(pts) + ". Points: seeds; lines: means, bars: sd over seeds."
    full = f"; k = {k_full} (full): the full protocol's random splits" if k_full else ""
    fig.text(0.01, 0.005, f"Points: seeds; lines: means, bars: sd over seeds{full}; the numbers: small.csv.",
             fontsize=7, color="dimgrey", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    from analysis.plots import save_both, write_numbers  # noqa: PLC0415  (matplotlib)
    png, pdf = save_both(fig, out_dir / "small", line)
    return {"small_png": png, "small_pdf": pdf, "small_csv": write_numbers(out_dir / "small", COLUMNS, pts),
            "small_md": write_text(out_dir / "small.md", to_markdown(pts, k_full))}


def check_small(rows: list[dict], full_rows: list[dict]) -> None:
    """KitError unless the rows share the full rows' build, and each k's runs on B share one protocol key."""
    builds = sorted({str(r.get("build_key")) for r in rows + full_rows})
    if len(builds) > 1:
        raise KitError(f"the small grids' records and the full protocol's come from {len(builds)} Caffe builds: "
                       f"{builds}", "publish small grids run on the full records' build")
    keys: dict[int, set] = {}
    for row in rows:
        if (point := point_of(row)) is not None and row.get("target") == "B":
            keys.setdefault(point[1], set()).add(str(row.get("protocol_key")))
    mixed = {k: sorted(v) for k, v in keys.items() if len(v) > 1}
    if mixed:
        raise KitError(f"the runs on B of one k come from more than one protocol: {mixed}",
                       "publish each k's grids from one kit version (solvers/small_iters.toml)")


def write_small_records(records: Path, full_rows: list[dict], out_dir: Path) -> tuple[dict, list[dict], str]:
    """write_small over the grids published under <records>/small and the full records' rows; return its
    outputs, the small rows and the summary line of what they show ({}, [], "" when none is published)."""
    small = Path(records) / SMALL_RECORDS
    if not record_dirs(small):
        return {}, [], ""
    rows = record_rows(small, allow_mixed=True)
    check_small(rows, full_rows)
    k = full_k(sorted(small.glob("*/split.json")))
    return write_small(rows + full_rows, out_dir, k), rows, summary(points(rows + full_rows, k))
