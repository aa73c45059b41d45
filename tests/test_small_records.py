"""The small protocol end to end: a real grid on small0k5 (half B cut to 5 images per class) beside random0's,
published as records under <records>/small, and the report's small-target figure, CSV and sections from them.

Both grids are tiny (2 iterations a run, the real `caffe`); the publish rule for a cut half is checked on a copy
whose runs on B name another protocol key than baseA's, as the schedule of solvers/small_iters.toml makes them.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from kitcore.treatments import grid_names

from conftest import beside_random0
from test_grid import kit, one_line_error

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records(random0_tiny, tmp_path_factory) -> Path:
    """small0k5's grid trained beside random0's (conftest.random0_tiny, shared with the other record tests; 2
    iterations a run); random0 published into fa20/, small0k5 into fa20/small/."""
    return beside_random0(random0_tiny, tmp_path_factory.mktemp("records") / "fa20", "small", "small0k5", 30,
                          "--protocol", "small", "--per-class", "5")


@pytest.fixture(scope="module")
def work(records, random0_tiny) -> Path:
    """The work folder holding random0's and small0k5's grids."""
    return random0_tiny


def test_the_small_split_and_its_runs(work):
    sdir = work / "fa20" / "small0k5"
    meta = json.loads((sdir / "split.json").read_text())
    assert (meta["per_class"], meta["cut_halves"], meta["uncut_per_class"]) == (5, ["B"], {"B": [800, 800]})
    assert sorted(p.name for p in (sdir / "runs").iterdir()) == sorted(grid_names("small"))
    run = json.loads((sdir / "runs" / "A3B+" / "run.json").read_text())
    assert (run["protocol"], run["per_class"], run["split"]) == ("small", 5, "small0k5")


def test_the_report_draws_the_small_target_from_the_records(records, tmp_path):
    out = tmp_path / "out"
    proc = kit("plots", "--records", str(records), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "small.csv", newline="") as f:
        points = [(r["k"], r["seed"], r["split"], r["runs"]) for r in csv.DictReader(f)]
    # seed 0 is the small target's tuning seed (analysis.small.TUNING_SEED): drawn, kept, never in a k's mean
    assert points == [("5", "0", "small0k5", "30"), ("800", "0", "random0", "30"), ("800", "mean", "", "30")]
    assert (out / "small.png").stat().st_size > 10_000
    section = (out / "small.md").read_text()
    assert "**Where transfer pays: a small target**" in section and "| 800 | 1 |" in section
    assert "| 5 |" not in section and "seed 0, which chose the iterations per k, is left out" in section
    assert (out / "findings.md").read_text().endswith(section)
    page = (out / "results.md").read_text()
    assert "## Where transfer pays: a small target" in page and "| small0k5 | 30 |" in page


def test_a_cut_half_may_have_its_own_protocol_key_but_only_one(work, tmp_path):
    copy = tmp_path / "w"
    shutil.copytree(work / "fa20", copy / "fa20")

    def rekey(names, key):
        for name in names:
            path = copy / "fa20" / "small0k5" / "runs" / name / "run.json"
            meta = json.loads(path.read_text())
            meta["protocol_files"]["key"] = key
            path.write_text(json.dumps(meta))
    on_b = [n for n in grid_names("small") if n != "baseA"]
    rekey(on_b, "b" * 16)  # as a k's schedule makes them: baseA keeps the full protocol's key
    proc = kit("publish", "--work", str(copy), "--records", str(tmp_path / "rec"), "--splits", "small0k5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rekey(["A3B"], "c" * 16)
    one_line_error(kit("publish", "--work", str(copy), "--records", str(tmp_path / "rec2"), "--splits", "small0k5"),
                   "come from 3 builds or protocols", "redo the odd runs")
