"""The paper's Figure 2 (top): top-1 accuracy against the layer n where nets are chopped.

Groups follow the paper's pooling (its footnote 3, Section 4.1): a transfer
XnY with X == Y is a selffer and drawn as `BnB` (AnA pooled with BnB), one
with X != Y as `AnB` (BnA pooled with AnB), `+` when fine-tuned; every base
net is drawn as `baseB` at n = 0. Each finished run is a point, jittered
sideways by a fixed seed (the same rows give the same picture); the means of
each group are joined by lines, and the base mean is a dotted level across.
Drawn with matplotlib's object API on the Agg canvas (no pyplot state).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from runner.atomic import replacing
from runner.errors import KitError

log = logging.getLogger(__name__)

# group: (legend label, colour, marker, sideways offset)
GROUPS = {
    "base": ("baseB", "black", "o", 0.0),
    "BnB": ("BnB", "tab:blue", "o", -0.15),
    "BnB+": ("BnB+", "deepskyblue", "^", -0.05),
    "AnB": ("AnB", "tab:red", "o", 0.05),
    "AnB+": ("AnB+", "salmon", "^", 0.15),
}
MAX_N = 7
_JITTER = 0.03


def group_of(row: dict) -> str | None:
    """The Figure 2 group of a results row (None: not in this figure)."""
    if row.get("kind") == "base":
        return "base"
    if row.get("kind") != "transfer":
        return None
    style = "BnB" if row.get("source") == row.get("target") else "AnB"
    return style + ("+" if row.get("finetuned") else "")


def plottable(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """(n, score) of the finished rows by Figure 2 group."""
    points: dict[str, list[tuple[int, float]]] = {g: [] for g in GROUPS}
    for row in rows:
        group, value = group_of(row), row.get("score")
        if group is None or not row.get("finished", True) or value is None or math.isnan(value):
            continue
        points[group].append((0 if group == "base" else int(row["n"]), float(value)))
    return points


def _title(rows: list[dict]) -> str:
    def values(key: str) -> str:
        return "/".join(sorted({str(r.get(key)) for r in rows if r.get(key) is not None})) or "?"
    return f"Transfer by layer: {values('dataset')}, split {values('split')}"


def _save(fig: Figure, path: Path, fmt: str) -> None:
    meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
    with replacing(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, metadata=meta)


def save_both(fig: Figure, out_stem: Path) -> list[Path]:
    """Write a figure as out_stem.png and out_stem.pdf (atomically); return the two paths."""
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_name(out_stem.name + ".png"), out_stem.with_name(out_stem.name + ".pdf")]
    for path, fmt in zip(paths, ("png", "pdf")):
        _save(fig, path, fmt)
    log.info("figure written: %s", ", ".join(map(str, paths)))
    return paths


def _overlay(ax, rows: list[dict], rng: np.random.Generator) -> None:
    """The authors' runs as hollow markers (their group's colour and marker, no fill) with dashed means."""
    for group, pts in plottable(rows).items():
        if not pts:
            continue
        label, colour, marker, offset = GROUPS[group]
        ns = np.array([n for n, _ in sorted(pts)], dtype=float)
        ys = np.array([y for _, y in sorted(pts)])
        ax.scatter(ns + offset + rng.uniform(-_JITTER, _JITTER, len(ns)), ys, s=30, marker=marker,
                   facecolors="none", edgecolors=colour, linewidths=0.9, zorder=2,
                   label=f"authors' {label} ({len(pts)})")
        levels = sorted(set(ns))
        if group != "base":
            ax.plot(np.array(levels) + offset, [ys[ns == n].mean() for n in levels], color=colour,
                    linestyle="--", linewidth=0.8, zorder=2)


def plot_transfer(rows: list[dict], out_stem: Path, runs_dir: Path | None = None,
                  overlay: list[dict] | None = None) -> list[Path]:
    """Draw Figure 2 from results rows (finished ones); write out_stem.png and .pdf; return them."""
    out_stem = Path(out_stem)
    points = plottable(rows)
    if not any(points.values()):
        where = runs_dir if runs_dir is not None else out_stem.parent
        raise KitError(f"no finished runs under {where}", "train some first: make train TREATMENT=baseA")
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for group, (label, colour, marker, offset) in GROUPS.items():
        pts = sorted(points[group])
        if not pts:
            continue
        ns = np.array([n for n, _ in pts], dtype=float)
        ys = np.array([y for _, y in pts])
        xs = ns + offset + rng.uniform(-_JITTER, _JITTER, len(ns))
        face = "white" if group == "base" else colour
        ax.scatter(xs, ys, s=22, marker=marker, facecolors=face, edgecolors=colour, alpha=0.7,
                   linewidths=0.8, zorder=3, label=f"{label} ({len(pts)} run{'s' * (len(pts) != 1)})")
        levels = sorted(set(ns))
        means = [ys[ns == n].mean() for n in levels]
        if group == "base":
            ax.axhline(means[0], color=colour, linestyle=":", linewidth=1, zorder=1)
        else:
            ax.plot(np.array(levels) + offset, means, color=colour, marker=marker, markersize=7,
                    linewidth=1.5, zorder=4)
    if overlay:
        _overlay(ax, overlay, rng)
    ax.set_xlim(-0.5, MAX_N + 0.5)
    ax.set_xticks(range(MAX_N + 1))
    ax.set_xlabel("Layer n at which the network is chopped and retrained")
    ax.set_ylabel("Top-1 accuracy (mean of the 10 best tests)")
    ax.set_title(_title(rows))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8, frameon=False)
    fig.tight_layout()
    return save_both(fig, out_stem)
