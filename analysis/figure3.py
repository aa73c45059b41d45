"""The paper's Figure 3: dissimilar tasks, random frozen weights, and both against random-split AnB.

Pieces, each read from results rows (finished, with a score) by analysis.rules
(`collect`, `piece_of`, `base_means`: the rules the findings' Figure 3
controls read too):
- natman transfer: split `natman`, frozen transfers (kind transfer, not
  fine-tuned) and that split's bases; lines join a target's base and its
  transfers (the authors' natman A is natural, B man-made);
- random frozen weights: kind `random-weights` (first n layers random and
  frozen, `randfrozen{n}`) and the bases of the same split (`all`);
- random-split AnB: frozen transfers with source != target on `random<s>` splits.
Bottom panel: every piece normalized by its own base, i.e. a run's score minus
the mean score of the base runs on the same split with the same target; natman's
two directions (AnB, BnA) are series of their own, since their bases differ.
A piece with no runs is drawn as absent and named in the returned list.
Every point drawn is written beside the picture as `<stem>.csv` (COLUMNS):
panel `natman` or `random` (top; a base point is its split's base mean, at
n = 0) or `normalized` (bottom), series as in the legend (the authors' runs
`authors' ...`), n, value, and the run's split and treatment (a replicate's
run folder name, `A3B.r2`: rules.run_label); then, for each of the kit's
series and n, a row of treatment `mean`: the mean the line joins, its units
and its 95% interval `lo, hi` (the error bar; analysis.intervals), over the
splits (seeds) where a level has several, a split's replicates averaged first,
else over the runs of its one split (natman's and the random weights'
replicates). A level of one unit has no bar (lo, hi blank).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis import intervals
from analysis.plots import MAX_N, caption_lines, save_both, write_numbers
from analysis.rules import base_means, collect, replicate_bases, run_label

COLUMNS = ("panel", "series", "n", "value", "split", "treatment", "units", "lo", "hi")
MEAN = "mean"  # the treatment column of a level's mean row
# piece: (label, colour, marker)
PIECES = {
    "natman": ("natman transfer (XnY, dissimilar)", "tab:orange", "h"),
    "random": ("random frozen weights (randfrozen{n})", "tab:gray", "s"),
    "anb": ("random-split AnB (similar)", "tab:red", "D"),
}


def level_interval(points: list[tuple[str | None, float]]) -> intervals.Interval:
    """The Interval of one level's (split, value) points: over the splits when there are several (each split's
    values averaged first), else over the values of its one split (replicates)."""
    by_split: dict[str | None, list[float]] = {}
    for split, value in points:
        by_split.setdefault(split, []).append(value)
    if len(by_split) > 1:
        return intervals.interval([float(np.mean(v)) for v in by_split.values()])
    return intervals.interval([v for vs in by_split.values() for v in vs])


def _line(ax, pts: list[tuple], colour: str, marker: str, label: str | None, hollow: bool, panel: str) -> list[dict]:
    """Draw (n, value, split, treatment) points and the line of their level means, with 95% error bars for the
    kit's (level_interval); return the points' records and, for the kit's, each level's mean row."""
    if not pts:
        return []
    ns = np.array([p[0] for p in pts], dtype=float)
    ys = np.array([p[1] for p in pts])
    face = "none" if hollow else colour
    ax.scatter(ns, ys, s=22, marker=marker, facecolors=face, edgecolors=colour, alpha=0.8, zorder=3)
    levels = sorted({p[0] for p in pts})
    ivs = [level_interval([(p[2], p[1]) for p in pts if p[0] == n]) for n in levels]
    means = [iv.mean for iv in ivs]
    if hollow:
        ax.plot(levels, means, color=colour, marker=marker, markersize=6, markerfacecolor=face, linestyle="--",
                linewidth=0.9, label=label, zorder=4)
    else:
        bars = [[0 if np.isnan(iv.lo) else iv.mean - iv.lo for iv in ivs],
                [0 if np.isnan(iv.hi) else iv.hi - iv.mean for iv in ivs]]
        ax.errorbar(levels, means, yerr=bars, color=colour, marker=marker, markersize=6, capsize=3,
                    linewidth=1.5, label=label, zorder=4)
    records = [{"panel": panel, "series": label, "n": n, "value": y, "split": split, "treatment": treatment}
               for n, y, split, treatment in pts]
    return records + ([] if hollow else [
        {"panel": panel, "series": label, "n": n, "value": iv.mean, "split": "", "treatment": MEAN, "units": iv.n,
         "lo": "" if np.isnan(iv.lo) else iv.lo, "hi": "" if np.isnan(iv.hi) else iv.hi}
        for n, iv in zip(levels, ivs)])


def _levels(records: list[dict], series: str) -> dict[int, intervals.Interval]:
    """A bottom-panel series' Interval per n in pp, from the CSV's run rows (mean rows left out)."""
    by_n: dict[int, list] = {}
    for r in records:
        if r["panel"] == "normalized" and r["series"] == series and r.get("treatment") != MEAN:
            by_n.setdefault(int(r["n"]), []).append((r.get("split"), 100 * float(r["value"])))
    return {n: level_interval(points) for n, points in sorted(by_n.items())}


def summary(records: list[dict]) -> str:
    """What the bottom panel shows, from the figure's CSV records: each series' mean and 95% interval (pp, minus
    its own base; level_interval) at n = 1 and at n = 7, and its lowest mean with the layer; the authors' series
    are left out."""
    parts = []
    for series in [name for *_, name, _ in NATMAN_SERIES] + [PIECES[p][0] for p in PIECES if p != "natman"]:
        if not (levels := _levels(records, series)):
            continue
        low = min(levels, key=lambda n: levels[n].mean)
        ends = ", ".join(f"n = {n}: {levels[n].text()}" for n in (1, 7) if n in levels)
        parts.append(f"{series}: {ends}; lowest {levels[low].mean:+.2f} at n = {low}")
    return ("Figure 3 (bottom), each run minus its own base, in pp (mean [95% interval] over the seeds, or over "
            "the replicates of a series' one split): " + "; ".join(parts) + "." if parts else "")


def paper_contrast(records: list[dict]) -> str:
    """One sentence on where the random-weights curve differs from the paper's (labelled as the paper's): its
    Figure 3 falls to near chance from n = 3 on; here, each layer's mean minus its base, from the CSV records."""
    if not (levels := _levels(records, PIECES["random"][0])):
        return ""
    means = {n: iv.mean for n, iv in levels.items()}
    kept = [n for n in means if n >= 3 and means[n] > -20]  # n >= 3 within 20 pp of the base: not near chance
    runs = max(iv.n for iv in levels.values())
    low = min(means, key=means.get)
    where = (f"here randfrozen3 to randfrozen{max(kept)} stay within {-min(means[n] for n in kept):.0f} pp of their "
             "base" if kept else "here too every n >= 3 loses more than 20 pp")
    return (f"The paper's random frozen weights fall to near chance from n = 3 on (its Figure 3); {where}, and "
            f"the lowest is {levels[low].text(1)} pp at n = {low} ({runs} run{'s' * (runs != 1)} per n).")


