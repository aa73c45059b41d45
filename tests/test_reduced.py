"""Tests of analysis/reduced.py and the README's figure of the authors' reduced-data runs."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from test_analysis_original import _log

from analysis.figures import write_figures
from analysis.reduced import COLUMNS, images_per_class, reduced_points, summary
from analysis.report import AUTHORS_BEGIN, AUTHORS_END, authors_block
from analysis.results import read_results_csv, write_results_csv
from kitcore.errors import KitError
from kitcore.profiles import KIT
from runner.cli import main

# k -> the test accuracies its log says (the score is the mean of the 10 best)
RUNS = {1: [0.002] * 12, 10: [0.001] * 12, 100: [0.2 + i / 100 for i in range(12)], 1300: [0.5] * 11 + [0.6]}


def _score(accs: list[float]) -> float:
    best = sorted(accs)[-10:]
    return sum(best) / len(best)


def _authors_folder(root: Path) -> Path:
    """A results/ folder in the authors' layout holding reduced-NNNN runs (and a random-split base)."""
    for k, accs in RUNS.items():
        run = root / f"reduced-{k:04d}"
        run.mkdir(parents=True)
        (run / f"140522_151349_reduced-{k:04d}.o{1000 + k}.gz").write_bytes(
            _log([(1000 * (i + 1), a) for i, a in enumerate(accs)], "0522", 15))
        (run / "imagenet_solver.prototxt").write_text(f"max_iter: {1000 * len(accs)}\n")
    base = root / "half0B"
    base.mkdir()
    (base / "140101_000000_half0B.o7.gz").write_bytes(_log([(1000, 0.4), (2000, 0.5)], "0101", 1))
    return root


def _readme(docs: Path) -> Path:
    readme = docs.parent / "README.md"
    readme.write_text(f"# kit\n\nbefore\n\n{AUTHORS_BEGIN}\nold text\n{AUTHORS_END}\n\nafter\n")
    return readme


def _write(rows: list[dict], path: Path) -> Path:
    return write_results_csv(rows, path)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_import_original_draws_the_reduced_runs_into_docs(tmp_path: Path, capsys):
    results = _authors_folder(tmp_path / "results")
    docs = tmp_path / "kit" / "docs"
    docs.mkdir(parents=True)
    readme = _readme(docs)
    assert main(["import-original", str(results), "--out", str(tmp_path / "t.csv"), "--jobs", "1",
                 "--docs", str(docs)]) == 0
    assert "authors_reduced_png" in capsys.readouterr().out
    assert sorted(p.name for p in (docs / "img").iterdir()) == ["authors_reduced.csv", "authors_reduced.png"]
    drawn = _csv(docs / "img" / "authors_reduced.csv")
    assert list(drawn[0]) == list(COLUMNS)
    assert [(int(r["images_per_class"]), r["run"], r["split"]) for r in drawn] == \
        [(k, f"reduced-{k:04d}", f"reduced{k}") for k in RUNS]  # half0B is not a reduced run
    for row, accs in zip(drawn, RUNS.values()):
        assert float(row["score"]) == pytest.approx(_score(accs), abs=1e-9)
    text = readme.read_text()
    assert text.startswith("# kit\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old text" not in text
    # the line, from the written logs: 1300's score is 0.51; half of it (0.255) first held from k = 100 on
    top, at100 = _score(RUNS[1300]), _score(RUNS[100])
    assert (f"The authors' 4 reduced-data runs (k = 1 ... 1300 training images per class): top-1 {100 * top:.1f}% "
            f"at k = 1300; from k = 100 on ({100 * at100:.1f}%) every k reaches half of that; under 1% (the net did "
            "not learn) at k = 1, 10 (at most 0.20%).") in text
    assert "![The authors' reduced-data runs](docs/img/authors_reduced.png)" in text


def test_the_readme_line_is_its_csv(tmp_path: Path):
    """The README's line of the authors' reduced runs is what the committed CSV beside the figure gives."""
    readme = (KIT / "README.md").read_text()
    start, end = readme.find(AUTHORS_BEGIN), readme.find(AUTHORS_END)
    assert 0 <= start < end, "README.md has lost its block of the authors' reduced runs"
    points = _csv(KIT / "docs" / "img" / "authors_reduced.csv")
    assert len(points) == 12 and {r["who"] for r in points} == {"authors'"}
    assert readme[start:end + len(AUTHORS_END)] == authors_block(points, "docs/img")


def test_summary_and_split_names():
    assert [images_per_class({"split": s}) for s in ("reduced25", "random0", "all", "oops")] == [25, None, None, None]
    points = [{"images_per_class": k, "score": s} for k, s in ((5, 0.30), (5, 0.34), (50, 0.2), (500, 0.6))]
    # the means per k: 0.32, 0.2, 0.6; half of 0.6 is 0.3: k = 5 reaches it but 50 does not, so "from 500 on"
    assert summary(points) == ("4 reduced-data runs (k = 5 ... 500 training images per class): top-1 60.0% at "
                               "k = 500; from k = 500 on (60.0%) every k reaches half of that.")
    with pytest.raises(KitError, match="no finished reduced-data runs"):
        summary([])


def test_figures_draw_reduced_only_when_there_are_reduced_runs(tmp_path: Path):
    rows = [{"dataset": "imagenet", "split": "random0", "treatment": t, "kind": "base", "source": None,
             "target": t[-1], "n": 0, "finetuned": False, "score": 0.6, "finished": True} for t in ("baseA", "baseB")]
    out = write_figures(rows, tmp_path / "a")
    assert "reduced_png" not in out and not any("reduced" in a for a in out["absent"])  # not one of the paper's
    reduced = [{**rows[0], "split": f"reduced{k}", "treatment": "base", "score": s, "original_run": f"r{k}"}
               for k, s in ((10, 0.1), (100, 0.4))]
    out = write_figures(rows, tmp_path / "b", original=reduced)
    drawn = _csv(out["reduced_csv"])
    assert [(r["who"], r["images_per_class"], r["run"]) for r in drawn] == [("authors'", "10", "r10"),
                                                                            ("authors'", "100", "r100")]
    assert reduced_points(reduced) == reduced_points(read_results_csv(_write(reduced, tmp_path / "t.csv")))


def test_docs_refuse_a_table_without_reduced_runs(tmp_path: Path, capsys):
    results = tmp_path / "results"
    (results / "half0A").mkdir(parents=True)
    (results / "half0A" / "140101_000000_half0A.o7.gz").write_bytes(_log([(1000, 0.4)], "0101", 1))
    docs = tmp_path / "docs"
    docs.mkdir()
    _readme(docs)
    assert main(["import-original", str(results), "--out", str(tmp_path / "t.csv"), "--docs", str(docs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the authors' table holds no finished reduced-NNNN runs") and err.count("\n") <= 2
    assert not (docs / "img").exists()
