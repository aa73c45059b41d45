"""The paper's five findings (its Section 4.1) measured on a results table, per seed and over seeds.

Each finding is one number per random split (`random<s>`), in percentage
points, from the mean scores per treatment and layer on that split, with the
rows, groups and baseline of analysis.rules (those of Table 1 and Figure 2):
`base` is the mean of the split's base nets of the halves the transfers
target (baseB for the FA-20 grid, whose transfers all train on B; both for a
table with AnB and BnA), and its mean over the seeds is rules.baseline:

1. first layers are general: AnB - BnB at n = 1, 2 (about 0 if layers 1-2
   transfer as well as the target's own);
2. co-adaptation dip: the lowest BnB - base over n = 2..6 (negative: a dip),
   with the layer where it is lowest;
3. AnB drop at high n: AnB - base at n = 7, and the specificity part AnB - BnB
   at n = 6, 7;
4. BnB+ recovers: mean of BnB+ - base over n = 1..7;
5. AnB+ reaches or beats the base: mean of AnB+ - base over n = 1..7 (Table 1's
   first row, per seed).
Figure 3's controls, when their runs are present: the natural/man-made
transfers (AnB and BnA) at n = 7 against their own bases, and random frozen
weights at n = 1, 2 and 5 against the all-classes base.
A value a split cannot give (runs missing) is left out of the mean and spread
(mean and sample standard deviation over the seeds that have it).

Each finding's verdict (`verdicts`: shown, not shown, or not measured) is read
from those means over seeds, with TOLERANCE_PP as the size of a difference
that counts as none; findings.md and Figure 2 (bottom) both print it.

findings.md opens with the paper's fairness controls (`controls`), per seed:
(a) each base net (baseA, baseB) ends on its plateau: its last 3 tests average
at most PLATEAU_PP above the 3 before them (results column `plateau_pp`);
(b) B1B and B1B+ score within CONTROL_PP of baseB; (c) the score comes from
the plateau: a base net's SCORE_TOP best tests all lie after its solver's last
lr step (column `best_after_step`). Each holds when every seed measured holds.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from analysis.rules import base_means, by_seed, collect, seed_groups, usable
from kitcore.atomic import write_text
from kitcore.caffe_log import SCORE_TOP

TOLERANCE_PP = 1.0  # a mean difference within +-1 pp counts as none (no dip, no drop, the base reached)
PLATEAU_PP = 0.3  # control (a): a base's last 3 tests average at most this much above the 3 before
CONTROL_PP = 0.6  # control (b): B1B and B1B+ within this much of baseB


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _at(groups: dict, group: str, n: int) -> float:
    return _mean(groups[group].get(n, []))


def split_measures(groups: dict) -> dict[str, float]:
    """Every measure (percentage points) of one random split's pooled groups."""
    base = _mean(groups["base"].get(0, []))
    pp = 100.0
    dips = [(_at(groups, "BnB", n) - base, n) for n in range(2, 7) if not math.isnan(_at(groups, "BnB", n))]
    dip, dip_n = min(dips) if dips else (math.nan, None)
    return {
        "base": base * pp,
        "general": _mean([_at(groups, "AnB", n) - _at(groups, "BnB", n) for n in (1, 2)]) * pp,
        "dip": dip * pp, "dip_n": float(dip_n) if dip_n else math.nan,
        "anb7": (_at(groups, "AnB", 7) - base) * pp,
        "specific": _mean([_at(groups, "AnB", n) - _at(groups, "BnB", n) for n in (6, 7)]) * pp,
        "bnbplus": _mean([_at(groups, "BnB+", n) - base for n in range(1, 8)]) * pp,
        "anbplus": _mean([_at(groups, "AnB+", n) - base for n in range(1, 8)]) * pp,
    }


MEASURES = (  # (key, finding number, what it measures)
    ("base", 0, "base nets of the target halves: top-1 accuracy, %"),
    ("general", 1, "first layers general: AnB - BnB at n = 1, 2 (pp)"),
    ("dip", 2, "co-adaptation dip: lowest BnB - base over n = 2..6 (pp)"),
    ("dip_n", 2, "... at layer n"),
    ("anb7", 3, "AnB drop: AnB - base at n = 7 (pp)"),
    ("specific", 3, "specificity: AnB - BnB at n = 6, 7 (pp)"),
    ("bnbplus", 4, "BnB+ recovers: BnB+ - base, mean over n = 1..7 (pp)"),
    ("anbplus", 5, "AnB+ vs base: AnB+ - base, mean over n = 1..7 (pp)"),
)


