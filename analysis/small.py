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
- `dip`: BnB - baseB, mean over n = 3..6 (co-adaptation; `dip_n`, the layer
  where it is lowest, is a description);
- `anb7`: AnB - baseB at n = 7 (the drop of frozen transferred features);
- the controls of analysis.findings: `plateau_B` (and `plateau_A`) of the
  base nets, `b1b` and `b1bplus` against baseB, `after_step`.
Seed TUNING_SEED's small grids chose the iterations per k (docs/protocol.md):
their points are drawn (hollow) and kept in small.csv (`tuning` 1), never
judged. Per k: the mean and 95% interval over its other seeds and the verdicts of CLAIMS,
read as the findings' are (analysis.intervals), and the controls over the
seeds at that k (analysis.findings.control_lines).
`write_small` draws the figure (small.png, .pdf), writes what it draws
(small.csv: one row per point, and per k a row 'mean' with the intervals) and
the findings' section (small.md);
`write_small_records` does it for the grids published under
`<records>/small/` (SMALL_RECORDS), beside the full protocol's records whose
random splits are the points at the full k. Their rows must come from the full
records' Caffe build, and the runs on B of one k from one protocol (the
iterations per k of solvers/small_iters.toml make each k's its own).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from analysis import intervals as iv
from analysis.findings import control_lines, control_measures, seed_controls, split_measures
from analysis.records import record_dirs, record_rows
from analysis.rules import GROUPS, group_of, scored
from kitcore.atomic import write_text
from kitcore.builds import canonical, classes
from kitcore.errors import KitError
from kitcore.layout import split_protocol

SMALL_RECORDS = "small"  # <records>/small/<split>/<treatment>/: the small-target grids' run records
MEASURES = ("over_base", "over_self", "dip", "dip_n", "anb7", "baseB", "plateau_B", "plateau_A", "b1b", "b1bplus",
            "after_step", "run_seconds", "iters_A", "iters_B")
# run_seconds: the sum of the split's run wall times (what its grid costs); iters_A: baseA's iterations, iters_B:
# those of the runs on B (baseB and every transfer: AnB+ trained iters_A + iters_B in all, BnB+ 2 iters_B)
BOUNDS = ("over_base", "over_self", "dip", "anb7")  # the drawn measures: their 95% interval on the k's mean row
TUNING_SEED = 0  # solvers/small_iters.toml was chosen on seed 0's small grids (docs/protocol.md): shown apart
COLUMNS = ("k", "seed", "split", "runs", "tuning", *MEASURES, *(f"{m}_{end}" for m in BOUNDS for end in ("lo", "hi")))
LABELS = {"over_base": "AnB+ - baseB (mean over n = 1..7)", "over_self": "AnB+ - BnB+ (mean over n = 1..7)",
          "dip": "BnB - baseB, mean over n = 3..6", "anb7": "A7B - baseB"}


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
    groups: dict[str, dict[int, list[float]]] = {g: {} for g in GROUPS}
    for row in good:
        if (group := group_of(row, {"B"})) is not None:
            groups[group].setdefault(0 if group == "base" else int(row["n"]), []).append(float(row["score"]))
    m = split_measures(groups)
    c = seed_controls(good, keep=scored)
    seconds = [float(r["wall_seconds"]) for r in rows if r.get("wall_seconds") not in (None, "")]

    def iters(keep) -> float:  # the iterations the runs of a kind trained for (their logs' last iteration)
        found = {int(r["iterations"]) for r in good if keep(r) and r.get("iterations") not in (None, "")}
        return float(max(found)) if found else math.nan
    return {"over_base": m["anbplus"], "over_self": m["anbplus_self"],
            "dip": m["dip"], "dip_n": m["dip_n"], "anb7": m["anb7"], **c,
            "run_seconds": sum(seconds) if seconds else math.nan,
            "iters_A": iters(lambda r: r.get("kind") == "base" and r.get("target") == "A"),
            "iters_B": iters(lambda r: r.get("target") == "B" and int(r.get("budget") or 1) == 1)}


def points(rows: list[dict], k_full: int | None = None) -> list[dict]:
    """One COLUMNS record per (seed, k) the rows have, sorted by k then seed."""
    by: dict[tuple[int, int], list[dict]] = {}
    for row in rows:
        if (key := point_of(row, k_full)) is not None:
            by.setdefault(key, []).append(row)
    return [{"k": k, "seed": s, "split": by[(s, k)][0]["split"], "runs": sum(map(scored, by[(s, k)])),
             "tuning": int(s == TUNING_SEED and k != k_full), **_point(by[(s, k)])}
            for s, k in sorted(by, key=lambda key: (key[1], key[0]))]


