"""Tests of analysis/original.py: the authors' results/ layout -> the kit's results table."""
from __future__ import annotations

import csv
import gzip
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from analysis.original import import_original, import_to_csv, parse_run_name, run_logs
from analysis.results import ROW_COLUMNS, read_results_csv
from kitcore.errors import KitError
from runner.cli import main

from test_analysis import glog

# the mapping the README's grammar and generators/authors.py prescribe, written out by hand
EXPECTED = {
    "half0A": ("random0", "baseA", "base", None, "A", 0, False),
    "half0B": ("random0", "baseB", "base", None, "B", 0, False),
    "nolearn_1_3": ("all", "randfrozen3", "random-weights", None, "all", 3, False),
    "transfer-ft0A0B_1_3": ("random0", "A3B+", "transfer", "A", "B", 3, True),
    "transfer0A0A_1_3": ("random0", "A3A", "transfer", "A", "A", 3, False),
    "transfer0A0B_1_3": ("random0", "A3B", "transfer", "A", "B", 3, False),
    "transfernatmanAB_1_3": ("natman", "A3B", "transfer", "A", "B", 3, False),
}
FIELDS = ("split", "treatment", "kind", "source", "target", "n", "finetuned")
_TEST = re.compile(r"Iteration (\d+), Testing net\s*\n[^\n]*Test score #0: (\S+)")


def _independent_score(run_dir: Path) -> tuple[float, int]:
    """Mean of the 10 highest `Test score #0` values, later job files winning by iteration; and the count."""
    logs = sorted(run_dir.glob("*.gz"), key=lambda p: int(p.name.split(".o")[-1][:-3]))
    acc: dict[int, float] = {}
    for f in logs:
        acc.update((int(it), float(v)) for it, v in _TEST.findall(gzip.decompress(f.read_bytes()).decode()))
    best = sorted(acc.values())[-10:]
    return sum(best) / len(best), len(acc)


@pytest.fixture(scope="module")
def imported(reference_dir: Path, tmp_path_factory) -> tuple[list[dict], Path]:
    """The 7 shared runs imported (two processes) into a results CSV."""
    out = tmp_path_factory.mktemp("orig") / "original.csv"
    import_to_csv(reference_dir / "original_runs", out, jobs=2, curves_dir=out.parent / "curves")
    return read_results_csv(out), out


def test_imported_scores_match_raw_logs(reference_dir: Path, imported):
    rows, _ = imported
    by_run = {r["original_run"]: r for r in rows}
    assert sorted(by_run) == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        row = by_run[name]
        assert tuple(row[k] for k in FIELDS) == expected, name
        value, tests = _independent_score(reference_dir / "original_runs" / name)
        assert row["score"] == pytest.approx(value, abs=1e-9), name
        assert row["tests"] == tests and row["dataset"] == "imagenet" and row["finished"] is True
        assert row["log_files"] == len(list((reference_dir / "original_runs" / name).glob("*.gz")))
    assert 0.60 < by_run["half0B"]["score"] < 0.65 and by_run["nolearn_1_3"]["score"] < 0.01