def _absent(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="grey")


def _top_panel(ax, rows: list[dict], bases: dict, piece: str, hollow: bool) -> list[dict]:
    label, colour, marker = PIECES[piece]
    targets = sorted({str(r.get("target")) for r in rows})
    shades = ["tab:orange", "tab:brown", "tab:gray"]
    records = []
    for i, target in enumerate(targets):
        c = colour if piece == "random" else shades[i % len(shades)]
        mine = [r for r in rows if str(r.get("target")) == target]
        pts = [(int(r["n"]), float(r["score"]), r.get("split"), run_label(r)) for r in mine]
        pts += [(0, bases[k], k[0], "base mean") for k in sorted({(str(r["split"]), target) for r in mine})
                if k in bases]
        who = "authors' " if hollow else ""
        records += _line(ax, sorted(pts, key=lambda p: p[:2]), c, marker, f"{who}target {target}", hollow, piece)
    return records


def _normalized(pieces: dict[str, list[dict]], bases: dict, own: dict) -> dict[str, list[tuple]]:
    """Each run minus its unit's base: on a piece of one split, whose units are its replicates, the base of the
    run's own replicate where there is one (rules.replicate_bases; as the verdicts' Figure 3 controls pair
    them); else, where a split (seed) is the unit, its base mean."""
    def base(r: dict, one_split: bool) -> float:
        key = (str(r["split"]), str(r["target"]))
        return own.get((*key, int(r.get("repeat") or 0)), bases[key]) if one_split else bases[key]

    out = {}
    for piece, rows in pieces.items():
        one = len({r.get("split") for r in rows}) == 1
        out[piece] = sorted(((int(r["n"]), float(r["score"]) - base(r, one), r.get("split"), run_label(r))
                             for r in rows if (str(r["split"]), str(r["target"])) in bases), key=lambda p: p[:2])
    return out


