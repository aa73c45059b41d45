"""Task distance end to end: a real grid on mix0m1 (one class swapped between natman's halves) beside random0's,
published as records under <records>/mix, and the report's figure, CSV, page section and README line from them;
without mix records the report is as before (no figure, no section, no line).

Both grids are tiny (2 iterations a run, the real `caffe`)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from kitcore.profiles import KIT
from kitcore.treatments import grid_names

from conftest import beside_random0
from test_grid import kit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records(random0_tiny, tmp_path_factory) -> Path:
    """mix0m1's grid trained beside random0's (conftest.random0_tiny, shared with the other record tests; 2
    iterations a run); random0 published into fa20/, mix0m1 into fa20/mix/."""
    return beside_random0(random0_tiny, tmp_path_factory.mktemp("records") / "fa20", "mix", "mix0m1", 16,
                          "--protocol", "mix", "--mix", "1")


@pytest.fixture(scope="module")
def work(records, random0_tiny) -> Path:
    """The work folder holding random0's and mix0m1's grids."""
    return random0_tiny


def test_the_mixed_split_and_its_grid(work):
    sdir = work / "fa20" / "mix0m1"
    assert sorted(p.name for p in (sdir / "runs").iterdir()) == sorted(grid_names("mix"))
    run = json.loads((sdir / "runs" / "A3B+" / "run.json").read_text())
    assert (run["protocol"], run["split"]) == ("mix", "mix0m1")
    assert json.loads((sdir / "split.json").read_text())["mix"]["m"] == 1


def _docs(tmp_path: Path) -> Path:
    """A docs folder (img/) beside a copy of the kit's README, for --docs."""
    (tmp_path / "docs" / "img").mkdir(parents=True)
    shutil.copyfile(KIT / "README.md", tmp_path / "README.md")
    return tmp_path / "docs"


def test_the_report_draws_task_distance_from_the_records(records, tmp_path):
    out, docs = tmp_path / "out", _docs(tmp_path)
    proc = kit("plots", "--records", str(records), "--out", str(out), "--docs", str(docs))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "distance.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["m"], r["seed"], r["split"], r["runs"], r["share"]) for r in rows] == [
        ("1", "0", "mix0m1", "16", "0.1"), ("1", "mean", "", "16", "0.1"),
        ("random", "0", "random0", "30", ""), ("random", "mean", "", "30", "")]
    assert (out / "distance.png").stat().st_size > 10_000
    assert (docs / "img" / "distance.png").is_file() and (docs / "img" / "distance.csv").is_file()
    from analysis.distance import summary
    line = summary(rows)
    assert line.startswith("No halfway point") and "over 1 seed" not in line  # one level: no change to fit
    page = (docs / "results.md").read_text()
    assert "## Task distance as a curve" in page and line in page and "![Task distance](img/distance.png)" in page
    readme = (tmp_path / "README.md").read_text()
    assert f"Task distance as a curve ([docs/results.md](docs/results.md)): {line}" in readme


def test_without_mix_records_nothing_of_it_is_drawn(records, tmp_path):
    alone = tmp_path / "fa20"
    shutil.copytree(records, alone, ignore=shutil.ignore_patterns("mix"))
    out = tmp_path / "out"
    proc = kit("plots", "--records", str(alone), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / "distance.csv").exists() and "Task distance" not in (out / "results.md").read_text()
