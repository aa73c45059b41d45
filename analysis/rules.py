"""The one set of rules by which Figure 2, Figure 3, Table 1 and the findings read a results table.

- `scored(row)`: a finished run with a score whose loss never became NaN
  (`diverged_at` empty). `usable(row)`: a scored run on a
  random A/B split `random<s>` (kitcore.layout.split_seed): the rows of
  Figure 2, Table 1 and the findings.
- `group_of(row, targets)`: the paper's group (its footnote 3, Section 4.1;
  `base2x`: a base net trained for twice the iterations, baseB2x, never the
  baseline):
  a transfer XnY with X == Y is a selffer, `BnB` (AnA pooled with BnB), one
  with X != Y is `AnB` (BnA pooled with AnB), `+` when fine-tuned; a base net
  is `base` when its half is one of `targets`.
- `grouped(rows)`: (group, n, row) of every usable row in a group. A base net
  is the baseline only of the half the transfers on its own split target (the
  FA-20 grid trains transfers to B only: a harder baseA must not pull "base"
  down); on a split with no transfers, the halves the table's transfers
  target; in a table with no transfers at all, every half.
- `baseline(rows)`: the base every comparison uses (Figure 2's dotted level
  and its bottom panel's base point, Table 1's "over baseB", the findings'
  "base"): the mean of each split's baseline nets, then the mean over the
  splits, so each seed weighs the same however many base nets it has.
- Figure 3's pieces (`piece_of`, `collect`) and the bases each is normalized
  by (`base_means`), and the findings' Figure 3 controls (`figure3_controls`:
  natman at n = 7, random frozen weights at n = 1, 2, 5, each against its own
  base, one value per replicate).
- A treatment's replicates (rows with `repeat` r >= 1, runs `<treatment>.r<r>`)
  are runs like any other: each is a point, and every mean above pools them
  with the treatment's r = 0 run; `run_label` names a row's run.
"""
from __future__ import annotations

import math

from kitcore.layout import run_name, split_seed

GROUPS = ("base", "BnB", "BnB+", "AnB", "AnB+", "base2x")  # base2x: baseB2x, the base trained twice as long
PIECES = ("natman", "random", "anb")  # Figure 3: natman transfer, random frozen weights, random-split AnB


def mean(values: list[float]) -> float:
    """The plain mean (nan for no values)."""
    return sum(values) / len(values) if values else math.nan


def scored(row: dict) -> bool:
    """Whether a results row is a finished run with a score."""
    value = row.get("score")
    if row.get("diverged_at") not in (None, ""):  # its loss became NaN: the score predates the divergence
        return False
    return row.get("finished", True) is not False and value is not None and not math.isnan(float(value))


def seed_of(row: dict) -> int | None:
    """The seed of the row's random split (`random3` -> 3), None for any other split."""
    return split_seed(str(row.get("split") or ""))


def usable(row: dict) -> bool:
    """Whether a results row is a finished run with a score on a random A/B split."""
    return seed_of(row) is not None and scored(row)


def by_seed(rows: list[dict]) -> dict[int, list[dict]]:
    """The rows of each random split `random<s>` (usable or not), by seed s."""
    out: dict[int, list[dict]] = {}
    for row in rows:
        if (seed := seed_of(row)) is not None:
            out.setdefault(seed, []).append(row)
    return out


def group_of(row: dict, targets: set | frozenset = frozenset()) -> str | None:
    """The paper group of a results row: base, BnB, BnB+, AnB or AnB+; None for any other kind, and for the
    base net of a half outside `targets` (the halves the transfers target; empty: every half)."""
    if row.get("kind") == "base":
        if targets and row.get("target") not in targets:
            return None
        return "base" if int(row.get("budget") or 1) == 1 else "base2x"
    if row.get("kind") != "transfer":
        return None
    return ("BnB" if row.get("source") == row.get("target") else "AnB") + ("+" if row.get("finetuned") else "")


def grouped(rows: list[dict]) -> list[tuple[str, int, dict]]:
    """(group, n, row) of every usable row in a paper group, in the rows' order; n is 0 for a base net."""
    rows = list(filter(usable, rows))
    transfers = [row for row in rows if row.get("kind") == "transfer"]
    everywhere = {row.get("target") for row in transfers}
    per_seed: dict[int, set] = {}
    for row in transfers:
        per_seed.setdefault(seed_of(row), set()).add(row.get("target"))
    out = []
    for row in rows:
        group = group_of(row, per_seed.get(seed_of(row)) or everywhere)
        if group is not None:
            out.append((group, 0 if group == "base" else int(row["n"]), row))
    return out


def _scores(entries) -> dict[str, dict[int, list[float]]]:
    groups: dict[str, dict[int, list[float]]] = {g: {} for g in GROUPS}
    for group, n, row in entries:
        groups[group].setdefault(n, []).append(float(row["score"]))
    return groups


