"""The paper's Figure 2 (top): top-1 accuracy against the layer n where nets are chopped.

Rows, groups and the baseline are analysis.rules' (the ones Table 1 and the
findings use; the paper's footnote 3 pooling): a transfer XnY with X == Y is a
selffer and drawn as `BnB` (AnA pooled with BnB), one with X != Y as `AnB`
(BnA pooled with AnB), `+` when fine-tuned; the base nets of the halves the
transfers target are drawn as `baseB` at n = 0. Each finished run on a random
split is a point, jittered sideways by a fixed seed (the same rows give the
same picture); the means of each group are joined by lines, and the baseline
(rules.baseline: per split, then over the splits) is a dotted level across.
Drawn with matplotlib's object API on the Agg canvas (no pyplot state). The points drawn are written
beside the picture as `<stem>.csv` (POINT_COLUMNS; the authors' runs with
their group named `authors' ...`, as in the legend).
"""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.rules import baseline, grouped, run_label
from kitcore.atomic import replacing
from kitcore.caffe_log import write_csv_atomic
from kitcore.errors import KitError

log = logging.getLogger(__name__)

# group: (legend label, colour, marker, sideways offset)
GROUPS = {
    "base": ("baseB", "black", "o", 0.0),
    "BnB": ("BnB", "tab:blue", "o", -0.15),
    "BnB+": ("BnB+", "deepskyblue", "^", -0.05),
    "AnB": ("AnB", "tab:red", "o", 0.05),
    "AnB+": ("AnB+", "salmon", "^", 0.15),
    "base2x": ("baseB, 2x iterations", "dimgrey", "s", 0.25),
}
MAX_N = 7
_JITTER = 0.03
# x: where the point is drawn (jittered); treatment: the run (rules.run_label: `A3B.r2` for replicate 2)
POINT_COLUMNS = ("group", "n", "x", "score", "split", "treatment")


def _points(rows: list[dict]) -> dict[str, list[tuple[int, float, dict]]]:
    """(n, score, row) of the rows in each Figure 2 group, sorted by n and score."""
    points: dict[str, list[tuple[int, float, dict]]] = {g: [] for g in GROUPS}
    for group, n, row in grouped(rows):
        points[group].append((n, float(row["score"]), row))
    return {g: sorted(pts, key=lambda p: p[:2]) for g, pts in points.items()}


def _title(rows: list[dict]) -> str:
    def values(key: str) -> list[str]:
        return sorted({str(r.get(key)) for r in rows if r.get(key) is not None}) or ["?"]
    splits = values("split")
    named = "/".join(splits) if len(splits) <= 3 else f"{splits[0]} ... {splits[-1]} ({len(splits)} splits)"
    return f"Transfer by layer: {'/'.join(values('dataset'))}, split{'s' * (len(splits) > 1)} {named}"


def class_caption(classes: dict[str, list[str]] | None, limit: int = 6) -> str:
    """'A: n1, n2 | B: n3, ... (+K more)': the class names of each half of a split (limit per half)."""
    parts = []
    for half, names in sorted((classes or {}).items()):
        more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
        parts.append(f"{half}: {', '.join(names[:limit])}{more}")
    return " | ".join(parts)


def _save(fig: Figure, path: Path, fmt: str, description: str = "") -> None:
    meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
    if description:  # the classes drawn, also in the file's metadata (PNG Description, PDF Subject)
        meta["Subject" if fmt == "pdf" else "Description"] = description
    with replacing(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, metadata=meta)


def caption_lines(caption: str, width: int, parts: bool = False) -> list[str]:
    """A figure's caption cut into lines of at most `width` characters; with `parts`, each "; " part starts a line."""
    return [line for part in (caption.split("; ") if parts else [caption]) for line in textwrap.wrap(part, width)]


