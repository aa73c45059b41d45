"""Intervals and verdicts: the one place that decides what a measure over independent units shows.

Every number the kit reports about a finding or a control is a measure with
one value per independent unit: a random split's seed (its replicates
averaged first, by whoever builds the per-seed values), or a small target's
seed at one k. Over those values:

- the **interval** is Student's t 95% interval of the mean,
  mean +- t(0.975, n - 1) * sd / sqrt(n) (sd: the sample sd over the units).
  It assumes the per-unit values scatter roughly normally around the true
  mean; with 4 to 8 units a bootstrap percentile interval would be too
  narrow (it cannot reach past the values seen), which the t interval is not.
  One unit gives no interval (lo = hi = nan).
- the **verdict** is read from the interval, never from the mean alone, against
  what the paper claims of the measure (`claim`): "+" a positive difference,
  "-" a negative one, "0" no difference.
  - shown: the interval excludes 0 on the claimed side ("+", "-"), or lies
    within +-MARGIN_PP ("0", an equivalence test);
  - opposite: it excludes 0 on the other side ("+", "-"), or lies wholly
    beyond +-MARGIN_PP ("0": a difference larger than the margin);
  - none: it lies within +-MARGIN_PP ("+", "-": no difference that matters);
  - inconclusive: anything else, with the number of units that would decide
    it if the mean and sd stayed as observed (`units_to_decide`).
- **MARGIN_PP**, the equivalence margin, is 1 percentage point for every
  measure: the smallest difference the paper reads as a difference (its
  Table 1 boosts are 1.4 to 2.1 pp, its selffer dip 1-3 pp), and the size of
  the run-to-run spread of one FA-20 run (docs/results.md measures it).
  Controls use it too: (b) holds when B1B - baseB and B1B+ - baseB are "0"
  measures shown; (a) when the interval of a base's last-tests climb lies
  below PLATEAU_PP.

Tables, figures (their error bars are `lo, hi`), the README's sentences and
docs/img/verdicts.csv all read these functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

CONFIDENCE = 0.95
MARGIN_PP = 1.0    # the equivalence margin of every "no difference" (percentage points): see the module docstring
PLATEAU_PP = 0.3   # control (a): a base's last 3 tests average at most this much above the 3 before
CLAIMS = ("+", "-", "0")
WORDS = ("shown", "opposite", "none", "inconclusive")
METHOD = (f"mean and {CONFIDENCE:.0%} t-interval over the seeds (a seed's replicates averaged first); verdicts from "
          f"the interval: shown (excludes 0 on the paper's side, or, for a claim of no difference, lies within "
          f"±{MARGIN_PP:g} pp), opposite, none (within ±{MARGIN_PP:g} pp), inconclusive (docs/analysis.md)")
MAX_UNITS = 1000  # units_to_decide looks no further


@dataclass(frozen=True)
class Interval:
    """A measure over independent units: how many, their mean, sample sd and the 95% interval of the mean."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float

    def text(self, digits: int = 2, signed: bool = True) -> str:
        """`+0.49 [-0.24, +1.21]` (signed: False for a level such as 95.93 [93.59, 98.26]; the mean alone when
        there is no interval; `n/a` with no units)."""
        if self.n == 0:
            return "n/a"
        f = f"{{:{'+' if signed else ''}.{digits}f}}".format
        return f(self.mean) if math.isnan(self.lo) else f"{f(self.mean)} [{f(self.lo)}, {f(self.hi)}]"


def t_quantile(df: int) -> float:
    """The two-sided CONFIDENCE quantile of Student's t with `df` degrees of freedom."""
    from scipy.stats import t  # noqa: PLC0415  (scipy.stats is slow to import)
    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def half_width(sd: float, n: int) -> float:
    """Half the width of the interval of a mean of n units with sample sd `sd` (nan for n < 2)."""
    return t_quantile(n - 1) * sd / math.sqrt(n) if n > 1 and not math.isnan(sd) else math.nan


def interval(values) -> Interval:
    """The Interval of the values that are not nan."""
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(present)
    if not n:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(present) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in present) / (n - 1)) if n > 1 else math.nan
    h = half_width(sd, n)
    return Interval(n, mean, sd, mean - h, mean + h)


def _word(lo: float, hi: float, claim: str, margin: float) -> str:
    if math.isnan(lo):
        return "inconclusive"
    within = -margin <= lo and hi <= margin
    if claim == "0":
        return "shown" if within else "opposite" if lo > margin or hi < -margin else "inconclusive"
    sign = 1 if claim == "+" else -1
    lo, hi = sorted((sign * lo, sign * hi))  # now the paper's side is positive
    return "shown" if lo > 0 else "opposite" if hi < 0 else "none" if within else "inconclusive"


def verdict(iv: Interval, claim: str, margin: float = MARGIN_PP) -> str:
    """The verdict word of an interval against the paper's claim ("+", "-" or "0")."""
    if claim not in CLAIMS:
        raise ValueError(f"claim {claim!r} is not one of {CLAIMS}")
    return "inconclusive" if iv.n == 0 else _word(iv.lo, iv.hi, claim, margin)


def units_to_decide(iv: Interval, claim: str, margin: float = MARGIN_PP) -> int | None:
    """The fewest units whose interval would decide the claim were the mean and sd to stay as observed (None:
    no number up to MAX_UNITS would, or there is no sd to project from)."""
    if iv.n < 2 or math.isnan(iv.sd):
        return None
    for n in range(max(iv.n, 2), MAX_UNITS + 1):
        h = half_width(iv.sd, n)
        if _word(iv.mean - h, iv.mean + h, claim, margin) != "inconclusive":
            return n
    return None


def verdict_text(iv: Interval, claim: str, margin: float = MARGIN_PP, unit: str = "seeds") -> str:
    """The verdict word, and for an inconclusive one what would decide it: `inconclusive (about 11 seeds would
    decide it at this spread)`."""
    word = verdict(iv, claim, margin)
    if word != "inconclusive":
        return word
    if iv.n < 2:
        return f"inconclusive ({iv.n} {unit.rstrip('s') if iv.n == 1 else unit}: no interval)"
    need = units_to_decide(iv, claim, margin)
    return ("inconclusive (no number of " + unit + " would decide it at this mean)" if need is None
            else f"inconclusive (about {need} {unit} would decide it at this spread)")


def below(iv: Interval, bound: float) -> bool | None:
    """Whether the whole interval lies below `bound` (None: no interval)."""
    return None if math.isnan(iv.hi) else iv.hi < bound


def plateau_word(iv: Interval, bound: float = PLATEAU_PP) -> str:
    """Control (a)'s word for one base's last tests' climb: held (the whole interval below `bound`), not held (the
    whole interval above it), else inconclusive (the interval reaches across it, or there is none)."""
    if below(iv, bound):
        return "held"
    return "not held" if not math.isnan(iv.lo) and iv.lo > bound else "inconclusive"
