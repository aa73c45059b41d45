"""Parse Caffe training logs (2014 and modern BVLC formats) into train and test rows.

One streaming parser reads plain or gzipped logs (detected by their magic
bytes) line by line. It understands both formats:

- 2014 (the paper's runs): `Iteration N, lr = X`, `Iteration N, loss = X`,
  `Iteration N, Testing net`, `Test score #0: X` (accuracy) and
  `Test score #1: X` (loss): test outputs by number.
- modern (BVLC 1.0/rc3, our build): `Iteration N, loss = X` or
  `Iteration N (X iter/s, Ys/20 iters), loss = X`,
  `Train net output #0: loss = X (* 1 = X loss)`, `Iteration N, Testing net (#0)`,
  `Test net output #k: NAME = X ...`, `Iteration N, lr = X`: outputs by name.

Rows are dicts: `NumIters` (int), `Seconds` (since the run's first glog stamp,
see kitcore.glog), `LearningRate` and one key per output (`loss`; `accuracy`,
`loss`), missing keys meaning "not in the log". A train row's `loss` is the
`Train net output` named loss when present, else the `Iteration N, loss` value.
`LearningRate` is the lr printed for that iteration, else the last one printed
before it (as BVLC's parse_log carries it). Only test net #0 is kept.

Several logs of one run (restarts from snapshots) are passed in order; so is a
log holding several restarts (runner/resume.py writes a `#### transfer-kit ...`
line before each start of caffe). Rows are merged by iteration and the later one wins: a row
seen again in a later segment replaces the earlier row as a whole. Lines that
look like records but cannot be used (truncated, garbled, an impossible date,
a test output with no `Testing net` before it) are skipped and counted in
`ParsedLog.skipped_lines`; a gzip file that ends early is read up to the break
and listed in `truncated_files`. Neither is fatal.
"""
from __future__ import annotations

import bisect
import csv
import gzip
import io
import logging
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kitcore.atomic import replacing
from kitcore.errors import KitError
from kitcore.glog import PREFIX_START, Clock, split_prefix

log = logging.getLogger(__name__)

_NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|(?i:nan|inf))"
RE_LR = re.compile(rf"Iteration (\d+), lr = ({_NUM})")
RE_LOSS = re.compile(rf"Iteration (\d+)(?: \([^()]*\))?, loss = ({_NUM})")
RE_TESTING = re.compile(r"Iteration (\d+), Testing net(?: \(#(\d+)\))?")
RE_OUTPUT = re.compile(rf"(Train|Test) net output #(\d+): (\S+) = ({_NUM})(?: \(\* {_NUM} = {_NUM} loss\))?")
RE_SCORE = re.compile(rf"Test score #(\d+): ({_NUM})")
# fast path for the bulk of a log: a whole `Iteration N, lr|loss = X` line (== split_prefix + RE_LR/RE_LOSS)
RE_FAST = re.compile(rf"[IWEF](\d{{8}}|\d{{4}}) (\d\d):(\d\d):(\d\d(?:\.\d+)?)\s+\d+ [^\s\]]+\] ?\s*"
                     rf"Iteration (\d+)(?:, lr = ({_NUM})|(?: \([^()]*\))?, loss = ({_NUM}))\s*")
KEYWORDS = ("Iteration ", "net output #", "Test score")
SCORE_NAMES = {0: "accuracy", 1: "loss"}  # the 2014 format numbers its test outputs
SEGMENT_MARK = "#### "  # runner/resume.py writes such a line before each start of caffe
BASE_COLUMNS = ("NumIters", "Seconds", "LearningRate")  # as BVLC tools/extra/parse_log.py
DEFAULT_OUTPUTS = {"train": ("loss",), "test": ("accuracy", "loss")}
_EXAMPLES = 10
SCORE_TOP = 10  # the paper's score: the mean of a run's 10 best test accuracies


@dataclass
class ParsedLog:
    """A run's merged train and test rows, with what could not be read."""

    train: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)
    skipped_lines: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    truncated_files: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0  # first to last stamp, gaps between restarts included
    active_seconds: float = 0.0  # summed first-to-last stamp of each segment (file or restart)

    @property
    def test_accuracies(self) -> list[float]:
        """The test accuracies in iteration order."""
        return [row["accuracy"] for row in self.test if "accuracy" in row]

    @property
    def last_iteration(self) -> int | None:
        """The highest iteration in any row (None for an empty log)."""
        its = [rows[-1]["NumIters"] for rows in (self.train, self.test) if rows]
        return max(its) if its else None