def save_both(fig: Figure, out_stem: Path, description: str = "") -> list[Path]:
    """Write a figure as out_stem.png and out_stem.pdf (atomically); return the two paths."""
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_name(out_stem.name + ".png"), out_stem.with_name(out_stem.name + ".pdf")]
    for path, fmt in zip(paths, ("png", "pdf")):
        _save(fig, path, fmt, description)
    log.info("figure written: %s", ", ".join(map(str, paths)))
    return paths


def write_numbers(out_stem: Path, header: tuple[str, ...], records: list[dict]) -> Path:
    """Write the numbers a figure draws as out_stem.csv (atomically); return its path."""
    path = Path(out_stem).with_name(Path(out_stem).name + ".csv")
    write_csv_atomic(path, header, [{k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()}
                                    for r in records])
    return path


def _scatter_group(ax, pts: list[tuple[int, float, dict]], group: str, rng: np.random.Generator,
                   hollow: bool, level: float) -> list[dict]:
    """One group's points (filled, or hollow for the authors') and its means (the base: `level`, dotted,
    for the kit's runs); return the points' records."""
    label, colour, marker, offset = GROUPS[group]
    ns = np.array([n for n, _, _ in pts], dtype=float)
    ys = np.array([y for _, y, _ in pts])
    xs = ns + offset + rng.uniform(-_JITTER, _JITTER, len(ns))
    if hollow:
        ax.scatter(xs, ys, s=30, marker=marker, facecolors="none", edgecolors=colour, linewidths=0.9, zorder=2,
                   label=f"authors' {label} ({len(pts)})")
    else:
        ax.scatter(xs, ys, s=22, marker=marker, facecolors="white" if group == "base" else colour,
                   edgecolors=colour, alpha=0.7, linewidths=0.8, zorder=3,
                   label=f"{label} ({len(pts)} run{'s' * (len(pts) != 1)})")
    levels = sorted(set(ns))
    means = [ys[ns == n].mean() for n in levels]
    if group == "base" and not hollow:
        ax.axhline(level, color=colour, linestyle=":", linewidth=1, zorder=1)
    elif group != "base":
        ax.plot(np.array(levels) + offset, means, color=colour, linestyle="--" if hollow else "-",
                marker=None if hollow else marker, markersize=7, linewidth=0.8 if hollow else 1.5,
                zorder=2 if hollow else 4)
    who = "authors' " if hollow else ""
    return [{"group": who + label, "n": n, "x": float(x), "score": y, "split": row.get("split"),
             "treatment": run_label(row)} for (n, y, row), x in zip(pts, xs)]


def plot_transfer(rows: list[dict], out_stem: Path, runs_dir: Path | None = None,
                  overlay: list[dict] | None = None, caption: str = "") -> list[Path]:
    """Draw Figure 2 from results rows (finished ones); write out_stem.png, .pdf and .csv; return them.

    caption: the split's classes (class_caption), written under the plot."""
    out_stem = Path(out_stem)
    points = _points(rows)
    if not any(points.values()):
        where = runs_dir if runs_dir is not None else out_stem.parent
        raise KitError(f"no finished runs under {where}", "train some first: make train TREATMENT=baseA")
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    records = []
    level = baseline(rows)[0]
    for hollow, pts_by_group in ((False, points), (True, _points(overlay) if overlay else {})):
        for group, pts in pts_by_group.items():
            if pts:
                records += _scatter_group(ax, pts, group, rng, hollow, level)
    ax.set_xlim(-0.5, MAX_N + 0.5)
    ax.set_xticks(range(MAX_N + 1))
    ax.set_xlabel("Layer n at which the network is chopped and retrained")
    ax.set_ylabel("Top-1 accuracy (mean of the 10 best tests)")
    ax.set_title(_title(rows))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8, frameon=False)
    lines = caption_lines(caption, 130)  # several seeds' caption is wider than the figure
    if lines:
        fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, color="dimgrey", va="bottom")
    fig.tight_layout(rect=(0, 0.03 * len(lines), 1, 1))
    return save_both(fig, out_stem, caption) + [write_numbers(out_stem, POINT_COLUMNS, records)]
