"""Published records verify themselves (kitcore.sums): every unit under results/ carries SHA256SUMS, and a
changed, truncated, missing or stray file is refused before any number is drawn, with a one-line error that
names the file and how to restore it. Run on a copy of a committed unit."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from analysis.records import record_dirs, record_rows
from kitcore import builds, sums
from kitcore.errors import KitError

from conftest import ROOT

RESULTS = ROOT / "results"
UNITS = sorted({run.parent for records in (RESULTS / "fa20", RESULTS / "fa20" / "small", RESULTS / "fa20-nodnnl")
                for run in record_dirs(records)} | set(builds.evidence_dirs(RESULTS / "fa20")))


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_published_unit_verifies(unit):
    assert sums.verify_unit(unit) >= 3  # split.json (or an evidence record's 3 files) and its runs' files


@pytest.fixture
def copy(tmp_path):
    """A records folder holding a copy of one committed unit (random0 of the full protocol)."""
    records = tmp_path / "fa20"
    shutil.copytree(RESULTS / "fa20" / "random0", records / "random0")
    assert len(record_rows(records)) == 30
    return records


def _refused(records, match: str) -> None:
    with pytest.raises(KitError, match=match) as err:
        record_rows(records)
    assert "\n" not in str(err.value) and err.value.fix.startswith(("restore it", "remove it"))


def test_a_truncated_result_json_is_refused(copy):
    path = copy / "random0" / "B4B" / "result.json"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    _refused(copy, r"random0/B4B/result.json is not the one published .*changed or truncated")


def test_a_truncated_log_is_refused(copy):
    path = copy / "random0" / "A7B+" / "train.log.gz"
    path.write_bytes(path.read_bytes()[:1000])
    _refused(copy, r"random0/A7B\+/train.log.gz is not the one published")


def test_a_removed_file_is_refused(copy):
    (copy / "random0" / "baseB" / "run.json").unlink()
    _refused(copy, r"random0/baseB/run.json is missing")


def test_a_stray_file_is_refused(copy):
    (copy / "random0" / "baseB" / "notes.txt").write_text("mine\n")
    _refused(copy, r"random0/baseB/notes.txt is not part of the published unit")


def test_a_unit_without_its_sums_is_refused(copy):
    (copy / "random0" / sums.SUMS).unlink()
    _refused(copy, r"has no SHA256SUMS")


def test_make_plots_refuses_with_one_line_and_a_nonzero_exit(copy, tmp_path):
    path = copy / "random0" / "B1B" / "result.json"
    path.write_text(path.read_text().replace("0.", "1.", 1))
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "plots", "--records", str(copy), "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and not (tmp_path / "out" / "results.md").exists()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "random0/B1B/result.json is not the one published" in errors[0], proc.stderr


def test_sums_are_what_sha256sum_reads(copy):
    """The file is sha256sum's own format: coreutils checks a unit with it."""
    proc = subprocess.run(["sha256sum", "-c", "--quiet", sums.SUMS], cwd=copy / "random0", capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (copy / "random0" / "split.json").write_text("{}")
    assert subprocess.run(["sha256sum", "-c", "--quiet", sums.SUMS], cwd=copy / "random0",
                          capture_output=True).returncode != 0
