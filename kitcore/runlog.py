"""One run's Caffe log as the kit keeps it: its segments, whether it diverged, the solver Caffe printed.

A run folder (or a run record) holds its log as `train.log` (a record:
`train.log.gz`), with the segments of earlier starts moved aside as
`train.log.1`, `train.log.2`, ... (optionally gzipped); `log_segments` lists
them in reading order. `diverged_at` is the first NaN loss of a parsed log
(kitcore.caffe_log). `solver_in_log` reads back the solver parameters Caffe
prints when it starts ("Initializing solver from parameters:"), so that a
record with no solver.prototxt still says its lr schedule. Used by one run
(runner.train), publishing (runner.publish) and the analysis alike.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from kitcore.caffe_log import ParsedLog, read_lines

_GLOG_PREFIX = re.compile(r"[IWEF](\d{4}|\d{8}) \d\d:\d\d")  # a glog line: ends the solver block Caffe prints
_SEGMENT = re.compile(r"train\.log\.(\d+)(\.gz)?")  # an earlier segment of a run's log


def log_segments(run_dir: Path) -> list[Path]:
    """The run's log files, earliest first: train.log.1, train.log.2, ..., train.log (a run record's
    current segment is train.log.gz)."""
    numbered = sorted((int(m.group(1)), p.name, p) for p in Path(run_dir).iterdir()
                      if (m := _SEGMENT.fullmatch(p.name)) and p.is_file())
    current = [p for p in (Path(run_dir) / "train.log", Path(run_dir) / "train.log.gz") if p.is_file()][:1]
    return [p for _, _, p in numbered] + current


def diverged_at(parsed: ParsedLog) -> int | None:
    """The first iteration whose train or test loss is NaN (None: it stayed finite); such a run has no score
    that means anything (its best tests come from before it diverged): analysis.rules leaves it out."""
    its = [row["NumIters"] for row in parsed.train + parsed.test if math.isnan(row.get("loss", 0.0))]
    return min(its) if its else None


def solver_in_log(parsed_paths: list[Path]) -> str:
    """The solver parameters Caffe prints at the start of a log ("Initializing solver from parameters:"), as
    prototxt text from the first segment that has them ("" when none has)."""
    for path in parsed_paths:
        lines, inside = [], False
        for line in read_lines(path, []):
            if not inside:
                inside = "Initializing solver from parameters:" in line
            elif _GLOG_PREFIX.match(line):
                return "\n".join(lines)
            else:
                lines.append(line.rstrip("\n"))
        if lines:
            return "\n".join(lines)
    return ""
