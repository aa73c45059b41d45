"""Run records (`results/<dataset>/`, written by runner.publish) as results rows, with nothing else.

A record folder `<records>/<split>/<treatment>/` holds the run's gzipped
Caffe log(s), run.json and result.json; `<records>/<split>/split.json` names
the split's classes. A split's replicate runs (r >= 1) are records
`<records>/extra/<split>/<treatment>.r<r>/` (runner.publish): their rows
pool into their split's, told apart by the `repeat` column. `record_rows` turns each record into the row
analysis.results.run_row makes of a run folder: the score, tests and controls
come from the logs, the solver's lr step from the solver parameters Caffe
prints at the top of its log, "finished" from the record's result.json. No
Caffe, no LMDB, no model: a record is read from its files alone. Each row
also says the build key, protocol key, host CPU and kit commit of its
run.json; `check_pooled` refuses rows of more than one build or protocol
unless told, counting as one the builds that evidence records show to train
the same nets (kitcore.builds). Before any row is read, every unit's files
are checked against its SHA256SUMS (kitcore.sums): a changed, truncated,
missing or stray file is a one-line error naming it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from analysis.results import run_row, split_classes
from kitcore import builds, sums
from kitcore.caffe_log import parse_log
from kitcore.errors import KitError
from kitcore.runlog import log_segments, solver_in_log

log = logging.getLogger(__name__)

PROVENANCE_COLUMNS = ("build_key", "protocol_key", "host_cpu", "git_commit")


REPEATS = "extra"  # <records>/extra/<split>/<treatment>.r<r>/: the replicate runs' records


def record_dirs(records: Path) -> list[Path]:
    """Every run record under a records folder (`<split>/<treatment>/run.json`, and the replicates'
    `extra/<split>/<treatment>.r<r>/run.json`), sorted by split, then run folder name."""
    found = [*Path(records).glob("*/*/run.json"), *Path(records).glob(f"{REPEATS}/*/*/run.json")]
    runs = [p.parent for p in found if not p.parts[-3].startswith(".")]  # not a unit being written
    return sorted(runs, key=lambda run: (run.parent.name, run.name))


def record_row(run: Path) -> dict:
    """The results row of one run record, with its provenance columns."""
    meta = json.loads((run / "run.json").read_text())
    segments = log_segments(run)
    if not segments:
        raise KitError(f"the record {run} has no train.log.gz", "publish it again from its work folder")
    row = run_row(meta, parse_log(segments), run, (run / "result.json").is_file(), solver=solver_in_log(segments))
    row.update({"build_key": meta.get("build", {}).get("key"),
                "protocol_key": meta.get("protocol_files", {}).get("key"),
                "host_cpu": meta.get("host", {}).get("cpu"), "git_commit": meta.get("git_commit")})
    return row


def check_pooled(rows: list[dict], allow_mixed: bool = False, joined: dict[str, str] | None = None) -> None:
    """Raise KitError when the rows come from more than one Caffe build or protocol (unless allow_mixed); builds
    that evidence records show to train the same nets (`joined`: kitcore.builds.classes) count as one."""
    keys = sorted({(builds.canonical(str(r.get("build_key")), joined or {}), str(r.get("protocol_key")))
                   for r in rows})
    if len(keys) > 1 and not allow_mixed:
        raise KitError(f"the records come from {len(keys)} (build, protocol) pairs: {keys}",
                       "pass records of one build and protocol, publish evidence that their builds train the same "
                       "nets (make publish-evidence), or --allow-mixed (MIXED=1) to pool them anyway")


def record_rows(records: Path, allow_mixed: bool = False) -> list[dict]:
    """Every record under `records` as a results row (sorted by split, then treatment); KitError when there
    is none, or when they mix builds or protocols (unless allow_mixed)."""
    records = Path(records)
    runs = record_dirs(records)
    if not runs:
        raise KitError(f"no run records under {records}", "publish a finished grid first: make publish WORK=dir")
    for unit in sorted({run.parent for run in runs} | set(builds.evidence_dirs(records))):
        sums.verify_unit(unit)  # every file as published, before any number is drawn from it
    rows = [record_row(run) for run in runs]
    check_pooled(rows, allow_mixed, builds.classes(records))
    log.info("%d run record(s) under %s", len(rows), records)
    return rows


def record_classes(records: Path) -> dict[str, dict[str, list[str]]]:
    """split name -> half -> class names, from each published split's split.json (a replicate unit's when the
    split's grid is not published)."""
    units = [*Path(records).glob(f"{REPEATS}/*/split.json"), *Path(records).glob("*/split.json")]
    return {p.parent.name: split_classes(p.parent) for p in sorted(units, key=lambda p: p.parent.name)}
