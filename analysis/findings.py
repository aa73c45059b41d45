"""The paper's findings (its Section 4.1, numbered as the paper numbers them), measured per seed, with intervals.

Each measure is one number per random split (`random<s>`), in percentage
points, from the mean scores per treatment and layer on that split (a
seed's replicates are pooled into those means first), with the rows, groups
and baseline of analysis.rules (those of Table 1 and Figure 2): `base` is
the mean of the split's base nets of the halves the transfers target (baseB
for the FA-20 grid). Over the seeds each measure gets its mean and 95%
interval, and each claim its verdict, from analysis.intervals (the one place
that owns the method, the margin and the verdict words). The findings, as
the paper's Section 4.1 numbers them:

1. baseB's level: the base nets' top-1 (a description, no claim);
2. the co-adaptation dip of BnB, "layers 3, 4, 5, and 6, particularly 4 and 5":
   BnB - base, mean over n = 3..6 (claim: negative), and over n = 4, 5; the
   layer where the seed's BnB is lowest is a description, not a test (the
   lowest of five noisy numbers is biased downwards);
3. BnB+ recovers the base: BnB+ - base, mean over n = 1..7 (claim: none);
4. AnB: layers 1-2 transfer (AnB - BnB at n = 1, 2; claim: none) and a drop at
   high n (AnB - base at n = 7, and the specificity part AnB - BnB at n = 6, 7;
   claim: negative);
5. AnB+ generalizes better: AnB+ - base and AnB+ - BnB+ (Table 1's two
   columns, layer means over n = 1..7; claim: positive).
A finding with several measures is shown when each is, opposite when one is,
none when each is, partly shown when some are, else inconclusive. Where
baseB2x runs (a base trained as long as a transfer's base and the transfer
together) are there, 3 and 5 are also read against it (AS_LONG).
Figure 3's controls, when their runs are present, are measured over their
replicates (the natural/man-made transfers at n = 7 against their own
bases, random frozen weights at n = 1, 2, 5 against the all-classes base).

findings.md opens with the paper's fairness controls (`controls`), per seed:
(a) each base net ends on its plateau: the interval of its last 3 tests'
climb over the 3 before lies below PLATEAU_PP; (b) B1B and B1B+ are shown to
score like baseB (within the margin); (c) the score comes from the plateau:
a base net's SCORE_TOP best tests all lie after its solver's last lr step,
on every seed.
"""
from __future__ import annotations

import math
from pathlib import Path

from analysis import intervals as iv
from analysis.rules import by_seed, figure3_controls, seed_groups, usable
from kitcore.atomic import write_text
from kitcore.caffe_log import SCORE_TOP


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _at(groups: dict, group: str, n: int) -> float:
    return _mean(groups[group].get(n, []))


def split_measures(groups: dict) -> dict[str, float]:
    """Every measure (percentage points) of one random split's pooled groups."""
    base = _mean(groups["base"].get(0, []))
    base2x = _mean(groups.get("base2x", {}).get(0, []))  # baseB2x: as many iterations as a transfer's base and itself
    pp = 100.0
    bnb = {n: _at(groups, "BnB", n) - base for n in range(2, 7)}
    lowest = min((v, n) for n, v in bnb.items() if not math.isnan(v)) if any(
        not math.isnan(v) for v in bnb.values()) else (math.nan, math.nan)
    return {
        "base": base * pp,
        "dip": _mean([bnb[n] for n in (3, 4, 5, 6)]) * pp,
        "dip45": _mean([bnb[n] for n in (4, 5)]) * pp,
        "dip_n": float(lowest[1]),
        "bnbplus": _mean([_at(groups, "BnB+", n) - base for n in range(1, 8)]) * pp,
        "general": _mean([_at(groups, "AnB", n) - _at(groups, "BnB", n) for n in (1, 2)]) * pp,
        "anb7": (_at(groups, "AnB", 7) - base) * pp,
        "specific": _mean([_at(groups, "AnB", n) - _at(groups, "BnB", n) for n in (6, 7)]) * pp,
        "anbplus": _mean([_at(groups, "AnB+", n) - base for n in range(1, 8)]) * pp,
        "anbplus_self": _mean([_at(groups, "AnB+", n) - _at(groups, "BnB+", n) for n in range(1, 8)]) * pp,
        "bnbplus_2x": _mean([_at(groups, "BnB+", n) - base2x for n in range(1, 8)]) * pp,
        "anbplus_2x": _mean([_at(groups, "AnB+", n) - base2x for n in range(1, 8)]) * pp,
    }


