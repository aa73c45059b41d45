"""Replicates (`repeat` r): run folder names, the seed rule, a real grid with --repeats, publishing and reading back.

A replicate r >= 1 of a treatment is the same run in `runs/<treatment>.r<r>/` with solver (and surgery) seed
split seed + 1 + 1000 * r; r = 0 is the run as it always was. The slow tests train a tiny grid (baseB, B1B+,
2 iterations each) with --repeats 2 and one more replicate B1B+.r2 with the real `caffe`, then publish the
split's replicate unit into `<records>/extra/random0/` and read it back as results rows.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from generators.runfiles import REPEAT_SEED_STEP, run_files, solver_seed
from kitcore import layout
from kitcore.caffe_env import pb2
from kitcore.errors import KitError
from kitcore.profiles import profile
from kitcore.treatments import parse
from runner.train import RunSpec

from test_grid import kit, one_line_error

GRID = "baseB,B1B+"


def test_replicate_folder_names_and_seeds(tmp_path):
    """r = 0 keeps today's folder, seed and commands; r = 2 is `<treatment>.r2` with seed + 1 + 2000."""
    split = tmp_path / "fa20" / "random3"
    assert layout.run_dir(split, "B1B+") == layout.run_dir(split, "B1B+", 0) == split / "runs" / "B1B+"
    assert layout.run_dir(split, "B1B+", 2) == split / "runs" / "B1B+.r2"
    assert layout.parse_run_name("B1B+.r2") == ("B1B+", 2) and layout.parse_run_name("B1B+") == ("B1B+", 0)
    assert layout.parse_run_name("randfrozen3") == ("randfrozen3", 0)
    assert solver_seed(3) == solver_seed(3, 0) == 4 and solver_seed(3, 2) == 3 + 1 + 2000 == 2004
    seeds = {solver_seed(s, r) for s in range(REPEAT_SEED_STEP) for r in range(4)}
    assert len(seeds) == 4 * REPEAT_SEED_STEP  # no replicate shares another split seed's seed
    for bad in (-1, 1.0, True, "2"):
        with pytest.raises(KitError, match="invalid replicate number"):
            layout.run_dir(split, "B1B+", bad)
    r0 = RunSpec(tmp_path, "fa20", 3, parse("B1B+"))
    r2 = RunSpec(tmp_path, "fa20", 3, parse("B1B+"), iters=5, repeat=2)
    assert r0.run_dir == split / "runs" / "B1B+" and r2.run_dir == split / "runs" / "B1B+.r2"
    assert "--repeat" not in r0.cli_flags() and r2.cli_flags()[-2:] == ["--repeat", "2"]
    work = f"WORK={tmp_path.resolve()}"  # the runs' own work folder, and r2's ITERS, carried by their fix lines
    assert r0.make_cmd(force=True) == f"make train TREATMENT=B1B+ DATASET=fa20 PROTOCOL=random SEED=3 FORCE=1 {work}"
    assert r2.make_cmd(force=True) == \
        f"make train TREATMENT=B1B+ DATASET=fa20 PROTOCOL=random SEED=3 REPEAT=2 FORCE=1 ITERS=5 {work}"
    assert r2.make_cmd("baseB") == \
        f"make train TREATMENT=baseB DATASET=fa20 PROTOCOL=random SEED=3 ITERS=5 {work}"  # its r = 0 base


def test_a_replicate_changes_the_seed_and_nothing_else():
    fa20, t = profile("fa20"), parse("B4B")
    r0, r3 = (run_files(fa20, t, 10, 3, "d", val_records=2000, repeat=r) for r in (0, 3))
    assert (r0.seed, r0.solver.random_seed) == (4, 4) and (r3.seed, r3.solver.random_seed) == (3004, 3004)
    assert r0.net == r3.net
    r3.solver.random_seed = r0.solver.random_seed
    assert r0.solver == r3.solver


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work folder where baseB and B1B+ ran with --repeats 2, then B1B+ --repeat 2 (2 iterations each)."""
    work = tmp_path_factory.mktemp("repwork")
    assert kit("split-random", "--seed", "0", "--work", str(work)).returncode == 0
    proc = kit("grid", "--work", str(work), "--treatments", GRID, "--repeats", "2", "--iters", "2", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = sorted(ln.split()[0] for ln in proc.stderr.splitlines() if " score " in ln and " wall " in ln)
    assert summary == ["B1B+", "B1B+.r1", "baseB", "baseB.r1"], proc.stderr[-3000:]
    proc = kit("train", "--work", str(work), "--treatment", "B1B+", "--repeat", "2", "--iters", "2",
               "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "B1B+.r2: score" in proc.stdout
    return work


def runs(work: Path) -> Path:
    return work / "fa20" / "random0" / "runs"


def blobs(model: Path) -> dict[str, list[np.ndarray]]:
    """Every layer's parameter blobs of a .caffemodel."""
    net = pb2().NetParameter()
    net.ParseFromString(model.read_bytes())
    return {layer.name: [np.asarray(b.data, np.float32) for b in layer.blobs] for layer in net.layer if layer.blobs}