# The measures drawn and judged per k, with the paper's claim (analysis.intervals)
CLAIMS = {"over_base": "+", "over_self": "+", "dip": "-", "anb7": "-"}


def per_k(pts: list[dict]) -> list[dict]:
    """Per k: its seeds, each measure's Interval over them (`<measure>`: mean, `<measure>_iv`), the verdicts of
    CLAIMS (`<measure>_verdict`: the text), and the control lines (analysis.findings.control_lines)."""
    out = []
    pts = [p for p in pts if not p.get("tuning")]  # the tuning seed's points are drawn, never judged
    for k in sorted({p["k"] for p in pts}):
        at = [p for p in pts if p["k"] == k]
        row: dict = {"k": k, "seeds": [p["seed"] for p in at]}
        for key in MEASURES:
            interval = iv.interval([float(p[key]) for p in at])
            row[key], row[f"{key}_iv"] = interval.mean, interval
            if key in CLAIMS:
                row[f"{key}_verdict"] = iv.verdict_text(interval, CLAIMS[key])
                row[f"{key}_word"] = iv.verdict(interval, CLAIMS[key])
        row["controls"] = control_lines(control_measures(at))
        out.append(row)
    return out


def mean_rows(pts: list[dict]) -> list[dict]:
    """One COLUMNS record per k: seed 'mean', each measure's mean over the seeds and the BOUNDS' intervals."""
    out = []
    for r in per_k(pts):
        row = {"k": r["k"], "seed": "mean", "split": "", "tuning": 0,
               "runs": sum(p["runs"] for p in pts if p["k"] == r["k"] and not p["tuning"]),
               **{key: r[key] for key in MEASURES}}
        row.update({f"{m}_{end}": getattr(r[f"{m}_iv"], end) for m in BOUNDS for end in ("lo", "hi")})
        out.append(row)
    return out


def _iters(r: dict) -> str:
    """`3000 + 300, 300 + 300 (baseB 300)`: what AnB+ and BnB+ trained for in all, at one k."""
    a, b = r["iters_A"], r["iters_B"]
    if math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a:.0f} + {b:.0f}; {b:.0f} + {b:.0f} (baseB {b:.0f})"


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.2f}"


def verdict_lines(ks: list[dict]) -> list[str]:
    """One line per k: the boosts, the dip and the drop with their intervals and verdicts, then the controls."""
    lines = []
    for r in ks:
        parts = [f"{name} {r[key + '_iv'].text()} pp: {r[key + '_verdict']}" for key, name in (
            ("over_base", "boost over baseB"), ("over_self", "over BnB+"), ("dip", "co-adaptation dip (n = 3..6)"),
            ("anb7", "AnB drop at n = 7"))]
        lines.append(f"k = {r['k']} (seeds {', '.join(map(str, r['seeds']))}): " + "; ".join(parts)
                     + "; controls " + "; ".join(r["controls"]))
    return lines