MEASURES = (  # (key, finding, what it measures, the paper's claim: "+", "-", "0"; None: a description)
    ("base", 1, "base nets of the target halves: top-1 accuracy, %", None),
    ("dip", 2, "co-adaptation dip: BnB - base, mean over n = 3..6 (pp)", "-"),
    ("dip45", 2, "co-adaptation dip: BnB - base, mean over n = 4, 5 (pp)", "-"),
    ("dip_n", 2, "... the layer where BnB - base is lowest (n = 2..6; a description)", None),
    ("bnbplus", 3, "BnB+ recovers: BnB+ - base, mean over n = 1..7 (pp)", "0"),
    ("general", 4, "first layers general: AnB - BnB at n = 1, 2 (pp)", "0"),
    ("anb7", 4, "AnB drop: AnB - base at n = 7 (pp)", "-"),
    ("specific", 4, "specificity: AnB - BnB at n = 6, 7 (pp)", "-"),
    ("anbplus", 5, "AnB+ over the base: AnB+ - base, mean over n = 1..7 (pp)", "+"),
    ("anbplus_self", 5, "AnB+ over BnB+: AnB+ - BnB+, mean over n = 1..7 (pp)", "+"),
    ("bnbplus_2x", 3, "BnB+ against a base trained as long: BnB+ - baseB2x, mean over n = 1..7 (pp)", "0"),
    ("anbplus_2x", 5, "AnB+ over a base trained as long: AnB+ - baseB2x, mean over n = 1..7 (pp)", "+"),
)
AS_LONG = ("bnbplus_2x", "anbplus_2x")  # read only where baseB2x runs are there (a finding's part, never its absence)
SHORT = {"dip": "BnB - base, n = 3..6:", "bnbplus": "BnB+ - base:", "general": "AnB - BnB, n = 1, 2:",
         "anb7": "AnB - base, n = 7:", "specific": "AnB - BnB, n = 6, 7:", "anbplus": "AnB+ - base:",
         "anbplus_self": "AnB+ - BnB+:", "bnbplus_2x": "BnB+ - baseB2x:",
         "anbplus_2x": "AnB+ - baseB2x:"}  # the measures in a few words (Figure 2 bottom's notes)
FINDINGS = {  # finding: (the paper's claim in a few words, the measures its verdict is read from)
    2: ("co-adaptation dip of BnB at n = 3..6", ("dip",)),
    3: ("BnB+ recovers the base", ("bnbplus", "bnbplus_2x")),
    4: ("AnB: layers 1-2 transfer, a drop at high n", ("general", "anb7", "specific")),
    5: ("AnB+ generalizes better than baseB and BnB+", ("anbplus", "anbplus_self", "anbplus_2x")),
}


def findings(rows: list[dict]) -> tuple[list[int], list[dict]]:
    """(seeds, one dict per measure: key, finding, label, claim, per-seed values, interval, verdict)."""
    groups = seed_groups(rows)
    seeds = sorted(groups)
    per_seed = {s: split_measures(groups[s]) for s in seeds}
    out = []
    for key, number, label, claim in MEASURES:
        values = [per_seed[s][key] for s in seeds]
        out.append(_measure(key, label, claim, values, finding=number))
    for c in figure3_controls(rows):
        out.append({**_measure(c["key"], c["label"], c["claim"], c["values"], unit="replicates"), "finding": None,
                    "values": [math.nan] * len(seeds)})
    return seeds, out


def _measure(key: str, label: str, claim: str | None, values: list[float], unit: str = "seeds", **extra) -> dict:
    """A measure's dict: its per-unit values, Interval, and (with a claim) verdict word and text."""
    interval = iv.interval(values)
    word = iv.verdict(interval, claim) if claim else ""
    text = iv.verdict_text(interval, claim, unit=unit) if claim else ""
    return {"key": key, "label": label, "claim": claim, "values": values, "interval": interval,
            "mean": interval.mean, "sd": interval.sd, "verdict": word, "verdict_text": text, "unit": unit, **extra}


