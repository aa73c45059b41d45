"""The demo's grids: which runs, in which order, over several splits in one graph; its command-line options."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from generators import netgen
from kitcore.treatments import parse
from runner.demo import GRIDS, check_grids, demo_specs
from runner.grid import run_specs
from runner.train import RunSpec

from conftest import ROOT


def kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)


def test_demo_runs_every_grid_bases_first(tmp_path):
    specs = demo_specs(tmp_path, "fa20", [0], iters=None, jobs=2, grids=GRIDS)
    by_split: dict[str, list[str]] = {}
    for s in specs:
        by_split.setdefault(s.split_dir.name, []).append(s.treatment.name)
    assert {k: len(v) for k, v in by_split.items()} == {"random0": 30, "natman": 16, "all": 8}
    assert [s.treatment.kind for s in specs[:5]] == ["base"] * 5 and all(s.treatment.kind != "base" for s in specs[5:])
    natman = [parse(n, "natman") for n in by_split["natman"] if not n.startswith("base")]
    assert sorted((t.source, t.target) for t in natman) == [("A", "B")] * 7 + [("B", "A")] * 7
    assert not any(t.finetune for t in natman)  # Figure 3: frozen transfers only
    assert by_split["all"] == ["base"] + [f"randfrozen{n}" for n in range(1, 8)]
    more = demo_specs(tmp_path, "fa20", [0, 1, 2, 3], iters=None, jobs=2, grids=GRIDS)
    assert len(more) == 4 * 30 + 16 + 8 and len({(s.split_dir, s.treatment.name) for s in more}) == len(more)


def test_make_demo_runs_the_random_split_unless_told_more(tmp_path):
    """The fair grids do not fit 45 min on 2 cores: make demo runs the random split, GRIDS=all the rest too."""
    assert check_grids(None) == ("random",) and check_grids("all") == GRIDS == ("random", "natman", "whole")
    assert check_grids("whole,random") == ("random", "whole")  # the random split first
    specs = demo_specs(tmp_path, "fa20", [0, 1], iters=None, jobs=2)
    assert {s.split_dir.name for s in specs} == {"random0", "random1"} and len(specs) == 60
    out = subprocess.run(["make", "--no-print-directory", "-n", "demo", "GRIDS=all"], cwd=ROOT, capture_output=True,
                         text=True, check=True)  # under `make test` a sub-make also prints Entering/Leaving lines
    assert any("transfer-kit demo" in ln and "--grids 'all'" in ln for ln in out.stdout.splitlines()), out.stdout


@pytest.mark.parametrize("grids", ["natural", "random,random", ",", "all,whole"])
def test_bad_grids_are_one_line_errors(tmp_path, grids):
    proc = kit("demo", "--work", str(tmp_path / "w"), "--grids", grids)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "bad --grids" in lines[0] and "; fix: " in lines[0]
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("seeds", ["0,0", "a,b", ",", "-1"])
def test_bad_seeds_are_one_line_errors(tmp_path, seeds):
    proc = kit("demo", "--work", str(tmp_path / "w"), "--seeds", seeds)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "; fix: " in lines[0], proc.stderr
    assert not (tmp_path / "w").exists()


def test_split_natural_and_whole_of_fa20_from_the_cli(tmp_path):
    for command, folder in (("split-natural", "natman"), ("split-whole", "all")):
        proc = kit(command, "--dataset", "fa20", "--work", str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"split ready: {tmp_path / 'fa20' / folder}" in proc.stdout
        assert (tmp_path / "fa20" / folder / "manifest.json").is_file()


@pytest.mark.slow
def test_one_graph_over_two_splits(tmp_path, capsys):
    """Bases and transfers of natman and all, 2 at a time; labels carry the split; tests cover the whole val set."""
    from data_prep.prepare import prepare_for
    for protocol in ("natman", "whole"):
        prepare_for(tmp_path, "fa20", protocol)
    specs = [RunSpec(tmp_path, "fa20", 0, parse(name, protocol), iters=2, threads=1)
             for protocol, name in (("natman", "A1B"), ("whole", "randfrozen1"), ("natman", "baseA"),
                                    ("whole", "base"))]
    results = run_specs(specs, jobs=2)
    assert sorted(s.treatment.name for s in results) == ["A1B", "base", "baseA", "randfrozen1"]
    err = capsys.readouterr().err
    assert "natman/A1B " in err and "all/randfrozen1 " in err
    run = tmp_path / "fa20" / "natman" / "runs" / "A1B"
    assert json.loads((run / "run.json").read_text())["base_model"]  # waited for natman's own baseA
    for split, name, batches in (("natman", "A1B", 20), ("all", "base", 40)):
        solver = netgen.load_solver(tmp_path / "fa20" / split / "runs" / name / "solver.prototxt")
        assert list(solver.test_iter) == [batches]  # 2000 or 4000 val images, 100 per test batch
    assert Path(run / "result.json").is_file()