def final_model(run: Path) -> Path:
    return run / json.loads((run / "result.json").read_text())["model"]


@pytest.mark.slow
def test_a_replicate_trains_with_its_seed_from_the_r0_base(work):
    for name, r in (("baseB", 0), ("B1B+", 0), ("baseB.r1", 1), ("B1B+.r1", 1), ("B1B+.r2", 2)):
        run = runs(work) / name
        meta = json.loads((run / "run.json").read_text())
        assert (meta["treatment"], meta["repeat"]) == layout.parse_run_name(name) and meta["seed"] == 0
        assert meta["random_seed"] == 1 + 1000 * r, name
        solver = text_format.Merge((run / "solver.prototxt").read_text(), pb2().SolverParameter())
        assert solver.random_seed == 1 + 1000 * r, name
        assert layout.is_finished(run)
    r0, r2 = (runs(work) / n for n in ("B1B+", "B1B+.r2"))
    assert (r0 / "train_val.prototxt").read_text() == (r2 / "train_val.prototxt").read_text()
    meta = json.loads((r2 / "run.json").read_text())
    assert meta["base_model"] == str(final_model(runs(work) / "baseB"))  # the r = 0 base, not baseB.r1
    assert meta["inputs"]["base.caffemodel"] == json.loads((runs(work) / "baseB" / "result.json").read_text())[
        "model_sha256"]
    base, base_r1 = blobs(final_model(runs(work) / "baseB")), blobs(final_model(runs(work) / "baseB.r1"))
    init, init_r0 = blobs(r2 / "init.caffemodel"), blobs(r0 / "init.caffemodel")
    assert all(np.array_equal(a, b) for a, b in zip(init["conv1"], base["conv1"]))  # copied from baseB (r = 0)
    assert not np.array_equal(base["conv1"][0], base_r1["conv1"][0])  # baseB.r1 is another net
    assert not np.array_equal(init["conv2-new"][0], init_r0["conv2-new"][0])  # its fillers drew another seed
    assert "copied from base:conv1" in (r2 / "surgery.txt").read_text()


@pytest.mark.slow
def test_grid_rerun_and_status_name_replicates_by_folder(work):
    proc = kit("grid", "--work", str(work), "--treatments", GRID, "--repeats", "2", "--iters", "2")
    assert proc.returncode == 0 and sum(" skipped " in ln for ln in proc.stderr.splitlines()) == 4
    status = kit("status", "--work", str(work), "--treatments", GRID, "--repeats", "3", "--iters", "2")
    rows = {ln.split()[0]: ln for ln in status.stdout.splitlines()[1:-1]}
    assert sorted(rows) == sorted(["baseB", "baseB.r1", "baseB.r2", "B1B+", "B1B+.r1", "B1B+.r2"])
    assert "not started" in rows["baseB.r2"] and status.stdout.splitlines()[-1] == "5 finished, 1 not started"


@pytest.mark.slow
def test_replicate_rows_pool_with_their_treatment(work):
    """The work folder's results rows: a `repeat` column, and the replicates' scores pooled into their group."""
    from analysis.results import collect_runs
    from analysis.rules import baseline, pooled_groups, run_label
    rows = collect_runs(work / "fa20" / "random0")
    assert sorted((r["treatment"], r["repeat"]) for r in rows) == [
        ("B1B+", 0), ("B1B+", 1), ("B1B+", 2), ("baseB", 0), ("baseB", 1)]
    assert sorted(map(run_label, rows)) == ["B1B+", "B1B+.r1", "B1B+.r2", "baseB", "baseB.r1"]
    scores = {run_label(r): r["score"] for r in rows}
    assert sorted(pooled_groups(rows)["BnB+"][1]) == sorted(scores[n] for n in ("B1B+", "B1B+.r1", "B1B+.r2"))
    assert baseline(rows) == (pytest.approx((scores["baseB"] + scores["baseB.r1"]) / 2), 2)