NATMAN_SERIES = (("A", "B", "natman AnB (A to B)", "tab:brown"),  # the top panel's colours: target B brown,
                 ("B", "A", "natman BnA (B to A)", "tab:orange"))  # target A orange


def _series(piece: str, pts: list[tuple]) -> list[tuple[str, str, str, list[tuple]]]:
    """The bottom panel's series of a piece: natman's two directions apart (their bases differ), else one."""
    label, colour, marker = PIECES[piece]
    if piece != "natman":
        return [(label, colour, marker, pts)]
    return [(name, shade, marker, mine) for source, target, name, shade in NATMAN_SERIES
            if (mine := [p for p in pts if p[3].split(".")[0][:1] == source and p[3].split(".")[0][-1:] == target])]


def plot_figure3(rows: list[dict], out_stem: Path, overlay: list[dict] | None = None,
                 caption: str = "") -> tuple[list[Path], list[str]]:
    """Draw Figure 3 from results rows; return (png, pdf and csv paths, or [] when no piece exists; absent pieces)."""
    sets = [(rows, False)] + ([(overlay, True)] if overlay else [])
    collected = [(collect(r), base_means(r), replicate_bases(r), hollow) for r, hollow in sets]
    absent = [f"figure3 {PIECES[p][0]}: no runs" for p in PIECES if not collected[0][0][p]]
    if not any(collected[0][0].values()):
        return [], absent
    fig = Figure(figsize=(9, 7.5))
    grid = fig.add_gridspec(2, 2)
    tl, tr, bottom = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    records = []
    for ax, piece, title in ((tl, "natman", "Dissimilar tasks (natman; A natural in the authors' runs)"),
                             (tr, "random", "Random frozen weights, first n layers")):
        drawn = False
        for pieces, bases, _, hollow in collected:
            drawn |= bool(pieces[piece])
            records += _top_panel(ax, pieces[piece], bases, piece, hollow)
        if not collected[0][0][piece]:
            _absent(ax, f"absent: no {PIECES[piece][0]} runs")
        ax.set_title(title, fontsize=9)
        if drawn:
            ax.legend(fontsize=7, frameon=False)
    for pieces, bases, own, hollow in collected:
        for piece, pts in _normalized(pieces, bases, own).items():
            for label, colour, marker, mine in _series(piece, pts):
                records += _line(bottom, mine, colour, marker, ("authors' " if hollow else "") + label, hollow,
                                 "normalized")
    unnormalized = [p for p in PIECES if collected[0][0][p] and not _normalized(*collected[0][:3])[p]]
    absent += [f"figure3 bottom {PIECES[p][0]}: no base run to normalize by" for p in unnormalized]
    bottom.axhline(0, color="black", linestyle=":", linewidth=1)
    bottom.set_title("Each normalized by its own base (score minus base mean); bars: 95% intervals (over the "
                     "seeds, or one split's replicates)", fontsize=9)
    bottom.set_ylabel("relative top-1 accuracy")
    if bottom.get_legend_handles_labels()[0]:
        bottom.legend(fontsize=7, frameon=False, loc="lower left")
    for ax in (tl, tr, bottom):
        ax.set_xlim(-0.5, MAX_N + 0.5)
        ax.set_xticks(range(MAX_N + 1))
        ax.set_xlabel("Layer n", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    tl.set_ylabel("top-1 accuracy")
    if absent:
        fig.text(0.01, 0.005, "absent: " + "; ".join(a.removeprefix("figure3 ") for a in absent), fontsize=7,
                 color="grey")
    lines = caption_lines(caption, 160, parts=True)  # a line a split, if it fits
    if lines:
        fig.text(0.01, 0.995, "\n".join(lines), fontsize=7, color="dimgrey", va="top")
    fig.tight_layout(rect=(0, 0.02, 1, 1 - 0.018 * len(lines) if lines else 1))
    return save_both(fig, out_stem, caption) + [write_numbers(out_stem, COLUMNS, records)], absent
