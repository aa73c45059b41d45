"""The committed run records (results/) are the evidence of every reported number, and the report matches them.

- every published run's score is the one its gzipped log gives (the mean of its 10 best tests), the small-target
  grids' under results/fa20/small too, each a whole unit trained for its k's iterations;
- the records stay small (30 kB a run, 60 MB in all), and git holds no binary but docs/img and the records' logs;
- `make plots RECORDS=results/fa20 DOCS=1`, run again from the records alone, gives docs/results.md, the
  README's results block and every figure's CSV in docs/img exactly as committed: the report cannot drift
  from its evidence.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from analysis.records import record_dirs
from analysis.report import FIGURES, RESULTS_BEGIN, RESULTS_END, write_report
from analysis.small import SMALL_RECORDS
from kitcore.builds import evidence_dirs
from kitcore.caffe_log import parse_log
from kitcore.caffe_log import score as log_score
from kitcore.runlog import log_segments

from conftest import ROOT

RECORDS = ROOT / "results" / "fa20"
SMALL = RECORDS / SMALL_RECORDS  # the small-target grids' records (analysis.small), one level down
EVERY = record_dirs(RECORDS) + record_dirs(SMALL) + evidence_dirs(RECORDS)  # evidence: kitcore.builds
RUN_LIMIT = 30_000  # a published run's record, its logs gzipped
TOTAL_LIMIT = 60_000_000  # results/ in all (issue 34: seeds 0-7, the small target's seeds, the replicates)


def test_the_records_are_there():
    assert len(record_dirs(RECORDS)) >= 30, f"{RECORDS} holds no published grid"


@pytest.mark.parametrize("run", EVERY, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_records_score_is_its_logs(run):
    result = json.loads((run / "result.json").read_text())
    parsed = parse_log(log_segments(run))
    assert result["score"] == pytest.approx(log_score(parsed.test_accuracies), abs=1e-12)
    assert result["final_accuracy"] == pytest.approx(parsed.test_accuracies[-1], abs=1e-12)
    assert parsed.last_iteration == result["iterations"] == json.loads((run / "run.json").read_text())["max_iter"]


def test_the_records_are_small():
    root = ROOT / "results"
    for run in EVERY:
        size = sum(p.stat().st_size for p in run.iterdir())
        assert size <= RUN_LIMIT, f"{run}: {size} bytes"
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) <= TOTAL_LIMIT


def test_git_holds_no_binary_but_figures_and_logs():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()[:8192]
        binary = b"\0" in data or data[:2] == b"\x1f\x8b"
        if binary:
            assert name.startswith("docs/img/") or (name.startswith("results/") and name.endswith(".log.gz")), name
        if name.startswith("results/"):
            assert name.endswith((".log.gz", "run.json", "result.json", "split.json", "SHA256SUMS")), name


def test_the_small_grids_are_whole_units_of_the_schedule():
    """Each published small split: Figure 2's 30 runs; baseA with the full protocol's iterations, the runs on
    B with solvers/small_iters.toml's for its k (what generators.runfiles.cut_iters gives)."""
    from generators.runfiles import cut_iters
    from kitcore import layout
    from kitcore.profiles import profile
    from kitcore.treatments import grid_names, parse
    for split in sorted({run.parent for run in record_dirs(SMALL)}):
        runs = {p.name: json.loads((p / "run.json").read_text()) for p in split.iterdir() if p.is_dir()}
        if split.parent.name == "extra":  # a split's replicates: r >= 1 of its grid's treatments
            assert {layout.parse_run_name(name)[0] for name in runs} <= set(grid_names("small")), split.name
        else:
            assert sorted(runs) == sorted(grid_names("small")), split.name
        for name, meta in runs.items():
            want = cut_iters(profile("fa20"), parse(layout.parse_run_name(name)[0], "small"), meta["per_class"])
            assert meta["protocol_files"]["overrides"]["iters"] == want, f"{split.name}/{name}"
        assert "baseA" not in runs or runs["baseA"]["max_iter"] == 3000
        assert json.loads((split / "split.json").read_text())["cut_halves"] == ["B"]


def test_the_report_is_what_the_records_give(tmp_path):
    """Regenerate everything from the records into a copy of docs/ and README.md; nothing may differ."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    write_report(RECORDS, tmp_path / "out", docs=tmp_path / "docs")
    assert (tmp_path / "docs" / "results.md").read_text() == (ROOT / "docs" / "results.md").read_text()
    readme, fresh = (ROOT / "README.md").read_text(), (tmp_path / "README.md").read_text()
    assert RESULTS_BEGIN in readme and RESULTS_END in readme
    assert fresh == readme, "the README's results are not the records': make plots RECORDS=results/fa20 DOCS=1"
    for stem in FIGURES:
        made = tmp_path / "out" / f"{stem}.csv"
        if made.is_file():
            assert made.read_text() == (ROOT / "docs" / "img" / f"{stem}.csv").read_text(), stem
            assert (ROOT / "docs" / "img" / f"{stem}.png").is_file(), stem
    for table in ("verdicts", "noise"):  # every interval and verdict shown, and the run-to-run noise
        made = tmp_path / "out" / f"{table}.csv"
        assert made.is_file() or table == "noise", table
        if made.is_file():
            assert made.read_text() == (ROOT / "docs" / "img" / f"{table}.csv").read_text(), table


def test_figure3_summary_reads_the_bottom_panel():
    from analysis.figure3 import NATMAN_SERIES, PIECES, summary
    natman, frozen = NATMAN_SERIES[0][2], PIECES["random"][0]  # natman AnB: one direction, a series of its own
    records = [{"panel": "normalized", "series": natman, "n": n, "value": v} for n, v in ((1, -0.001), (7, -0.3),
                                                                                          (7, -0.4))]
    records += [{"panel": "normalized", "series": frozen, "n": n, "value": v} for n, v in ((1, -0.01), (5, -0.8))]
    records += [{"panel": "natman", "series": natman, "n": 7, "value": 0.5},  # top panel: not read
                {"panel": "normalized", "series": f"authors' {natman}", "n": 7, "value": -0.9}]
    assert summary(records) == (f"Figure 3 (bottom), each run minus its own base, in pp (mean [95% interval] over "
                                f"the seeds, or over the replicates of a series' one split): {natman}: "
                                f"n = 1: -0.10, n = 7: -35.00 [-98.53, +28.53]; lowest -35.00 at n = 7; {frozen}: "
                                "n = 1: -1.00; lowest -80.00 at n = 5.")
    assert summary([]) == ""


def test_figure3_says_where_random_weights_differ_from_the_paper():
    from analysis.figure3 import PIECES, paper_contrast
    frozen = PIECES["random"][0]
    records = [{"panel": "normalized", "series": frozen, "n": n, "value": v}
               for n, v in ((1, -0.01), (3, -0.05), (4, -0.09), (5, -0.8), (6, -0.6))]
    assert paper_contrast(records) == (
        "The paper's random frozen weights fall to near chance from n = 3 on (its Figure 3); here randfrozen3 to "
        "randfrozen4 stay within 9 pp of their base, and the lowest is -80.0 pp at n = 5 (1 run per n).")
    assert "every n >= 3 loses more than 20 pp" in paper_contrast([{**r, "value": -0.5} for r in records])
    assert paper_contrast([]) == ""