@pytest.fixture(scope="module")
def records(work, tmp_path_factory) -> Path:
    """random0's replicate unit published into a fresh records folder."""
    records = tmp_path_factory.mktemp("reprecords") / "fa20"
    proc = kit("publish", "--work", str(work), "--records", str(records), "--repeats")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("extra/random0: published 3 runs into"), proc.stdout
    return records


@pytest.mark.slow
def test_a_replicate_unit_is_published_and_read_back(work, records):
    from analysis.records import record_classes, record_dirs, record_rows
    from analysis.results import collect_runs
    unit = records / "extra" / "random0"
    assert (unit / "split.json").read_bytes() == (work / "fa20" / "random0" / "split.json").read_bytes()
    assert sorted(p.name for p in unit.iterdir() if p.is_dir()) == ["B1B+.r1", "B1B+.r2", "baseB.r1"]
    assert sorted(p.name for p in (unit / "B1B+.r2").iterdir()) == ["result.json", "run.json", "train.log.gz"]
    assert not (records / "random0").exists()  # the grid unit is another unit
    assert [p.name for p in record_dirs(records)] == ["B1B+.r1", "B1B+.r2", "baseB.r1"]
    rows = record_rows(records)
    assert sorted((r["split"], r["treatment"], r["repeat"]) for r in rows) == [
        ("random0", "B1B+", 1), ("random0", "B1B+", 2), ("random0", "baseB", 1)]
    work_scores = {(r["treatment"], r["repeat"]): r["score"] for r in collect_runs(work / "fa20" / "random0")}
    assert all(r["score"] == pytest.approx(work_scores[(r["treatment"], r["repeat"])], abs=1e-12) for r in rows)
    assert set(record_classes(records)) == {"random0"}
    proc = kit("publish", "--work", str(work), "--records", str(records), "--repeats", "--splits", "random0")
    assert proc.returncode == 0 and "extra/random0: already published" in proc.stdout


@pytest.mark.slow
def test_a_replicate_unit_with_other_content_is_never_overwritten(work, records, tmp_path):
    other = tmp_path / "fa20"
    shutil.copytree(records, other)
    result = other / "extra" / "random0" / "B1B+.r1" / "result.json"
    result.write_text(result.read_text().replace('"caffe_starts"', '"caffe_starts_"'))
    one_line_error(kit("publish", "--work", str(work), "--records", str(other), "--repeats"),
                   "published already, with other content", "(B1B+.r1/result.json)", "never overwritten")
    assert '"caffe_starts_"' in result.read_text()
    copy = tmp_path / "w"
    shutil.copytree(work / "fa20", copy / "fa20")
    shutil.copytree(runs(copy) / "B1B+.r2", runs(copy) / "B1B+.r3")  # one more replicate: other content too
    one_line_error(kit("publish", "--work", str(copy), "--records", str(records), "--repeats"),
                   "published already, with other content", "B1B+.r3/")
    assert not (records / "extra" / "random0" / "B1B+.r3").exists()


@pytest.mark.slow
def test_replicate_refusals(work, tmp_path):
    """The grid unit ignores replicates (30 runs, 28 missing); unfinished replicates hold their unit back."""
    one_line_error(kit("publish", "--work", str(work), "--records", str(tmp_path / "rec"), "--splits", "random0"),
                   "28 of its 30 runs are not finished", "published whole")
    copy = tmp_path / "w"
    shutil.copytree(work / "fa20", copy / "fa20")
    (runs(copy) / "B1B+.r2" / "result.json").unlink()
    one_line_error(kit("publish", "--work", str(copy), "--records", str(tmp_path / "rec"), "--repeats",
                       "--splits", "random0"),
                   "1 of its 3 replicate runs are not finished (B1B+.r2)",
                   "make train TREATMENT=B1B+ DATASET=fa20 PROTOCOL=random SEED=0 REPEAT=2")
    one_line_error(kit("publish", "--work", str(copy), "--records", str(tmp_path / "rec"), "--repeats"),
                   "no finished replicate runs")
    assert not (tmp_path / "rec").exists() or not any((tmp_path / "rec").rglob("run.json"))