def test_imported_csv_columns_and_curves(imported):
    rows, out = imported
    header = out.read_text().splitlines()[0].split(",")
    assert header[: len(ROW_COLUMNS)] == list(ROW_COLUMNS)
    curve = out.parent / "curves" / "half0A" / "curve.test.csv"
    assert curve.read_text().splitlines()[0] == "NumIters,Seconds,LearningRate,accuracy,loss"
    assert len(curve.read_text().splitlines()) == 1 + rows[0]["tests"]


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_table1_and_figures_of_imported_runs(imported, tmp_path: Path, capsys):
    rows, out = imported
    score = {r["original_run"]: r["score"] for r in rows}
    assert main(["table1", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| 1-7 | 1 |" in text and "| 5-7 | 0 |" in text
    figs = tmp_path / "figs"
    assert main(["figures", str(out), "--out", str(figs), "--original", str(out),
                 "--curves", str(out.parent / "curves")]) == 0
    names = {p.name for p in figs.iterdir()}
    for stem in ("figure2", "figure2_bottom", "figure3", "curves"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert {"table1.md", "table1.csv", "table1_original.md", "figure2.csv", "figure2_bottom.csv",
            "figure3.csv"} <= names
    # what is drawn, against the imported scores: seed 0's transfers target A (A3A) and B, so both bases are
    # baseB; A3A is a selffer (BnB); the authors' overlay is the same table
    random0 = {"baseB": ["half0A", "half0B"], "BnB": ["transfer0A0A_1_3"], "AnB": ["transfer0A0B_1_3"],
               "AnB+": ["transfer-ft0A0B_1_3"]}
    drawn = sorted((r["group"], int(r["n"]), round(float(r["score"]), 9)) for r in _csv(figs / "figure2.csv"))
    assert drawn == sorted((who + group, 0 if group == "baseB" else 3, round(score[run], 9))
                           for who in ("", "authors' ") for group, runs in random0.items() for run in runs)
    bottom = {(r["group"], int(r["n"])): (float(r["mean"]), int(r["runs"])) for r in _csv(figs / "figure2_bottom.csv")}
    base = (score["half0A"] + score["half0B"]) / 2
    for who in ("", "authors' "):
        assert bottom[who + "baseB", 0] == (pytest.approx(base, abs=1e-9), 2)
        assert bottom[who + "AnB+", 3] == (pytest.approx(score["transfer-ft0A0B_1_3"], abs=1e-9), 1)
    assert len(bottom) == 2 * 4
    table = _csv(figs / "table1.csv")[0]
    assert float(table["over_baseB_pooled"]) == pytest.approx(100 * (score["transfer-ft0A0B_1_3"] - base), abs=1e-6)
    f3 = Counter((r["panel"], r["series"]) for r in _csv(figs / "figure3.csv") if r["treatment"] != "mean")
    values = {(r["panel"], r["series"].removeprefix("authors' "), r["treatment"]): float(r["value"])
              for r in _csv(figs / "figure3.csv")}
    # natman A3B and randfrozen3 have no base of their own among the 7 runs: drawn on top, not normalized
    assert f3 == {(p, who + s): 1 for who in ("", "authors' ") for p, s in (
        ("natman", "target B"), ("random", "target all"), ("normalized", "random-split AnB (similar)"))}
    assert values["natman", "target B", "A3B"] == pytest.approx(score["transfernatmanAB_1_3"], abs=1e-9)
    assert values["random", "target all", "randfrozen3"] == pytest.approx(score["nolearn_1_3"], abs=1e-9)
    assert values["normalized", "random-split AnB (similar)", "A3B"] == \
        pytest.approx(score["transfer0A0B_1_3"] - score["half0B"], abs=1e-9)


def test_run_name_grammar(reference_dir: Path):
    names = (reference_dir / "original_runs" / "ALL_RUNS.txt").read_text().split()
    metas = [parse_run_name(n) for n in names]
    assert len(names) == 170 and None not in metas
    keys = {(m["split"], m["treatment"]) for m in metas}
    assert len(keys) == 170  # every run its own (split, treatment)
    assert parse_run_name("reduced-0025")["split"] == "reduced25"
    assert parse_run_name("netbase")["treatment"] == "base"
    assert parse_run_name("transfernatmanBA_1_7")["treatment"] == "B7A"
    for bad in ("half4", "transfer0A1B_1_3", "transfer0A0B_1_8", "nolearn_1_0", "results", "half0A.bak",
                "reduced-0003", "transfernatmanAA_1_1"):  # not the authors' (tests/test_authors_names.py)
        assert parse_run_name(bad) is None, bad


def _log(lines: list[tuple[int, float]], day: str, hour: int) -> bytes:
    text = "".join(glog(f"{day} {hour:02d}:{i // 60:02d}:{i % 60:02d}.0", f"Iteration {it}, Testing net")
                   + glog(f"{day} {hour:02d}:{i // 60:02d}:{i % 60:02d}.5", f"Test score #0: {a}")
                   + glog(f"{day} {hour:02d}:{i // 60:02d}:{i % 60:02d}.6", f"Test score #1: {1 - a}")
                   for i, (it, a) in enumerate(lines))
    return gzip.compress(text.encode())


def test_job_order_later_wins_and_odd_folders(tmp_path: Path):
    run = tmp_path / "transfer-ft2B2A_1_5"
    run.mkdir()
    # job 10 restarts at 20 after job 9 reached 30: its 20 and 30 replace job 9's; file names sort the other way
    (run / "140101_000000_x.o9.gz").write_bytes(_log([(0, 0.1), (10, 0.2), (20, 0.9), (30, 0.95)], "0101", 1))
    (run / "140101_000000_x.o10.gz").write_bytes(_log([(20, 0.3), (30, 0.4), (40, 0.5)], "0101", 5))
    (run / "imagenet_solver.prototxt").write_text('max_iter: 50\nlr_policy: "step"\nstepsize: 25\n')
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "half1A").mkdir()  # no logs: left out
    assert [p.name for p in run_logs(run)] == ["140101_000000_x.o9.gz", "140101_000000_x.o10.gz"]
    rows = import_original(tmp_path, jobs=1)
    assert len(rows) == 1
    row = rows[0]
    assert (row["split"], row["treatment"], row["finetuned"], row["n"]) == ("random2", "B5A+", True, 5)
    assert row["score"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4 + 0.5) / 5)
    assert (row["iterations"], row["tests"], row["finished"]) == (40, 5, False)  # max_iter 50 not reached
    assert row["best_after_step"] == 2 and math.isnan(row["plateau_pp"])  # 30 and 40 after the step at 25; 5 tests


def test_import_errors(tmp_path: Path, capsys):
    with pytest.raises(KitError, match="is not a folder"):
        import_original(tmp_path / "nope")
    with pytest.raises(KitError, match="no run folders with logs"):
        import_original(tmp_path)
    assert main(["import-original", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: no run folders with logs")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["table1", str(bad)]) == 2
    assert "is not a results table" in capsys.readouterr().err


def test_import_from_a_copy_with_a_broken_log(reference_dir: Path, tmp_path: Path):
    """A truncated gzip and a garbled line: counted, the rest still imported."""
    src = reference_dir / "original_runs" / "transfer0A0B_1_3"
    run = tmp_path / src.name
    run.mkdir()
    logs = sorted(src.glob("*.gz"), key=lambda p: int(p.name.split(".o")[-1][:-3]))
    data = logs[-1].read_bytes()
    shutil.copyfile(logs[0], run / logs[0].name)
    (run / logs[-1].name).write_bytes(data[: len(data) // 2])
    row = import_original(tmp_path, jobs=1)[0]
    assert 0 < row["tests"] < 450 and not math.isnan(row["score"])
    assert row["finished"] is True  # no imagenet_solver.prototxt copied: any test counts as finished