def read_lines(path: Path, truncated: list[str]) -> Iterator[str]:
    """Yield the lines of a plain or gzipped text file; a gzip cut short ends early."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if gz else raw
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None)
        try:
            yield from text
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            log.warning("%s ends early (%s); using the lines before the break", path, exc)
            truncated.append(str(path))


class _Parser:
    """State of one streaming pass over a run's logs."""

    def __init__(self) -> None:
        self.out = ParsedLog()
        self.clock = Clock()
        self.train: dict[int, dict] = {}
        self.test: dict[int, dict] = {}
        self.segment: list[float] = []  # first and last elapsed seconds of the segment
        self._new_segment()

    def _new_segment(self) -> None:
        if self.segment:
            self.out.active_seconds = round(self.out.active_seconds + self.segment[1] - self.segment[0], 6)
        self.segment = []
        self.open_train: dict | None = None
        self.train_outputs_ok = False
        self.open_test: dict | None = None
        self.test_net = 0

    def feed_file(self, path: Path) -> None:
        self.out.sources.append(str(path))
        self._new_segment()
        fast = RE_FAST.fullmatch
        for number, line in enumerate(read_lines(path, self.out.truncated_files), 1):
            line = line.rstrip("\r\n")
            m = fast(line)
            if m is None or not self._fast(m.groups()):
                self.feed(line, path, number)

    def _fast(self, groups: tuple) -> bool:
        """Use a line RE_FAST matched; False (nothing changed) when its stamp is not valid."""
        ymd, hh, mi, ss, it, lr, loss = groups
        hh, mi, ss, month, day = int(hh), int(mi), float(ss), int(ymd[-4:-2]), int(ymd[-2:])
        if hh > 23 or mi > 59 or ss >= 61 or not 1 <= month <= 12 or not 1 <= day <= 31:
            return False
        now = self.clock.advance_fields(int(ymd[:4]) if len(ymd) == 8 else None, month, day,
                                        hh * 3600 + mi * 60 + ss)
        if now is None:
            return False
        if not self.segment:
            self.segment = [now, now]
        self.segment[1] = now
        self.open_test = None
        if lr is not None:
            self.train_outputs_ok = False
            self._train_row(int(it), now)["LearningRate"] = float(lr)
        else:
            self._train_row(int(it), now).setdefault("loss", float(loss))
            self.train_outputs_ok = True
        return True

    def feed(self, line: str, path: Path, number: int) -> None:
        if line.startswith(SEGMENT_MARK):
            self._new_segment()
            return
        parts = split_prefix(line)
        if parts is None:
            if any(k in line for k in KEYWORDS) or PREFIX_START.match(line) or "\x00" in line:
                self._skip(path, number, line)
            return
        now = self.clock.advance(parts[0])
        if now is None:
            self._skip(path, number, line)
            return
        if self.segment:
            self.segment[1] = now
        else:
            self.segment = [now, now]
        msg = parts[1].strip()
        if any(k in msg for k in KEYWORDS) and not self._record(msg, now):
            self._skip(path, number, line)

    def _skip(self, path: Path, number: int, line: str) -> None:
        self.out.skipped_lines += 1
        if len(self.out.skipped_examples) < _EXAMPLES:
            self.out.skipped_examples.append(f"{path}:{number}: {line[:200]}")

    def _train_row(self, it: int, now: float) -> dict:
        if self.open_train is None or self.open_train["NumIters"] != it:
            self.open_train = {"NumIters": it, "Seconds": now}
            self.train[it] = self.open_train  # a later segment's row replaces the earlier one
        return self.open_train

    def _record(self, msg: str, now: float) -> bool:
        """Use one message; False when it looks like a record but cannot be used."""
        if m := RE_OUTPUT.fullmatch(msg):
            kind, name, value = m.group(1), m.group(3), float(m.group(4))
            if kind == "Train":
                if not self.train_outputs_ok or self.open_train is None:
                    return False
                self.open_train[name] = value
                return True
            return self._test_value(name, value, now)
        if m := RE_SCORE.fullmatch(msg):
            index = int(m.group(1))
            return self._test_value(SCORE_NAMES.get(index, f"score{index}"), float(m.group(2)), now)
        self.open_test = None
        self.train_outputs_ok = False
        if m := RE_TESTING.fullmatch(msg):
            self.test_net = int(m.group(2) or 0)
            self.open_test = {"NumIters": int(m.group(1))}
        elif m := RE_LOSS.fullmatch(msg):
            self._train_row(int(m.group(1)), now).setdefault("loss", float(m.group(2)))
            self.train_outputs_ok = True
        elif m := RE_LR.fullmatch(msg):
            self._train_row(int(m.group(1)), now)["LearningRate"] = float(m.group(2))
        else:
            return False
        return True

    def _test_value(self, name: str, value: float, now: float) -> bool:
        row = self.open_test
        if row is None:
            return False
        if self.test_net != 0:
            return True  # outputs of a second test net are not kept
        if "Seconds" not in row:  # registered at its first output, as BVLC's parse_log does
            row["Seconds"] = now
            self.test[row["NumIters"]] = row
        row[name] = value
        return True

    def result(self) -> ParsedLog:
        self._new_segment()
        out = self.out
        out.wall_seconds = self.clock.elapsed
        out.train = [self.train[k] for k in sorted(self.train)]
        out.test = [self.test[k] for k in sorted(self.test)]
        known = [(r["NumIters"], r["LearningRate"]) for r in out.train if "LearningRate" in r]
        its = [k for k, _ in known]
        for rows in (out.train, out.test):
            for i, row in enumerate(rows):
                j = bisect.bisect_right(its, row["NumIters"]) - 1
                rows[i] = {"NumIters": row["NumIters"], "Seconds": row["Seconds"],
                           **({"LearningRate": known[j][1]} if j >= 0 else {}),
                           **{k: v for k, v in row.items() if k not in BASE_COLUMNS}}
        return out