def _figure3_controls(rows: list[dict]) -> list[tuple[str, float]]:
    """Figure 3's controls: natman transfers at n = 7 and random frozen weights, against their own bases (pp)
    (analysis.rules' Figure 3 pieces and base means)."""
    pieces, bases = collect(rows), base_means(rows)

    def at(piece: str, split: str, n: int, source=None, target=None) -> float:
        return _mean([float(r["score"]) for r in pieces[piece] if r.get("split") == split and int(r["n"]) == n
                      and (source is None or (r.get("source"), r.get("target")) == (source, target))])
    out = []
    for source, target in (("A", "B"), ("B", "A")):
        direction = "natural to man-made" if source == "A" else "man-made to natural"
        out.append((f"natman {source}7{target} - base{target} ({direction}, pp)",
                    (at("natman", "natman", 7, source, target) - bases.get(("natman", target), math.nan)) * 100))
    for n in (1, 2, 5):
        out.append((f"random frozen weights: randfrozen{n} - base of all classes (pp)",
                    (at("random", "all", n) - bases.get(("all", "all"), math.nan)) * 100))
    return [(label, v) for label, v in out if not math.isnan(v)]


def _spread(values: list[float]) -> dict:
    """{values, mean, sd}: mean and sample sd over the values that are not nan."""
    present = [v for v in values if not math.isnan(v)]
    return {"values": values, "mean": _mean(present),
            "sd": statistics.stdev(present) if len(present) > 1 else math.nan}


def findings(rows: list[dict]) -> tuple[list[int], list[dict]]:
    """(seeds, one dict per measure with its label, per-seed values, mean and sd)."""
    groups = seed_groups(rows)
    seeds = sorted(groups)
    per_seed = {s: split_measures(groups[s]) for s in seeds}
    out = [{"key": key, "finding": number, "label": label, **_spread([per_seed[s][key] for s in seeds])}
           for key, number, label in MEASURES]
    for label, value in _figure3_controls(rows):
        out.append({"key": "control", "finding": None, "label": label, "values": [math.nan] * len(seeds),
                    "mean": value, "sd": math.nan})
    return seeds, out


CONTROLS = (  # (key, control, what it measures)
    ("plateau_A", "a", "baseA on its plateau: mean of its last 3 tests - the 3 before (pp)"),
    ("plateau_B", "a", "baseB on its plateau: mean of its last 3 tests - the 3 before (pp)"),
    ("baseB", "b", "baseB: top-1 accuracy, %"),
    ("b1b", "b", "B1B - baseB (pp)"),
    ("b1bplus", "b", "B1B+ - baseB (pp)"),
    ("after_step", "c", f"fewest of the {SCORE_TOP} best tests after the last lr step (base nets)"),
)


def _num(value) -> float:
    return math.nan if value is None else float(value)


def seed_controls(rows: list[dict], keep=usable) -> dict[str, float]:
    """Every control measure of one split's rows that `keep` keeps (a random split's usable rows; nan where its
    runs are missing)."""
    rows = [r for r in rows if keep(r)]
    bases = {t: [r for r in rows if r.get("kind") == "base" and r.get("target") == t] for t in "AB"}

    def b1b(finetuned: bool) -> float:
        return _mean([float(r["score"]) for r in rows if r.get("kind") == "transfer" and int(r["n"]) == 1
                      and (r.get("source"), r.get("target"), bool(r.get("finetuned"))) == ("B", "B", finetuned)])
    base_b = _mean([float(r["score"]) for r in bases["B"]])
    after = [v for r in bases["A"] + bases["B"] if not math.isnan(v := _num(r.get("best_after_step")))]
    return {"plateau_A": _mean([_num(r.get("plateau_pp")) for r in bases["A"]]),
            "plateau_B": _mean([_num(r.get("plateau_pp")) for r in bases["B"]]),
            "baseB": base_b * 100, "b1b": (b1b(False) - base_b) * 100, "b1bplus": (b1b(True) - base_b) * 100,
            "after_step": float(min(after)) if after else math.nan}