CONTROLS = (  # (key, control, what it measures, its claim)
    ("plateau_A", "a", "baseA on its plateau: mean of its last 3 tests - the 3 before (pp)", None),
    ("plateau_B", "a", "baseB on its plateau: mean of its last 3 tests - the 3 before (pp)", None),
    ("baseB", "b", "baseB: top-1 accuracy, %", None),
    ("b1b", "b", "B1B - baseB (pp)", "0"),
    ("b1bplus", "b", "B1B+ - baseB (pp)", "0"),
    ("after_step", "c", f"fewest of the {SCORE_TOP} best tests after the last lr step (base nets)", None),
)


def _num(value) -> float:
    return math.nan if value is None else float(value)


def seed_controls(rows: list[dict], keep=usable) -> dict[str, float]:
    """Every control measure of one split's rows that `keep` keeps (nan where its runs are missing)."""
    rows = [r for r in rows if keep(r)]
    bases = {t: [r for r in rows if r.get("kind") == "base" and r.get("target") == t
                 and int(r.get("budget") or 1) == 1] for t in "AB"}  # never baseB2x: the controls are baseB's

    def b1b(finetuned: bool) -> float:
        return _mean([float(r["score"]) for r in rows if r.get("kind") == "transfer" and int(r["n"]) == 1
                      and (r.get("source"), r.get("target"), bool(r.get("finetuned"))) == ("B", "B", finetuned)])
    base_b = _mean([float(r["score"]) for r in bases["B"]])
    after = [v for r in bases["A"] + bases["B"] if not math.isnan(v := _num(r.get("best_after_step")))]
    return {"plateau_A": _mean([_num(r.get("plateau_pp")) for r in bases["A"]]),
            "plateau_B": _mean([_num(r.get("plateau_pp")) for r in bases["B"]]),
            "baseB": base_b * 100, "b1b": (b1b(False) - base_b) * 100, "b1bplus": (b1b(True) - base_b) * 100,
            "after_step": float(min(after)) if after else math.nan}


def control_measures(per_unit: list[dict[str, float]], unit: str = "seeds") -> list[dict]:
    """The CONTROLS measures over units (each a seed_controls dict)."""
    return [{**_measure(key, label, claim, [u[key] for u in per_unit], unit=unit), "control": c}
            for key, c, label, claim in CONTROLS]


def control_lines(measures: list[dict]) -> list[str]:
    """One verdict line per control (a, b, c) from its measures' intervals."""
    by = {m["key"]: m for m in measures}
    plateaus = [by[k] for k in ("plateau_A", "plateau_B") if by[k]["interval"].n]
    lines = []
    if plateaus:
        words = [iv.plateau_word(m["interval"]) for m in plateaus]
        word = ("not held" if "not held" in words else "held" if set(words) == {"held"} else
                "inconclusive" + (" (one unit: no interval)" if any(m["interval"].n < 2 for m in plateaus) else ""))
        parts = "; ".join(f"base{m['key'][-1]} {m['interval'].text()}"
                          for m in plateaus)
        lines.append(f"(a) bases on their plateau (interval of the last tests' climb below {iv.PLATEAU_PP:g} pp): "
                     f"{word} ({parts} pp)")
    b = [by[k] for k in ("b1b", "b1bplus") if by[k]["interval"].n]
    if b:
        word = "held" if all(m["verdict"] == "shown" for m in b) else (
            "not held" if any(m["verdict"] == "opposite" for m in b) else "inconclusive")
        parts = "; ".join(f"{m['label'].removesuffix(' (pp)')} {m['interval'].text()}: {m['verdict_text']}"
                          for m in b)
        lines.append(f"(b) B1B and B1B+ score like baseB (intervals within ±{iv.MARGIN_PP:g} pp): {word} ({parts})")
    steps = [v for v in by["after_step"]["values"] if not math.isnan(v)]
    if steps:
        lines.append(f"(c) the {SCORE_TOP} best tests after the last lr step: "
                     f"{'held' if min(steps) >= SCORE_TOP else 'not held'} (fewest: {min(steps):.0f} of {SCORE_TOP}, "
                     f"on every unit)")
    return lines