def to_markdown(pts: list[dict], k_full: int | None) -> str:
    """The findings' section of the small target: a table per k, then the verdict lines."""
    ks = per_k(pts)
    full = f"; k = {k_full} is the full protocol's random splits" if k_full else ""
    out = ["**Where transfer pays: a small target** (percentage points, mean [95% interval] over seeds; half B cut "
           f"to its first k train images per class, half A and the val sets whole{full}; seed {TUNING_SEED}, which "
           "chose the iterations per k, is left out: its grids are in the records and drawn hollow)", "",
           "| k | seeds | baseB, % | AnB+ - baseB | AnB+ - BnB+ | dip: BnB - baseB, n = 3..6 | A7B - baseB "
           "| iterations: AnB+ (baseA + its own), BnB+ and baseB (baseB + its own) | a grid's runs, min |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in ks:
        out.append(f"| {r['k']} | {len(r['seeds'])} | {r['baseB']:.2f} | {r['over_base_iv'].text()} "
                   f"| {r['over_self_iv'].text()} | {r['dip_iv'].text()} "
                   f"| {r['anb7_iv'].text()} | {_iters(r)} | {r['run_seconds'] / 60:.1f} |")
    out += ["", "A grid's runs: the sum of its 30 runs' wall times (each run on one core; two grids side by side "
            "on 2 cores take about that long for both), mean over the seeds.", "",
            f"Verdicts per k ({iv.METHOD}):", "", *(f"- {line}" for line in verdict_lines(ks))]
    return "\n".join(out) + "\n"


def readme_table(ks: list[dict]) -> list[str]:
    """The README's table of the small target: per k, the seeds and each CLAIMS measure's interval and verdict."""
    out = ["| k | seeds | AnB+ - baseB | AnB+ - BnB+ | BnB - baseB, n = 3..6 | A7B - baseB |",
           "|---|---|---|---|---|---|"]
    for r in ks:
        out.append(f"| {r['k']} | {len(r['seeds'])} | " + " | ".join(
            f"{r[key + '_iv'].text()} {r[key + '_word']}" for key in ("over_base", "over_self", "dip", "anb7")) + " |")
    return out


def summary(pts: list[dict]) -> str:
    """One line of what the points show: each measure's mean [interval] and verdict at every k."""
    ks = per_k(pts)

    def by_k(key: str) -> str:
        return ", ".join(f"{r[key + '_iv'].text()} (k = {r['k']}: {r[key + '_word']})" for r in ks)
    seeds = sorted({len(r["seeds"]) for r in ks})
    return (f"AnB+ - baseB {by_k('over_base')} pp; AnB+ - BnB+ {by_k('over_self')} pp; BnB - baseB over "
            f"n = 3..6 {by_k('dip')} pp (means and 95% intervals over {seeds[0]}"
            f"{'' if len(seeds) == 1 else f'-{seeds[-1]}'} seeds per k)")


def _panel(ax, pts: list[dict], keys: tuple[str, ...], colours: tuple[str, ...], title: str,
           k_full: int | None) -> None:
    ks = per_k(pts)
    xs = [r["k"] for r in ks]
    for key, colour in zip(keys, colours):
        for tuning in (0, 1):  # the tuning seed's points hollow: drawn, not in the means and intervals
            at = [p for p in pts if p.get("tuning", 0) == tuning]
            ax.scatter([p["k"] for p in at], [p[key] for p in at], s=14, alpha=0.45 if not tuning else 0.8, zorder=3,
                       color=colour if not tuning else "none", edgecolors=colour)
        ivs = [r[f"{key}_iv"] for r in ks]
        ax.errorbar(xs, [r[key] for r in ks], yerr=[[0 if math.isnan(i.lo) else i.mean - i.lo for i in ivs],
                                                   [0 if math.isnan(i.hi) else i.hi - i.mean for i in ivs]],
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
    line = summary(pts) + f". Points: seeds (hollow: seed {TUNING_SEED}, the tuning seed, not in the means); lines: " \
        "means, bars: 95% intervals over seeds."
    full = f"; k = {k_full} (full): the full protocol's random splits" if k_full else ""
    fig.text(0.01, 0.005, f"Points: seeds (hollow: seed {TUNING_SEED}, which chose the iterations per k, left out of "
             f"the means); lines: means, bars: 95% t-intervals over the other seeds{full}; the numbers: small.csv.",
             fontsize=7, color="dimgrey", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    from analysis.plots import save_both, write_numbers  # noqa: PLC0415  (matplotlib)
    png, pdf = save_both(fig, out_dir / "small", line)
    csv_path = write_numbers(out_dir / "small", COLUMNS, pts + mean_rows(pts))
    return {"small_png": png, "small_pdf": pdf, "small_csv": csv_path,
            "small_md": write_text(out_dir / "small.md", to_markdown(pts, k_full))}


def check_small(rows: list[dict], full_rows: list[dict], joined: dict[str, str] | None = None) -> None:
    """KitError unless the rows share the full rows' build (or one shown to train the same nets: `joined`,
    kitcore.builds.classes), and each k's runs on B share one protocol key."""
    builds = sorted({canonical(str(r.get("build_key")), joined or {}) for r in rows + full_rows})
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


def write_small_records(records: Path, full_rows: list[dict], out_dir: Path) -> tuple[dict, list[dict], str, list]:
    """write_small over the grids published under <records>/small and the full records' rows; return its
    outputs, the small rows, the summary line of what they show and per_k's rows ({}, [], "", [] when none)."""
    small = Path(records) / SMALL_RECORDS
    if not record_dirs(small):
        return {}, [], "", []
    rows = record_rows(small, allow_mixed=True)
    check_small(rows, full_rows, classes(records))
    k = full_k(sorted(small.glob("*/split.json")))
    pts = points(rows + full_rows, k)
    return write_small(rows + full_rows, out_dir, k), rows, summary(pts), per_k(pts)
