"""make publish and make plots RECORDS=: a real grid's runs become run records, and the report reads only them.

One tiny random0 grid (the whole unit: Figure 2's 30 runs, 2 iterations each) trained with the real `caffe`,
published into a records folder, published again (nothing changes), then drawn from the records alone after
the work folder is gone. The refusals: an unfinished unit, a record with other content, records of another
build, a tampered score; the analysis refuses to pool two builds unless told.
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from analysis.records import record_rows
from kitcore import sums
from kitcore.caffe_log import parse_log, score
from kitcore.treatments import grid_names

from test_grid import kit, one_line_error

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work folder with the whole random0 grid finished (2 iterations a run)."""
    work = tmp_path_factory.mktemp("pubwork")
    proc = kit("grid", "--work", str(work), "--iters", "2", "--jobs", "2",
               "--treatments", ",".join(grid_names("random")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


@pytest.fixture(scope="module")
def records(work, tmp_path_factory) -> Path:
    """The grid published once into a fresh records folder."""
    records = tmp_path_factory.mktemp("records") / "fa20"
    proc = kit("publish", "--work", str(work), "--records", str(records))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("random0: published 30 runs into"), proc.stdout
    return records


def test_a_record_is_the_logs_run_json_and_result_json(records):
    assert (records / "random0" / "split.json").is_file()
    runs = sorted(p.name for p in (records / "random0").iterdir() if p.is_dir())
    assert runs == sorted(grid_names("random"))
    for name in runs:
        rec = records / "random0" / name
        assert sorted(p.name for p in rec.iterdir()) == ["result.json", "run.json", "train.log.gz"]
        meta = json.loads((rec / "run.json").read_text())
        assert meta["build"]["key"] and meta["build"]["blas"]["library"] and meta["host"]["cpu"]
        assert meta["protocol_files"]["overrides"]["iters"] == 2 and len(meta["protocol_files"]["key"]) == 16
        assert sum(p.stat().st_size for p in rec.iterdir()) < 100_000
        accs = parse_log([rec / "train.log.gz"]).test_accuracies
        assert score(accs) == pytest.approx(json.loads((rec / "result.json").read_text())["score"], abs=1e-12)


def test_publishing_again_changes_nothing(work, records):
    before = {p: p.read_bytes() for p in records.rglob("*") if p.is_file()}
    proc = kit("publish", "--work", str(work), "--records", str(records))
    assert proc.returncode == 0 and "already published" in proc.stdout
    assert {p: p.read_bytes() for p in records.rglob("*") if p.is_file()} == before


def test_a_record_with_other_content_is_never_overwritten(work, records, tmp_path):
    other = tmp_path / "fa20"
    shutil.copytree(records, other)
    result = other / "random0" / "A3B" / "result.json"
    result.write_text(result.read_text().replace('"caffe_starts"', '"caffe_starts_"'))
    one_line_error(kit("publish", "--work", str(work), "--records", str(other)),
                   "published already, with other content", "(A3B/result.json)", "never overwritten")
    assert '"caffe_starts_"' in result.read_text()


def test_an_unfinished_unit_is_not_published(work, tmp_path):
    copy = tmp_path / "w"
    shutil.copytree(work / "fa20", copy / "fa20")
    (copy / "fa20" / "random0" / "runs" / "B5B+" / "result.json").unlink()
    records = tmp_path / "rec"
    one_line_error(kit("publish", "--work", str(copy), "--records", str(records), "--splits", "random0"),
                   "1 of its 30 runs are not finished (B5B+)", "published whole", "make grid")
    assert not records.exists() or not any(records.iterdir())
    one_line_error(kit("publish", "--work", str(copy), "--records", str(records)), "no finished grid to publish")


def test_a_tampered_score_is_refused(work, tmp_path):
    copy = tmp_path / "w"
    shutil.copytree(work / "fa20", copy / "fa20")
    result = copy / "fa20" / "random0" / "runs" / "A2B" / "result.json"
    data = json.loads(result.read_text())
    data["score"] += 0.01
    result.write_text(json.dumps(data))
    one_line_error(kit("publish", "--work", str(copy), "--records", str(tmp_path / "rec")),
                   "A2B/result.json's score", "is not its log's")


def _other_build(records: Path, dest: Path) -> Path:
    """A copy of the records with one more unit (random7) whose run.json names another build key."""
    shutil.copytree(records, dest)
    shutil.copytree(dest / "random0", dest / "random7")
    for path in (dest / "random7").glob("*/run.json"):
        meta = json.loads(path.read_text())
        meta["build"]["key"] = "0123456789abcdef"
        meta["split"] = "random7"
        path.write_text(json.dumps(meta))
    sums.write_sums(dest / "random7")  # published as such: its checksums are its files'
    return dest


def test_another_build_is_refused_unless_told(work, records, tmp_path):
    mixed = _other_build(records, tmp_path / "fa20")
    shutil.rmtree(mixed / "random0")
    one_line_error(kit("publish", "--work", str(work), "--records", str(mixed)),
                   "holds records of another build or protocol", "--allow-mixed")
    assert not (mixed / "random0").exists()
    proc = kit("publish", "--work", str(work), "--records", str(mixed), "--allow-mixed")
    assert proc.returncode == 0 and "published 30 runs" in proc.stdout


def test_the_analysis_refuses_to_pool_two_builds_unless_told(records, tmp_path):
    mixed = _other_build(records, tmp_path / "fa20")
    one_line_error(kit("plots", "--records", str(mixed), "--out", str(tmp_path / "out")),
                   "2 (build, protocol) pairs", "--allow-mixed")
    assert len(record_rows(mixed, allow_mixed=True)) == 60


def test_plots_from_the_records_alone(work, records, tmp_path):
    """The report reads nothing but the records: the work folder is gone, and the numbers are its logs'."""
    shutil.rmtree(work / "fa20" / "random0" / "data")  # no LMDB (the runs' folders stay for the other tests)
    out = tmp_path / "out"
    proc = kit("plots", "--records", str(records), "--out", str(out), "--work", str(tmp_path / "nowork"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("results.csv", "figure2.png", "figure2.csv", "figure2_bottom.png", "figure2_bottom.csv",
                 "table1.md", "findings.md", "results.md"):
        assert (out / name).is_file(), name
    assert not (tmp_path / "nowork").exists()
    page = (out / "results.md").read_text()
    meta = json.loads((records / "random0" / "baseB" / "run.json").read_text())
    assert meta["build"]["key"] in page and meta["host"]["cpu"] in page
    rows = {r["treatment"]: r for r in record_rows(records)}
    with gzip.open(records / "random0" / "baseB" / "train.log.gz", "rt") as f:
        assert "Initializing solver from parameters" in f.read()
    figure2 = (out / "figure2.csv").read_text()
    assert f",{round(rows['baseB']['score'], 9)},random0,baseB" in figure2
    assert "not drawn yet" in page.lower() and "natman" in page


def test_a_killed_publish_leaves_nothing_that_looks_published(work, tmp_path):
    """A unit is written as .<split>.tmp-<pid> and renamed: a leftover of a killed publish is never read as a
    record, and the next publish removes it."""
    records = tmp_path / "fa20"
    leftover = records / ".random0.tmp-999999999"
    shutil.copytree(work / "fa20" / "random0" / "runs" / "baseA", leftover / "baseA")
    one_line_error(kit("plots", "--records", str(records), "--out", str(tmp_path / "out")), "no run records under")
    proc = kit("publish", "--work", str(work), "--records", str(records))
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists() and sorted(p.name for p in records.iterdir()) == ["random0"]


def test_a_full_disk_while_publishing_is_one_line_then_rerun_publishes(work, records, small_disk):
    """Records on a 128 KiB file system (the unit takes more): one line naming the unit and the room left,
    nothing in the records folder (no unit, no leftover); with room, the same command publishes the unit as
    it publishes on a roomy disk."""
    mnt = small_disk("128k")
    args = ("publish", "--work", str(work), "--records", str(mnt / "fa20"))
    line = one_line_error(kit(*args), f"disk full while writing {mnt / 'fa20' / 'random0'} (", " KiB free, about ")
    assert "; fix: free space on that file system (or publish into another RECORDS=dir)" in line
    assert list((mnt / "fa20").iterdir()) == []
    small_disk.resize(mnt, "8m")
    proc = kit(*args)
    assert proc.returncode == 0 and proc.stdout.startswith("random0: published 30 runs into"), proc.stderr[-2000:]
    assert (mnt / "fa20" / "random0" / sums.SUMS).read_bytes() == (records / "random0" / sums.SUMS).read_bytes()
