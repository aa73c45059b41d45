"""analysis.intervals, the one place that decides what a measure over independent units shows: the t interval
against a hand computation, the four verdict words for each claim, the units that would decide an inconclusive
one, and the texts the tables print."""
from __future__ import annotations

import math

import pytest

from analysis import intervals as iv
from analysis.intervals import Interval

# Student's t(0.975) quantiles from a printed table: df = 1, 3, 9, 10
T = {1: 12.706204736174694, 3: 3.182446305283708, 9: 2.262157162798205, 10: 2.228138851964938}


def test_the_t_interval_by_hand():
    assert iv.t_quantile(3) == pytest.approx(T[3]) and iv.t_quantile(1) == pytest.approx(T[1])
    got = iv.interval([1, 2, 3, 4])
    sd = math.sqrt((1.5 ** 2 + 0.5 ** 2 + 0.5 ** 2 + 1.5 ** 2) / 3)  # sample sd: n - 1 = 3
    half = T[3] * sd / math.sqrt(4)
    assert (got.n, got.mean, got.sd) == (4, 2.5, pytest.approx(sd))
    assert (got.lo, got.hi) == pytest.approx((2.5 - half, 2.5 + half))
    assert (got.lo, got.hi) == pytest.approx((0.4457, 4.5543), abs=1e-4)  # 2.5 -+ 3.182446 * 1.290994 / 2
    assert iv.half_width(sd, 4) == pytest.approx(half)
    assert got.text() == "+2.50 [+0.45, +4.55]" and got.text(1, signed=False) == "2.5 [0.4, 4.6]"
    assert iv.interval([1, math.nan, 3, None]) == iv.interval([1, 3])  # missing values are left out
    assert iv.interval([2.0, 2.0]) == Interval(2, 2.0, 0.0, 2.0, 2.0)  # no spread: the interval is the mean


def test_one_value_gives_no_interval_and_none_nothing():
    one = iv.interval([5.0])
    assert (one.n, one.mean) == (1, 5.0) and all(math.isnan(v) for v in (one.sd, one.lo, one.hi))
    assert one.text() == "+5.00" and math.isnan(iv.half_width(1.0, 1))
    assert iv.verdict(one, "+") == "inconclusive" and iv.units_to_decide(one, "+") is None
    assert iv.verdict_text(one, "+") == "inconclusive (1 seed: no interval)"
    assert iv.verdict_text(one, "-", unit="replicates") == "inconclusive (1 replicate: no interval)"
    assert iv.below(one, iv.PLATEAU_PP) is None
    empty = iv.interval([math.nan])
    assert empty.n == 0 and empty.text() == "n/a" and iv.verdict(empty, "0") == "inconclusive"
    assert iv.verdict_text(empty, "0") == "inconclusive (0 seeds: no interval)"


def _iv(lo: float, hi: float) -> Interval:
    """An interval of 5 units from lo to hi (the verdict reads only its ends)."""
    return Interval(5, (lo + hi) / 2, 1.0, lo, hi)


@pytest.mark.parametrize("claim, lo, hi, word", [
    ("+", 0.5, 2.0, "shown"), ("+", -3.0, -0.5, "opposite"), ("+", -0.5, 0.8, "none"),
    ("+", -0.5, 2.0, "inconclusive"), ("+", 0.0, 2.0, "inconclusive"),  # 0 itself is not excluded
    ("+", -1.0, 1.0, "none"),  # the margin's ends are within it
    ("+", 0.2, 0.8, "shown"),  # excluding 0 on the claimed side decides, however small the difference
    ("-", -2.0, -0.5, "shown"), ("-", 0.5, 3.0, "opposite"), ("-", -0.8, 0.5, "none"),
    ("-", -2.0, 0.5, "inconclusive"), ("-", -0.5, 1.5, "inconclusive"),
    ("0", -0.5, 0.8, "shown"), ("0", -1.0, 1.0, "shown"),  # an equivalence: within +-1 pp
    ("0", 1.5, 3.0, "opposite"), ("0", -3.0, -1.5, "opposite"),  # wholly beyond the margin
    ("0", 0.5, 2.0, "inconclusive"),  # excludes 0 but not beyond the margin: not a difference that matters
    ("0", -2.0, 0.5, "inconclusive"), ("0", -2.0, 2.0, "inconclusive"),
])
def test_the_four_words_for_each_claim(claim, lo, hi, word):
    assert iv.verdict(_iv(lo, hi), claim) == word
    assert iv.verdict_text(_iv(lo, hi), claim).split(" (")[0] == word


