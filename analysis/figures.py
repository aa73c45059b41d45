"""Every figure and table of the paper from results tables alone (plus per-run curve CSVs).

`write_figures(rows, out_dir, original=...)` writes, as PNG and PDF:
- figure2 (top): every run by n (analysis.plots), the authors' runs hollow when given;
- figure2_bottom: the means per treatment joined by lines, with the paper's
  numbered interpretations (its Section 4.1, items 1-5) as annotations;
- figure3 (analysis.figure3): natman transfer, random frozen weights, random-split AnB;
- table1.md / table1.csv (analysis.table1), and table1_original.* for the authors' table;
- findings.md: the paper's five findings measured per seed (analysis.findings);
- curves: training curves of each run (from its curve.*.csv), when given.
Figure 2 and Table 1 use the rows of random A/B splits (`random<s>`) only.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.figure3 import plot_figure3
from analysis.findings import write_findings
from analysis.plots import GROUPS, MAX_N, plottable, plot_transfer, save_both
from analysis.table1 import usable, write_table1
from runner.errors import KitError

log = logging.getLogger(__name__)

# The paper's interpretations of Figure 2 (Section 4.1), each placed on the line it is about.
INTERPRETATIONS = {
    1: ("base", "baseB: 500 classes, lower error than the 1000-class net"),
    2: ("BnB", "BnB: drop at layers 3-6, fragile co-adapted features"),
    3: ("BnB+", "BnB+: fine-tuning recovers the base level"),
    4: ("AnB", "AnB: lost co-adaptation (3-5) + specificity (6-7)"),
    5: ("AnB+", "AnB+: transfer + fine-tuning beats the base"),
}


def random_split_rows(rows: list[dict]) -> list[dict]:
    """The usable rows of random A/B splits (what Figure 2 and Table 1 are about)."""
    return [r for r in rows if usable(r)]


def _means(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    out = {}
    for group, pts in plottable(rows).items():
        ns = sorted({n for n, _ in pts})
        if ns:
            out[group] = (ns, [float(np.mean([y for m, y in pts if m == n])) for n in ns])
    return out


def _anchor(group: str, ns: list[int], ys: list[float]) -> tuple[int, float]:
    """Where on its line an interpretation's number goes."""
    if group == "BnB":
        i = int(np.argmin(ys))
    elif group == "AnB+":
        i = int(np.argmax(ys))
    else:
        i = len(ns) - 1
    return ns[i], ys[i]


def plot_figure2_bottom(rows: list[dict], out_stem: Path, overlay: list[dict] | None = None) -> list[Path]:
    """Figure 2 (bottom): treatment means by n joined by lines, interpretations 1-5 numbered on them."""
    means = _means(rows)
    if not means:
        raise KitError("no finished runs on a random split for Figure 2", "train some first: make train TREATMENT=baseA")
    fig = Figure(figsize=(7.5, 5.6))
    ax = fig.add_axes((0.1, 0.3, 0.86, 0.62))
    for group, (ns, ys) in means.items():
        label, colour, marker, _ = GROUPS[group]
        if group == "base":
            ax.axhline(ys[0], color="black", linestyle=":", linewidth=1)
            ax.plot([0], ys, marker="o", color="black", markerfacecolor="white", markersize=8, label=label)
        else:
            ax.plot(ns, ys, color=colour, marker=marker, markersize=7, linewidth=1.8, label=label)
    for group, (ns, ys) in (_means(overlay) if overlay else {}).items():
        label, colour, marker, _ = GROUPS[group]
        ax.plot(ns, ys, color=colour, marker=marker, markerfacecolor="none", linestyle="--", linewidth=0.9,
                markersize=7, label=f"authors' {label}")
    notes = []
    for number, (group, text) in INTERPRETATIONS.items():
        if group not in means:
            continue
        x, y = _anchor(group, *means[group])
        ax.annotate(str(number), (x, y), xytext=(6, 9), textcoords="offset points", fontsize=9, weight="bold",
                    color=GROUPS[group][1], bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "ec": GROUPS[group][1]})
        notes.append(f"{number}. {text}")
    fig.text(0.1, 0.02, "\n".join(notes), fontsize=8, va="bottom")
    ax.set_xlim(-0.5, MAX_N + 0.5)
    ax.set_xticks(range(MAX_N + 1))
    ax.set_xlabel("Layer n at which the network is chopped and retrained")
    ax.set_ylabel("Top-1 accuracy (mean over runs)")
    ax.set_title("Figure 2 (bottom): treatment means; numbers: the paper's interpretations")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return save_both(fig, out_stem)


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
                  curves: list[tuple[str, Path]] | None = None, where: Path | None = None) -> dict:
    """Write every figure and table into out_dir from results rows; return {name: path} and `absent`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig2 = random_split_rows(rows)
    orig2 = random_split_rows(original) if original else None
    out: dict = {}
    out["figure_png"], out["figure_pdf"] = plot_transfer(fig2, out_dir / "figure2", runs_dir=where, overlay=orig2)
    out["figure2_bottom_png"], out["figure2_bottom_pdf"] = plot_figure2_bottom(fig2, out_dir / "figure2_bottom",
                                                                               overlay=orig2)
    absent = []
    paths, missing = plot_figure3(rows, out_dir / "figure3", overlay=original)
    absent += missing
    if paths:
        out["figure3_png"], out["figure3_pdf"] = paths
    for name, table_rows, title in (("table1", rows, "Table 1"), ("table1_original", original, "Table 1, authors' runs")):
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
