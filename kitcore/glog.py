"""glog line prefixes and a clock that turns their stamps into monotonic seconds.

A glog line starts `I0403 06:39:10.123456 12345 solver.cpp:217] message`
(month and day, no year: the 2014 logs and older glog) or
`I20261128 17:58:46.643915  8620 solver.cpp:63] message` (glog >= 0.7 adds
the year). `Clock.advance` is fed every stamp of a run in reading order and
returns seconds since the first one:

- The year, when the stamp has none, is inferred: a stamp more than a day
  *earlier* in the calendar than the previous one means a new year began
  (Dec 31 -> Jan 1). Years are assumed not to be leap years unless a Feb 29
  stamp is seen, so Feb 28 -> Mar 1 counts one day.
- A stamp earlier than the previous one adds nothing: the result never
  decreases and is never negative. Up to a minute back (threads interleaving)
  the newer stamp stays the reference; further back (daylight saving ending, a
  clock set back) the count continues from the new stamp.
- Restarts (a later log, or a resumed run appended to the same log) simply
  continue the count; the gap between them is included.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

PREFIX = re.compile(
    r"([IWEF])(\d{8}|\d{4}) (\d\d):(\d\d):(\d\d(?:\.\d+)?)\s+(\d+) ([^\s\]]+)\] ?(.*)")
# A line that starts like a glog prefix (severity letter + digits) but may be cut.
PREFIX_START = re.compile(r"[IWEF]\d")
_ROLLOVER = timedelta(days=1)
_JITTER = 60.0  # seconds: a smaller step back is threads interleaving, a larger one a clock change
_FIRST_YEAR = 2001  # any non-leap year: only differences between stamps matter


@dataclass(frozen=True)
class Stamp:
    """The date and time of one glog line (year None when the line has none)."""

    year: int | None
    month: int
    day: int
    seconds_of_day: float


def split_prefix(line: str) -> tuple[Stamp, str] | None:
    """Return (stamp, message) of a glog line, or None when it has no valid prefix."""
    m = PREFIX.fullmatch(line)
    if m is None:
        return None
    ymd, hh, mm, ss = m.group(2), int(m.group(3)), int(m.group(4)), float(m.group(5))
    if hh > 23 or mm > 59 or ss >= 61:
        return None
    year = int(ymd[:4]) if len(ymd) == 8 else None
    month, day = int(ymd[-4:-2]), int(ymd[-2:])
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    return Stamp(year, month, day, hh * 3600 + mm * 60 + ss), m.group(8)


def _next_year(year: int, leap: bool) -> int:
    """The first year after `year` that is (leap=True) or is not (leap=False) a leap year."""
    year += 1
    while calendar.isleap(year) != leap:
        year += 1
    return year


class Clock:
    """Seconds since the first stamp fed to it, never decreasing (see the module doc)."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self._date: date | None = None
        self._sod = 0.0
        self._key: tuple | None = None

    def advance(self, stamp: Stamp) -> float | None:
        """Feed the next stamp; return seconds since the first one (None: impossible date)."""
        key = (stamp.year, stamp.month, stamp.day)
        if self._date is None:
            new = self._to_date(stamp)
            if new is None:
                return None
            self._date, self._sod, self._key = new, stamp.seconds_of_day, key
            return self.elapsed
        if key == self._key:
            delta = stamp.seconds_of_day - self._sod
            new = self._date
        else:
            new = self._to_date(stamp)
            if new is None:
                return None
            delta = (new - self._date).days * 86400.0 + stamp.seconds_of_day - self._sod
            if stamp.year is not None and self._key[0] is None:
                delta = 0.0  # a real year after inferred ones: the two cannot be related
        if -_JITTER < delta < 0:
            return self.elapsed  # a line a moment older than the newest: keep the newest as reference
        if delta > 0:
            self.elapsed = round(self.elapsed + delta, 6)
        self._date, self._sod, self._key = new, stamp.seconds_of_day, key
        return self.elapsed

    def advance_fields(self, year: int | None, month: int, day: int, seconds_of_day: float) -> float | None:
        """`advance` for a stamp given by its fields (the parser's fast path: no Stamp on the same day)."""
        if (year, month, day) != self._key:
            return self.advance(Stamp(year, month, day, seconds_of_day))
        delta = seconds_of_day - self._sod
        if -_JITTER < delta < 0:
            return self.elapsed
        if delta > 0:
            self.elapsed = round(self.elapsed + delta, 6)
        self._sod = seconds_of_day
        return self.elapsed

    def _to_date(self, stamp: Stamp) -> date | None:
        """The calendar date of a stamp, inferring its year from the previous one."""
        try:
            if stamp.year is not None:
                return date(stamp.year, stamp.month, stamp.day)
            feb29 = (stamp.month, stamp.day) == (2, 29)
            if self._date is None:
                return date(_next_year(_FIRST_YEAR - 1, feb29), stamp.month, stamp.day)
            year = self._date.year
            if feb29 and not calendar.isleap(year):
                # a leap year after all: move the previous stamp into one (same month/day)
                year = _next_year(year, True)
                self._date = self._date.replace(year=year)
            new = date(year, stamp.month, stamp.day)
            if new < self._date - _ROLLOVER:
                new = new.replace(year=_next_year(year, feb29))
            return new
        except ValueError:  # Feb 30, Apr 31, ...
            return None