def _control_verdict(name: str, found: list[tuple[float, int, str]], missing: list[str], held, detail) -> str:
    """`(x) name: held|not held|not measured (detail[; not measured: ...])` from (value, seed, run) triples."""
    if not found:
        return f"{name}: not measured"
    word = "held" if all(held(v) for v, _, _ in found) else "not held"
    return f"{name}: {word} ({detail}" + (f"; not measured: {', '.join(missing)}" if missing else "") + ")"


def controls(rows: list[dict]) -> tuple[list[int], list[dict], list[str]]:
    """(seeds, one dict per control measure with its label, per-seed values, mean and sd, the verdict lines)."""
    rows_of = by_seed(rows)
    seeds = sorted(rows_of)
    per_seed = {s: seed_controls(rows_of[s]) for s in seeds}
    measures = [{"key": key, "control": c, "label": label, **_spread([per_seed[s][key] for s in seeds])}
                for key, c, label in CONTROLS]

    def triples(keys: dict[str, str]) -> tuple[list[tuple[float, int, str]], list[str]]:
        found = [(per_seed[s][k], s, run) for s in seeds for k, run in keys.items() if not math.isnan(per_seed[s][k])]
        return found, [f"seed {s} {run}" for s in seeds for k, run in keys.items() if math.isnan(per_seed[s][k])]

    lines = []
    found, missing = triples({"plateau_A": "baseA", "plateau_B": "baseB"})
    v, s, run = max(found, default=(0, 0, ""))
    lines.append(_control_verdict("(a) bases on their plateau", found, missing, lambda x: round(x, 9) <= PLATEAU_PP,
                                  f"worst: {_fmt(v)} pp, seed {s}, {run}"))
    found, missing = triples({"b1b": "B1B", "b1bplus": "B1B+"})
    v, s, run = max(found, key=lambda t: abs(t[0]), default=(0, 0, ""))
    sd = {m["key"]: m["sd"] for m in measures}["baseB"]
    # the rule: within CONTROL_PP, or within the seed-to-seed spread of baseB where that is larger
    bound = CONTROL_PP if math.isnan(sd) or sd <= CONTROL_PP else sd
    which = (f"within {CONTROL_PP:g} pp" if all(round(abs(x), 9) <= CONTROL_PP for x, _, _ in found)
             else f"not within {CONTROL_PP:g} pp; bound: the seed-to-seed sd of baseB" if bound > CONTROL_PP
             else f"not within {CONTROL_PP:g} pp")
    lines.append(_control_verdict(f"(b) B1B and B1B+ within {CONTROL_PP:g} pp of baseB (or within the seed-to-seed "
                                  "sd of baseB, if larger)", found, missing,
                                  lambda x: round(abs(x), 9) <= bound,
                                  f"worst: {_fmt(v)} pp, seed {s}, {run}: {which}; seed-to-seed sd of baseB: "
                                  + ("n/a" if math.isnan(sd) else f"{sd:.2f} pp")))
    found, missing = triples({"after_step": "base nets"})
    v, s, _ = min(found, default=(0, 0, ""))
    lines.append(_control_verdict(f"(c) the {SCORE_TOP} best tests after the last lr step", found, missing,
                                  lambda x: x >= SCORE_TOP, f"fewest: {v:.0f} of {SCORE_TOP}, seed {s}"))
    return seeds, measures, lines


# finding: (what it says, the measures it is read from, whether their means over seeds show it)
VERDICTS = {
    1: ("first layers general", ("general",), lambda m: abs(m["general"]) <= TOLERANCE_PP),
    2: ("co-adaptation dip of BnB", ("dip",), lambda m: m["dip"] < -TOLERANCE_PP),
    3: ("AnB drop at high n", ("anb7", "specific"),
        lambda m: m["anb7"] < -TOLERANCE_PP and m["specific"] < -TOLERANCE_PP),
    4: ("BnB+ recovers the base", ("bnbplus",), lambda m: m["bnbplus"] >= -TOLERANCE_PP),
    5: ("AnB+ reaches or beats the base", ("anbplus",), lambda m: m["anbplus"] >= -TOLERANCE_PP),
}