def pooled_groups(rows: list[dict]) -> dict[str, dict[int, list[float]]]:
    """Scores of the usable rows by paper group and layer n, all splits pooled (see grouped)."""
    return _scores(grouped(rows))


def seed_groups(rows: list[dict]) -> dict[int, dict[str, dict[int, list[float]]]]:
    """pooled_groups of each random split, by seed (every seed with a row; grouped decides the baseline)."""
    entries = grouped(rows)
    return {s: _scores(e for e in entries if seed_of(e[2]) == s) for s in sorted(by_seed(rows))}


def baseline(rows: list[dict]) -> tuple[float, int]:
    """(value, number of base runs) of the baseline: the mean over splits of each split's baseline mean."""
    bases = [groups["base"][0] for groups in seed_groups(rows).values() if groups["base"].get(0)]
    return mean([mean(b) for b in bases]), sum(map(len, bases))


def piece_of(row: dict) -> str | None:
    """The Figure 3 piece a results row belongs to (None: not in that figure, or a base)."""
    kind = row.get("kind")
    if kind == "random-weights":
        return "random"
    if kind != "transfer" or row.get("finetuned"):
        return None
    if row.get("split") == "natman":
        return "natman"
    if seed_of(row) is not None and row.get("source") != row.get("target"):
        return "anb"
    return None


def collect(rows: list[dict]) -> dict[str, list[dict]]:
    """The scored rows of each Figure 3 piece."""
    out: dict[str, list[dict]] = {p: [] for p in PIECES}
    for row in filter(scored, rows):
        if piece := piece_of(row):
            out[piece].append(row)
    return out


def _base_means(rows: list[dict], key) -> dict[tuple, float]:
    """Mean score of the scored base runs (group_of: never baseB2x) by key(row)."""
    acc: dict[tuple, list[float]] = {}
    for row in filter(scored, rows):
        if group_of(row) == "base":
            acc.setdefault(key(row), []).append(float(row["score"]))
    return {k: mean(v) for k, v in acc.items()}


def base_means(rows: list[dict]) -> dict[tuple[str, str], float]:
    """Mean score of the scored base runs by (split, target): what Figure 3 normalizes each run by."""
    return _base_means(rows, lambda r: (str(r.get("split")), str(r.get("target"))))


def replicate_bases(rows: list[dict]) -> dict[tuple[str, str, int], float]:
    """Mean score of the scored base runs by (split, target, replicate number): the base a one-split piece of
    Figure 3 pairs each replicate with."""
    return _base_means(rows, lambda r: (str(r.get("split")), str(r.get("target")), int(r.get("repeat") or 0)))


def run_label(row: dict):
    """The run a results row comes from, as its folder is named: the treatment, `A3B.r2` for replicate 2."""
    repeat = int(row.get("repeat") or 0)
    return run_name(str(row.get("treatment")), repeat) if repeat else row.get("treatment")


def _per_repeat(rows: list[dict], keep) -> dict[int, float]:
    """Mean score by replicate number of the rows that `keep` keeps."""
    out: dict[int, list[float]] = {}
    for r in rows:
        if keep(r):
            out.setdefault(int(r.get("repeat") or 0), []).append(float(r["score"]))
    return {k: mean(v) for k, v in out.items()}


def figure3_controls(rows: list[dict]) -> list[dict]:
    """Figure 3's controls against their own bases (pp), one value per replicate: {key, label, claim, values}."""
    pieces = collect(rows)
    bases, paired = base_means(rows), replicate_bases(rows)
    out = []

    def add(key: str, label: str, piece: str, split: str, n: int, pair=None, target: str = "all") -> None:
        runs = _per_repeat(pieces[piece], lambda r: r.get("split") == split and int(r["n"]) == n and (
            pair is None or (r.get("source"), r.get("target")) == pair))
        own = {k[2]: v for k, v in paired.items() if k[:2] == (split, target)}  # as Figure 3 pairs them
        fallback = bases.get((split, target), math.nan)
        values = [(v - own.get(k, fallback)) * 100 for k, v in sorted(runs.items())]
        if values and not all(math.isnan(v) for v in values):
            out.append({"key": key, "label": label, "claim": "-", "values": values})
    for source, target in (("A", "B"), ("B", "A")):
        direction = "natural to man-made" if source == "A" else "man-made to natural"
        add(f"natman_{source}7{target}", f"natman {source}7{target} - base{target} ({direction}, pp)", "natman",
            "natman", 7, (source, target), target)
    for n in (1, 2, 5):
        add(f"randfrozen{n}", f"random frozen weights: randfrozen{n} - base of all classes (pp)", "random", "all", n)
    return out