def test_the_margin_and_the_claims():
    assert iv.MARGIN_PP == 1.0 and iv.WORDS == ("shown", "opposite", "none", "inconclusive")
    assert iv.verdict(_iv(-0.5, 1.5), "0") == "inconclusive" and iv.verdict(_iv(-0.5, 1.5), "0", margin=2) == "shown"
    assert iv.verdict(_iv(1.5, 3.0), "0", margin=4) == "shown"
    with pytest.raises(ValueError, match="claim 'up'"):
        iv.verdict(_iv(0.5, 2.0), "up")


def test_units_to_decide_by_hand():
    # values 0 and 2: mean 1, sd sqrt 2; a positive claim is shown once t(n - 1) * sqrt 2 / sqrt(n) < 1, i.e.
    # t(n - 1) / sqrt(n) < 0.7071: n = 10 gives t(9) / sqrt 10 = 0.7154, n = 11 gives t(10) / sqrt 11 = 0.6718
    wide = iv.interval([0.0, 2.0])
    assert T[9] / math.sqrt(10) > 1 / math.sqrt(2) > T[10] / math.sqrt(11)
    assert iv.verdict(wide, "+") == "inconclusive" and iv.units_to_decide(wide, "+") == 11
    assert iv.units_to_decide(wide, "-") == 11  # the same interval read as the opposite of "-"
    assert iv.verdict_text(wide, "+") == "inconclusive (about 11 seeds would decide it at this spread)"
    assert iv.verdict_text(wide, "-", unit="replicates") == \
        "inconclusive (about 11 replicates would decide it at this spread)"
    # "0" at mean 1: within +-1 needs a zero-width interval, beyond +1 a mean above 1: no number decides it
    assert iv.units_to_decide(wide, "0") is None
    assert iv.verdict_text(wide, "0") == "inconclusive (no number of seeds would decide it at this mean)"
    # values 0.4 and 1.2 against "0": within +-1 pp once t(n - 1) * sd / sqrt(n) <= 0.2 (sd 0.4 sqrt 2)
    near = iv.interval([0.4, 1.2])
    need = iv.units_to_decide(near, "0")
    assert iv.half_width(near.sd, need) <= 0.2 < iv.half_width(near.sd, need - 1)
    assert need == 34  # t(33) / sqrt 34 = 0.3489 <= 0.3536 < t(32) / sqrt 33 = 0.3546
    decided = iv.interval([1, 2, 3, 4])  # already shown: its own number of units
    assert iv.verdict(decided, "+") == "shown" and iv.units_to_decide(decided, "+") == 4
    assert iv.verdict_text(decided, "+") == "shown"
    assert iv.units_to_decide(iv.interval([1.0]), "+") is None


def test_below_the_plateau_bound():
    assert iv.below(iv.interval([0.1, 0.12]), iv.PLATEAU_PP) is True  # 0.11 + t(1) * 0.01 = 0.237
    assert 0.11 + T[1] * 0.01 < iv.PLATEAU_PP
    assert iv.below(iv.interval([0.1, 0.2]), iv.PLATEAU_PP) is False  # 0.15 + t(1) * 0.05 = 0.79


def test_control_a_is_held_below_the_bound_not_held_above_it_and_inconclusive_across():
    from analysis.intervals import interval, plateau_word
    assert plateau_word(interval([0.0, 0.01, 0.02])) == "held"
    assert plateau_word(interval([0.5, 0.6, 0.7])) == "not held"
    assert plateau_word(interval([0.1, 0.3, 0.5])) == "inconclusive"
    assert plateau_word(interval([0.1])) == "inconclusive"  # one unit: no interval