def parse_log(paths: str | Path | Sequence[str | Path]) -> ParsedLog:
    """Parse one run's logs (plain or .gz, earlier segments first) into merged rows."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    parser = _Parser()
    for path in map(Path, paths):
        if not path.is_file():
            raise KitError(f"training log {path} does not exist", "check the run folder, or train it first")
        parser.feed_file(path)
    out = parser.result()
    if out.skipped_lines:
        log.warning("%s: skipped %d unusable line(s), first: %s", paths[-1], out.skipped_lines,
                    out.skipped_examples[0])
    return out


def columns(rows: list[dict], kind: str) -> list[str]:
    """CSV columns: NumIters, Seconds, LearningRate, then the outputs in first-seen order."""
    names: dict[str, None] = {}
    for row in rows:
        names.update((k, None) for k in row if k not in BASE_COLUMNS)
    return [*BASE_COLUMNS, *(names or DEFAULT_OUTPUTS[kind])]


def _cell(value) -> str:
    return "" if value is None else str(value)


def write_csv_atomic(path: Path, header: Sequence[str], rows: list[dict]) -> None:
    """Write rows (dicts) as CSV under `header` to a temporary name, then rename it over `path`."""
    with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([_cell(row.get(k)) for k in header] for row in rows)


def write_csvs(parsed: ParsedLog, out_prefix: str | Path) -> tuple[Path, Path]:
    """Write `<prefix>.train.csv` and `<prefix>.test.csv` (BVLC parse_log columns); return them."""
    prefix = Path(out_prefix)
    paths = prefix.with_name(prefix.name + ".train.csv"), prefix.with_name(prefix.name + ".test.csv")
    for path, rows, kind in zip(paths, (parsed.train, parsed.test), ("train", "test")):
        write_csv_atomic(path, columns(rows, kind), rows)
    return paths


def best_indices(test_accuracies: Sequence[float], top: int = SCORE_TOP) -> list[int]:
    """Positions of the `top` highest accuracies, best first; of equal ones the earliest (nan, None: never)."""
    known = [i for i, a in enumerate(test_accuracies) if a is not None and not math.isnan(float(a))]
    return sorted(known, key=lambda i: float(test_accuracies[i]), reverse=True)[:top]  # stable: ties keep order


def score(test_accuracies: Sequence[float], top: int = SCORE_TOP) -> float:
    """The paper's figure of merit: mean of the `top` highest test accuracies (nan if none)."""
    values = [float(test_accuracies[i]) for i in best_indices(test_accuracies, top)]
    return sum(values) / len(values) if values else math.nan
