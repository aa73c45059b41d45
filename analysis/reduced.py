"""Top-1 against the training images per class: the reduced-data runs (split `reduced<k>`).

The authors trained their 1000-class net on k = 1 ... 1300 images per class
(`reduced-0001` ... `reduced-1300`, read by analysis.original) and never
plotted it; the kit's own reduced protocol gives the same split names. Each
finished run is a point at its k on a log axis, the means per k joined by a
line; the authors' runs, as an overlay, are hollow. The points drawn are
written beside the picture as `<stem>.csv` (COLUMNS), and `summary` says in
one line what they show, from those points alone (so that a line quoting them
can be checked against the CSV).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.plots import save_both, write_numbers
from analysis.rules import run_label
from kitcore.errors import KitError
from kitcore.layout import split_protocol

COLUMNS = ("who", "images_per_class", "score", "split", "treatment", "run")
LOW = 0.01  # a score under this (1% top-1) counts as "not learned" in the summary


def images_per_class(row: dict) -> int | None:
    """k of a reduced run's row (its split `reduced<k>`), else None."""
    try:
        protocol, _, k = split_protocol(str(row.get("split")))
    except KitError:
        return None
    return k if protocol == "reduced" else None


def reduced_points(rows: list[dict], who: str = "") -> list[dict]:
    """The finished reduced runs of `rows` as COLUMNS records, sorted by k then score."""
    out = [{"who": who, "images_per_class": k, "score": float(r["score"]), "split": r["split"],
            "treatment": r.get("treatment"), "run": r.get("original_run") or f"{r['split']}/{run_label(r)}"}
           for r in rows if r.get("finished") and (k := images_per_class(r)) is not None]
    return sorted(out, key=lambda p: (p["images_per_class"], p["score"]))


def _by_k(points: list[dict]) -> dict[int, float]:
    ks = sorted({int(p["images_per_class"]) for p in points})
    return {k: float(np.mean([float(p["score"]) for p in points if int(p["images_per_class"]) == k])) for k in ks}


def summary(points: list[dict], whose: str = "") -> str:
    """One line of what the points (COLUMNS records) show: the score at the largest k, the first k from which
    every mean reaches half of it, and the ks under LOW."""
    by_k = _by_k(points)
    if not by_k:
        raise KitError("no finished reduced-data runs to summarise", "import the authors' reduced-NNNN runs "
                       "(make import-original) or train on a reduced split (make split-reduced PERCLASS=k)")
    ks = list(by_k)
    top = by_k[ks[-1]]
    half = next(k for i, k in enumerate(ks) if all(by_k[j] >= top / 2 for j in ks[i:]))
    low = [k for k in ks if by_k[k] < LOW]
    runs = len(points)
    text = (f"{whose}{runs} reduced-data run{'s' * (runs != 1)} (k = {ks[0]} ... {ks[-1]} training images per "
            f"class): top-1 {100 * top:.1f}% at k = {ks[-1]}; from k = {half} on ({100 * by_k[half]:.1f}%) "
            f"every k reaches half of that")
    if low:
        text += (f"; under {100 * LOW:.0f}% (the net did not learn) at k = {', '.join(map(str, low))} "
                 f"(at most {100 * max(by_k[k] for k in low):.2f}%)")
    return text + "."


def plot_reduced(rows: list[dict], out_stem: Path, overlay: list[dict] | None = None) -> list[Path]:
    """Draw top-1 against images per class (log axis) for the reduced runs of rows (filled; their
    `original_run` rows are the authors') and of overlay (the authors', hollow); write out_stem.png, .pdf
    and .csv; return the paths."""
    own = reduced_points([r for r in rows if not r.get("original_run")])
    authors = reduced_points([r for r in rows + (overlay or []) if r.get("original_run")], "authors'")
    if not own and not authors:
        raise KitError("no finished reduced-data runs (splits reduced<k>)",
                       "make split-reduced PERCLASS=k then make grid PROTOCOL=reduced PERCLASS=k, "
                       "or import the authors' reduced-NNNN runs with make import-original")
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for points, hollow, label, colour in ((own, False, "kit's runs", "black"),
                                         (authors, True, "authors' runs", "tab:red")):
        if not points:
            continue
        ax.scatter([p["images_per_class"] for p in points], [p["score"] for p in points], s=30,
                   facecolors="none" if hollow else colour, edgecolors=colour, zorder=3,
                   label=f"{label} ({len(points)})")
        by_k = _by_k(points)
        ax.plot(list(by_k), list(by_k.values()), color=colour, linestyle="--" if hollow else "-", linewidth=1)
    ax.set_xscale("log")
    ks = sorted({p["images_per_class"] for p in own + authors})
    labelled = [ks[0]] if ks else []
    for k in ks[1:]:
        if k >= 1.4 * labelled[-1]:  # labels apart on the log axis (750 1000 1300: 1000 unlabelled)
            labelled.append(k)
    ax.set_xticks(ks, [str(k) if k in labelled else "" for k in ks], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("Training images per class (k, log axis)")
    ax.set_ylabel("Top-1 accuracy (mean of the 10 best tests)")
    ax.set_title("Accuracy against training data: the reduced-data runs")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    line = summary(authors, "Authors' ") if authors and not own else summary(own or authors)
    fig.text(0.01, 0.005, line, fontsize=6.5, color="dimgrey", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_both(fig, out_stem, line) + [write_numbers(out_stem, COLUMNS, own + authors)]