def controls(rows: list[dict]) -> tuple[list[int], list[dict], list[str]]:
    """(seeds, one dict per control measure with its per-seed values and interval, the verdict lines)."""
    rows_of = by_seed(rows)
    seeds = sorted(rows_of)
    measures = control_measures([seed_controls(rows_of[s]) for s in seeds])
    return seeds, measures, control_lines(measures)


def combine(words: list[str]) -> str:
    """A finding's verdict from its measures' verdicts."""
    if all(w == "shown" for w in words):
        return "shown"
    if "opposite" in words:
        return "opposite"
    if all(w == "none" for w in words):
        return "none"
    return "partly shown" if "shown" in words else "inconclusive"


def verdicts(rows: list[dict]) -> list[dict]:
    """Each finding's verdict from its measures' intervals: {finding, name, verdict, measures, text}."""
    _, measures = findings(rows)
    by = {m["key"]: m for m in measures}
    out = []
    for number, (name, keys) in FINDINGS.items():
        ms = [by[k] for k in keys if k not in AS_LONG or by[k]["interval"].n]
        word = "not measured" if any(m["interval"].n == 0 for m in ms) else combine([m["verdict"] for m in ms])
        parts = "; ".join(f"{m['label'].split(': ', 1)[-1].removesuffix(' (pp)')}: {m['interval'].text()} pp, "
                          f"{m['verdict_text']}" for m in ms)
        short = "; ".join(f"{SHORT[m['key']]} {m['interval'].text()}" for m in ms)
        out.append({"finding": number, "name": name, "verdict": word, "measures": keys,
                    "text": f"{number}. {name}: {word} ({parts})", "short": f"{number}. {name}: {word} ({short} pp)"})
    return out


def _fmt(v: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.{digits}f}"


def _table(measures: list[dict], seeds: list[int], first: str, number: str) -> list[str]:
    out = [f"| {first} | measure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean [95% interval] | verdict |",
           "|---|---|" + "---|" * (len(seeds) + 2)]
    for m in measures:
        plain = m["key"] in ("base", "baseB", "dip_n", "after_step")
        digits = 0 if m["key"] in ("dip_n", "after_step") else 2
        cells = [_fmt(v, digits).lstrip("+") if plain else _fmt(v, digits) for v in m["values"]]
        if all(math.isnan(v) for v in m["values"]):
            cells = [""] * len(seeds)
        mean = m["interval"].text(digits, signed=not plain)
        if m["key"] in ("dip_n", "after_step"):  # a description, a count: no interval
            counts = [v for v in m["values"] if not math.isnan(v)]
            mean = f"fewest: {min(counts):.0f}" if m["key"] == "after_step" and counts else ""
        out.append(f"| {m.get(number) or ''} | {m['label']} | " + " | ".join(cells)
                   + f" | {mean} | {m['verdict_text']} |")
    return out


def to_markdown(rows: list[dict], title: str = "The paper's findings") -> str:
    """The controls, then the findings: per seed, mean and interval, verdicts; then one verdict line per finding."""
    seeds, cmeasures, clines = controls(rows)
    _, measures = findings(rows)
    lines = ["**Controls** (the paper's fairness checks, per seed; seeds: random splits in the table)", "",
             *_table(cmeasures, seeds, "#", "control"), "", "Control verdicts:", "", *(f"- {x}" for x in clines), "",
             f"**{title}** (percentage points; seeds: random splits; numbered as the paper's Section 4.1)", "",
             *_table(measures, seeds, "#", "finding"), "",
             f"Verdicts ({iv.METHOD}; Figure 3's rows: over replicates of their one split):", ""]
    lines += [v["text"] for v in verdicts(rows)]
    return "\n".join(lines) + "\n"


def write_findings(rows: list[dict], out_stem: Path) -> Path:
    """Write out_stem.md; return it."""
    path = Path(out_stem).with_suffix(".md")
    write_text(path, to_markdown(rows))
    return path
