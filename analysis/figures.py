"""Every figure and table of the paper from results tables alone (plus per-run curve CSVs).

`write_figures(rows, out_dir, original=...)` writes, as PNG and PDF:
- figure2 (top): every run by n (analysis.plots), the authors' runs hollow when given;
- figure2_bottom: the means per treatment joined by lines, numbered 1-5 where
  the paper's five findings are read, with each finding's measured verdict and
  number below (analysis.findings.verdicts, the text of findings.md);
- figure3 (analysis.figure3): natman transfer, random frozen weights, random-split AnB;
- reduced (analysis.reduced): top-1 against training images per class, when there are reduced-data runs;
- table1.md / table1.csv (analysis.table1), and table1_original.* for the authors' table;
- findings.md: the paper's controls, then its five findings, measured per seed, with verdicts
  (analysis.findings);
- curves: training curves of each run (from its curve.*.csv), when given.
Figure 2, Table 1 and the findings use the rows of random A/B splits
(`random<s>`) only, read by one set of rules (analysis.rules: groups, and
baseB, the base nets of the halves the transfers target, averaged per split
and then over the splits: figure2_bottom's base point is Table 1's and
findings.md's baseline). Each figure's numbers lie beside it as
`<stem>.csv`: figure2.csv, figure2_bottom.csv (BOTTOM_COLUMNS), figure3.csv, reduced.csv.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.figure3 import plot_figure3
from analysis.findings import findings, verdicts, write_findings
from analysis.intervals import interval
from analysis.plots import GROUPS, MAX_N, caption_lines, class_caption, plot_transfer, save_both, write_numbers
from analysis.reduced import plot_reduced, reduced_points
from analysis.rules import baseline, pooled_groups, seed_groups, usable
from analysis.table1 import write_table1
from kitcore.errors import KitError

log = logging.getLogger(__name__)

BOTTOM_COLUMNS = ("group", "n", "mean", "runs", "seeds", "lo", "hi")  # group as in the legend; the base at n = 0;
# mean: of the seeds' means; lo, hi: its 95% interval over the seeds (analysis.intervals; blank for one seed)
SHIFT = {"BnB": -0.12, "BnB+": -0.04, "AnB": 0.04, "AnB+": 0.12, "base2x": 0.25}  # x offsets of points and bars
ANCHORS = {2: "BnB", 3: "BnB+", 4: "AnB", 5: "AnB+"}  # finding: the line its number sits on


def random_split_rows(rows: list[dict]) -> list[dict]:
    """The usable rows of random A/B splits (what Figure 2 and Table 1 are about)."""
    return [r for r in rows if usable(r)]


def _means(rows: list[dict]) -> dict[str, tuple[list[int], list[float], list[int], list]]:
    """(layers, means, runs, Intervals) of each paper group (analysis.rules.pooled_groups): per layer the mean
    over the seeds of each seed's mean, and its 95% interval over the seeds; the base at n = 0 is
    rules.baseline (the mean over splits of each split's base mean) and its number of runs."""
    out = {}
    per_seed = seed_groups(rows).values()
    for group, by_n in pooled_groups(rows).items():
        ns = sorted(by_n)
        if ns:
            ivs = [interval([float(np.mean(g[group][n])) for g in per_seed if g[group].get(n)]) for n in ns]
            out[group] = (ns, [i.mean for i in ivs], [len(by_n[n]) for n in ns], ivs)
    if "base" in out:
        _, runs = baseline(rows)
        out["base"] = ([0], out["base"][1], [runs], out["base"][3])
    return out


def _anchor(finding: int, ns: list[int], ys: list[float]) -> tuple[int, float]:
    """Where on its line a finding's number goes: the BnB dip, the AnB+ top, else the last layer."""
    if finding == 2:
        inside = [j for j, n in enumerate(ns) if 2 <= n <= 6] or list(range(len(ns)))
        i = min(inside, key=lambda j: ys[j])
    elif finding == 5:
        i = int(np.argmax(ys))
    else:
        i = len(ns) - 1
    return ns[i], ys[i]


NUMBER_OFFSETS = ((6, 9), (6, -19), (-20, 9), (-20, -19))  # points: above right, below right, then left


def number_offsets(points: list[tuple[float, float]], y_span: float) -> list[tuple[int, int]]:
    """An offset for each finding's number at its (n, accuracy) point, so that two numbers never share one:
    a number near an earlier one (same n, within 6% of the y span) takes the next offset of NUMBER_OFFSETS."""
    taken: list[tuple[float, float, tuple[int, int]]] = []
    for x, y in points:
        near = {off for tx, ty, off in taken if tx == x and abs(ty - y) <= 0.06 * y_span}
        taken.append((x, y, next((o for o in NUMBER_OFFSETS if o not in near), NUMBER_OFFSETS[-1])))
    return [offset for _, _, offset in taken]


def notes(rows: list[dict]) -> list[str]:
    """The lines printed under Figure 2 (bottom): a heading, then each finding's verdict as in findings.md."""
    seeds = findings(rows)[0]
    over = f"seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}"
    head = (f"What these runs show (findings.md; means and 95% intervals over {over}; baseB: base nets of the "
            "target halves; numbered as the paper's Section 4.1):")
    return caption_lines(head, 125) + [line for v in verdicts(rows) for line in caption_lines(v["short"], 125)]


def plot_figure2_bottom(rows: list[dict], out_stem: Path, overlay: list[dict] | None = None,
                        caption: str = "") -> list[Path]:
    """Figure 2 (bottom): group means by n joined by lines, the five findings' verdicts numbered on them;
    write out_stem.png, .pdf and .csv (BOTTOM_COLUMNS; the base row at n = 0, where it is drawn)."""
    means = _means(rows)
    if not means:
        raise KitError("no finished runs on a random split for Figure 2",
                       "train some first: make train TREATMENT=baseA")
    fig = Figure(figsize=(7.5, 6.4))
    ax = fig.add_axes((0.1, 0.36, 0.86, 0.57))
    records = []
    for group, (ns, ys, runs, ivs) in means.items():
        label, colour, marker, _ = GROUPS[group]
        bars = [[0 if np.isnan(i.lo) else i.mean - i.lo for i in ivs], [0 if np.isnan(i.hi) else i.hi - i.mean
                                                                         for i in ivs]]
        if group == "base":
            ax.axhline(ys[0], color="black", linestyle=":", linewidth=1)
            ax.errorbar([0], ys, yerr=bars, marker="o", color="black", markerfacecolor="white", markersize=8,
                        capsize=3, label=label)
        else:  # each group's bars a little aside, so that they do not hide each other
            ax.errorbar(np.array(ns) + SHIFT.get(group, 0), ys, yerr=bars, color=colour, marker=marker, markersize=7,
                        linewidth=1.8, capsize=3, label=label)
        records += [{"group": label, "n": n, "mean": y, "runs": k, "seeds": i.n, "lo": i.lo, "hi": i.hi}
                    for n, y, k, i in zip(ns, ys, runs, ivs)]
    for group, (ns, ys, runs, _) in (_means(overlay) if overlay else {}).items():
        label, colour, marker, _ = GROUPS[group]
        ax.plot(ns, ys, color=colour, marker=marker, markerfacecolor="none", linestyle="--", linewidth=0.9,
                markersize=7, label=f"authors' {label}")
        records += [{"group": f"authors' {label}", "n": n, "mean": y, "runs": k, "seeds": 1, "lo": math.nan,
                     "hi": math.nan} for n, y, k in zip(ns, ys, runs)]
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.08 * (hi - lo))  # room above the top line for its numbers
    placed = [(v, ANCHORS[v["finding"]]) for v in verdicts(rows)
              if v["verdict"] != "not measured" and ANCHORS[v["finding"]] in means]
    points = [_anchor(v["finding"], *means[group][:2]) for v, group in placed]
    for (v, group), (x, y), offset in zip(placed, points, number_offsets(points, hi - lo)):
        ax.annotate(str(v["finding"]), (x, y), xytext=offset, textcoords="offset points", fontsize=9,
                    weight="bold", color=GROUPS[group][1],
                    bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "ec": GROUPS[group][1]})
    fig.text(0.02, 0.02, "\n".join((caption_lines(caption, 125) if caption else []) + notes(rows)), fontsize=7.5,
             va="bottom")
    ax.set_xlim(-0.5, MAX_N + 0.5)
    ax.set_xticks(range(MAX_N + 1))
    ax.set_xlabel("Layer n at which the network is chopped and retrained")
    ax.set_ylabel("Top-1 accuracy (mean over seeds)")
    ax.set_title("Figure 2 (bottom): means by group, bars: 95% intervals over seeds; numbers: the findings below",
                 fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return save_both(fig, out_stem, caption) + [write_numbers(out_stem, BOTTOM_COLUMNS, records)]


def _read_curve(path: Path) -> dict[str, list[float]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keys = rows[0].keys() if rows else []
    return {k: [float(r[k]) if r[k] not in ("", None) else math.nan for r in rows] for k in keys}


def plot_curves(runs: list[tuple[str, Path]], out_stem: Path) -> list[Path]:
    """Training curves, one panel per run: test accuracy and train loss against iterations."""
    runs = [(label, d) for label, d in runs if (Path(d) / "curve.test.csv").is_file()]
    if not runs:
        return []
    cols = min(5, len(runs))
    rows_n = math.ceil(len(runs) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows_n))
    for i, (label, d) in enumerate(runs):
        ax = fig.add_subplot(rows_n, cols, i + 1)
        test = _read_curve(Path(d) / "curve.test.csv")
        if test.get("accuracy"):
            ax.plot(test["NumIters"], test["accuracy"], color="tab:blue", linewidth=1)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_ylabel("test accuracy", fontsize=6, color="tab:blue")
        train_csv = Path(d) / "curve.train.csv"
        train = _read_curve(train_csv) if train_csv.is_file() else {}
        if train.get("loss"):
            twin = ax.twinx()
            twin.plot(train["NumIters"], train["loss"], color="grey", linewidth=0.5, alpha=0.7)
            twin.tick_params(labelsize=6)
            twin.set_ylabel("train loss", fontsize=6, color="grey")
        ax.set_xlabel("iteration", fontsize=6)
    fig.tight_layout()
    return save_both(fig, out_stem)


def write_figures(rows: list[dict], out_dir: Path, original: list[dict] | None = None,
                  curves: list[tuple[str, Path]] | None = None, where: Path | None = None,
                  classes: dict[str, dict[str, list[str]]] | None = None) -> dict:
    """Write every figure and table into out_dir from results rows; return {name: path} and `absent`.

    classes: split name -> half -> class names (split.json's), named on each figure: Figure 2 the
    random split's of `where`, Figure 3 natman's and all's."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig2 = random_split_rows(rows)
    orig2 = random_split_rows(original) if original else None
    out: dict = {}
    classes = classes or {}
    split = Path(where).parent.name if where else ""
    others = sorted({r.get("split") for r in fig2} - {split, None})
    own = class_caption(classes.get(split, {}), limit=4 if others else 6)
    if own and others:  # several seeds drawn together: say whose halves the names are
        own = f"{split}: {own}; {', '.join(others)}: other halves"
    out["figure_png"], out["figure_pdf"], out["figure2_csv"] = plot_transfer(fig2, out_dir / "figure2",
                                                                              runs_dir=where, overlay=orig2,
                                                                              caption=own)
    out["figure2_bottom_png"], out["figure2_bottom_pdf"], out["figure2_bottom_csv"] = plot_figure2_bottom(
        fig2, out_dir / "figure2_bottom", overlay=orig2, caption=own)
    absent = []
    dissimilar = "; ".join(class_caption(classes[name]) if set(classes[name]) == {name}  # all's one half: all
                           else f"{name} {class_caption(classes[name])}" for name in ("natman", "all")
                           if classes.get(name))
    paths, missing = plot_figure3(rows, out_dir / "figure3", overlay=original, caption=dissimilar)
    absent += missing
    if paths:
        out["figure3_png"], out["figure3_pdf"], out["figure3_csv"] = paths
    if reduced_points(rows + (original or [])):  # an extra of the paper's: not absent when there are none
        out["reduced_png"], out["reduced_pdf"], out["reduced_csv"] = plot_reduced(rows, out_dir / "reduced",
                                                                                 overlay=original)
    for name, table_rows, title in (("table1", rows, "Table 1"),
                                    ("table1_original", original, "Table 1, authors' runs")):
        if table_rows is None:
            continue
        try:
            out[f"{name}_md"], out[f"{name}_csv"] = write_table1(table_rows, out_dir / name, title)
        except KitError as exc:
            absent.append(f"{name}: {exc.problem}")
    if fig2:
        out["findings_md"] = write_findings(rows, out_dir / "findings")
    if curves:
        paths = plot_curves(curves, out_dir / "curves")
        if paths:
            out["curves_png"], out["curves_pdf"] = paths
    for note in absent:
        log.info("absent: %s", note)
    out["absent"] = absent
    return out