def _measured(m: dict, at: dict | None = None) -> str:
    """`<formula>: <mean> pp, sd <sd>[, at n = <layer>]` (or `: no runs`) of one measure, its label less its name."""
    text = f"{m['label'].split(': ', 1)[-1].removesuffix(' (pp)')}: "
    if math.isnan(m["mean"]):
        return text + "no runs"
    text += f"{_fmt(m['mean'])} pp" + ("" if math.isnan(m["sd"]) else f", sd {m['sd']:.2f}")
    return text + ("" if at is None or math.isnan(at["mean"]) else f", at n = {at['mean']:.0f}")


def verdicts(rows: list[dict]) -> list[dict]:
    """Each finding's verdict from the means over seeds: {finding, name, shown (None: runs missing), text}."""
    _, measures = findings(rows)
    by = {m["key"]: m for m in measures if m["key"] != "control"}
    out = []
    for number, (name, keys, shows) in VERDICTS.items():
        means = {k: by[k]["mean"] for k in keys}
        shown = None if any(math.isnan(v) for v in means.values()) else bool(shows(means))
        word = {True: "shown", False: "not shown", None: "not measured"}[shown]
        parts = "; ".join(_measured(by[k], by["dip_n"] if k == "dip" else None) for k in keys)
        out.append({"finding": number, "name": name, "shown": shown, "text": f"{number}. {name}: {word} ({parts})"})
    return out


def _fmt(v: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.{digits}f}"


def _controls_markdown(rows: list[dict]) -> list[str]:
    """The Controls section of findings.md: the per-seed table, then a verdict line per control."""
    seeds, measures, lines = controls(rows)
    out = ["**Controls** (the paper's fairness checks, per seed; seeds: random splits in the table)", "",
           "| # | control | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |",
           "|---|---|" + "---|" * (len(seeds) + 2)]
    for m in measures:
        if m["key"] == "after_step":
            cells = ["n/a" if math.isnan(v) else f"{v:.0f}" for v in m["values"]]
            mean = "n/a" if math.isnan(m["mean"]) else f"{m['mean']:.1f}"
        else:
            cells = [_fmt(v).lstrip("+") if m["key"] == "baseB" else _fmt(v) for v in m["values"]]
            mean = _fmt(m["mean"]).lstrip("+") if m["key"] == "baseB" else _fmt(m["mean"])
        sd = "" if math.isnan(m["sd"]) else f"{m['sd']:.2f}"
        out.append(f"| {m['control']} | {m['label']} | " + " | ".join(cells) + f" | {mean} | {sd} |")
    return out + ["", f"Control verdicts (held: on every seed measured; a base's last 3 tests at most "
                      f"{PLATEAU_PP:g} pp above the 3 before, B1B and B1B+ within {CONTROL_PP:g} pp of baseB or, where "
                      "larger, the seed-to-seed sd of baseB):",
                  "", *(f"- {line}" for line in lines), ""]  # a list: each verdict on its own line


def to_markdown(rows: list[dict], title: str = "The paper's findings") -> str:
    """The controls, then the findings as a Markdown table: one row per measure, one column per seed, mean, sd."""
    seeds, measures = findings(rows)
    head = "| # | measure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |"
    lines = _controls_markdown(rows) + [f"**{title}** (percentage points; seeds: random splits in the table)", "",
                                        head, "|---|---|" + "---|" * (len(seeds) + 2)]
    for m in measures:
        digits = 0 if m["key"] == "dip_n" else 2
        cells = ["" if m["key"] == "control" else _fmt(v, digits).lstrip("+") if m["key"] in ("base", "dip_n")
                 else _fmt(v, digits) for v in m["values"]]
        mean = _fmt(m["mean"], digits)
        if m["key"] in ("base", "dip_n"):
            mean = mean.lstrip("+")
        sd = "" if math.isnan(m["sd"]) else f"{m['sd']:.2f}"
        lines.append(f"| {m['finding'] or ''} | {m['label']} | " + " | ".join(cells) + f" | {mean} | {sd} |")
    lines += ["", f"Verdicts (means over the seeds; a difference within {TOLERANCE_PP:g} pp counts as none):", ""]
    lines += [v["text"] for v in verdicts(rows)]
    return "\n".join(lines) + "\n"


def write_findings(rows: list[dict], out_stem: Path) -> Path:
    """Write out_stem.md; return it."""
    path = Path(out_stem).with_suffix(".md")
    write_text(path, to_markdown(rows))
    return path
