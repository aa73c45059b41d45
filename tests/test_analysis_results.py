"""Tests of analysis/results.py and analysis/plots.py: run folders -> results table -> Figure 2."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from analysis.plots import GROUPS, plot_transfer
from analysis.results import ROW_COLUMNS, analyze_split, collect_runs, last_lr_step, read_results_csv, write_results_csv
from analysis.rules import group_of
from kitcore.caffe_log import score
from kitcore.errors import KitError
from kitcore.runlog import log_segments, solver_in_log

from test_analysis import glog, mark_finished, modern


def _run(split: Path, name: str, meta: dict, logs: dict[str, str], finished: bool) -> Path:
    run = split / "runs" / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"treatment": name, "dataset": "fa20", "split": "random0", **meta}))
    for file_name, text in logs.items():
        (run / file_name).write_text(text)
    if finished:
        mark_finished(run)
    return run


def test_log_segments_order(tmp_path: Path):
    for name in ("train.log", "train.log.10", "train.log.2.gz", "train.log.1", "train.log.bak", "curve.test.csv"):
        (tmp_path / name).write_text("")
    assert [p.name for p in log_segments(tmp_path)] == ["train.log.1", "train.log.2.gz", "train.log.10", "train.log"]


def test_collect_runs_and_analyze_split(tmp_path: Path):
    split = tmp_path / "fa20" / "random0"
    base_log = modern("0403", 0, range(0, 50, 10), 0.5)
    _run(split, "baseB", {"kind": "base", "source": None, "target": "B", "n": 0, "finetune": False},
         {"train.log": base_log}, finished=True)
    plus = _run(split, "A3B+", {"kind": "transfer", "source": "A", "target": "B", "n": 3, "finetune": True},
                {"train.log.1": base_log, "train.log": modern("0403", 100, range(20, 70, 10), 0.7)},
                finished=False)
    (split / "runs" / "B2B").mkdir()  # prepared, never trained: left out
    gone = _run(split, "B1B", {"kind": "transfer", "source": "B", "target": "B", "n": 1, "finetune": False},
                {"train.log": base_log}, finished=True)
    (gone / "snapshots" / "final.caffemodel").unlink()  # result.json names a model that is not there
    assert not {r["treatment"]: r for r in collect_runs(split)}["B1B"]["finished"], "kitcore.layout.is_finished"
    shutil.rmtree(gone)
    rows = {r["treatment"]: r for r in collect_runs(split)}
    assert sorted(rows) == ["A3B+", "baseB"]
    base, trans = rows["baseB"], rows["A3B+"]
    assert (base["kind"], base["n"], base["finetuned"], base["finished"]) == ("base", 0, False, True)
    assert (trans["source"], trans["target"], trans["n"], trans["finetuned"], trans["finished"]) == (
        "A", "B", 3, True, False)
    assert base["score"] == pytest.approx(0.52) and base["final_accuracy"] == 0.54
    assert (base["iterations"], base["tests"]) == (40, 5)
    assert (trans["iterations"], trans["tests"], trans["final_accuracy"]) == (60, 7, 0.76)
    assert trans["score"] == pytest.approx(score([0.5, 0.51, 0.72, 0.73, 0.74, 0.75, 0.76]))
    assert (trans["wall_seconds"], trans["active_seconds"]) == (104, 8)  # 4 s, gap, 4 s
    curve = (plus / "curve.test.csv").read_text().splitlines()
    assert curve[0] == "NumIters,Seconds,LearningRate,accuracy,loss" and len(curve) == 1 + 7
    out = analyze_split(split)
    table = out["results_csv"].read_text().splitlines()
    assert table[0].split(",")[: len(ROW_COLUMNS)] == list(ROW_COLUMNS) and len(table) == 1 + 2
    assert out["figure_png"].read_bytes()[:4] == b"\x89PNG" and out["figure_pdf"].read_bytes()[:4] == b"%PDF"
    assert out["results_csv"] == split / "results" / "results.csv"
    listed = json.loads(out["outputs_json"].read_text())  # written last: the figures are complete
    assert listed["figure_png"] == str(out["figure_png"]) and listed["absent"] == out["absent"]
    assert all(p.stat().st_mtime <= out["outputs_json"].stat().st_mtime for p in (split / "results").iterdir())
    # what is drawn: the finished baseB alone (A3B+ is unfinished), at its score
    assert _drawn(out["figure2_csv"]) == [("baseB", 0, pytest.approx(0.52), "random0")]
    with open(out["figure2_bottom_csv"], newline="", encoding="utf-8") as f:
        bottom = [(r["group"], int(r["n"]), float(r["mean"]), int(r["runs"])) for r in csv.DictReader(f)]
    assert bottom == [("baseB", 0, pytest.approx(0.52), 1)]


def _tests_log(accuracies: dict[int, float]) -> str:
    """A modern-format log of test accuracies only, {iteration: accuracy}, one second apart."""
    return "".join(glog(f"0403 10:00:{k:02d}.000000", f"Iteration {it}, Testing net (#0)")
                   + glog(f"0403 10:00:{k:02d}.000000", f"    Test net output #0: accuracy = {a}")
                   for k, (it, a) in enumerate(accuracies.items()))


def test_plateau_and_best_tests_after_the_last_lr_step(tmp_path: Path):
    split = tmp_path / "fa20" / "random0"
    meta = {"kind": "base", "target": "B", "n": 0}
    # steps at 60 and 120 (180 is max_iter: no step); a spike at 40 and 0.60-0.62 at 100-120 are among the 10 best
    rising = {it: 0.5 + it / 1000 for it in range(0, 130, 10)} | {40: 0.9}
    late = {130: 0.69, 140: 0.69, 150: 0.70, 160: 0.70, 170: 0.71, 180: 0.71}
    step = _run(split, "baseB", meta, {"train.log": _tests_log(rising | late),
                                       "solver.prototxt": 'max_iter: 180\nlr_policy: "step"  # every 60\n'
                                                          "stepsize: 60\ngamma: 0.1\n"}, finished=True)
    # the 11 tests tie at 0.3 at iterations 0 and 80: the earliest is kept (as score does), 80 is not counted
    ties = {it: 0.3 if it in (0, 80) else 0.5 for it in range(0, 110, 10)}
    _run(split, "baseA", {**meta, "target": "A"},
         {"train.log": _tests_log(ties), "solver.prototxt": "max_iter: 100\nlr_policy: 'multistep'\n"
          "stepvalue: 30\nstepvalue: 70\nstepvalue: 100\ntrain_state { stage: 'x' }\n"}, finished=True)
    _run(split, "B1B", {"kind": "transfer", "source": "B", "target": "B", "n": 1},
         {"train.log": _tests_log({0: 0.4, 10: 0.5, 20: 0.6, 30: 0.6, 40: 0.6})}, finished=True)
    rows = {r["treatment"]: r for r in collect_runs(split)}
    assert last_lr_step(step / "solver.prototxt") == 120
    assert rows["baseB"]["plateau_pp"] == pytest.approx(100 * (0.71 + 0.71 + 0.70 - 0.69 - 0.69 - 0.70) / 3)
    assert rows["baseB"]["best_after_step"] == 6  # 0.9 at 40 and 0.60-0.62 at 100, 110, 120 lie before
    assert rows["baseA"]["best_after_step"] == 2  # after 70: 90 and 100
    assert rows["baseA"]["plateau_pp"] == pytest.approx(100 * (0.3 + 0.5 + 0.5 - 3 * 0.5) / 3)
    assert math.isnan(rows["B1B"]["plateau_pp"]) and rows["B1B"]["best_after_step"] is None  # 5 tests, no solver
    back = {r["treatment"]: r for r in read_results_csv(write_results_csv(list(rows.values()), tmp_path / "r.csv"))}
    assert (back["baseB"]["best_after_step"], back["B1B"]["best_after_step"]) == (6, None)
    assert back["baseA"]["plateau_pp"] == pytest.approx(rows["baseA"]["plateau_pp"])
    assert math.isnan(back["B1B"]["plateau_pp"])


def test_last_lr_step_policies(tmp_path: Path):
    solver = tmp_path / "solver.prototxt"
    for text, step in (('lr_policy: "fixed"\nmax_iter: 100\n', None),
                       ('lr_policy: "step"\nstepsize: 100\nmax_iter: 100\n', None),  # the only step is max_iter
                       ('lr_policy: "step"\nstepsize: 30\nmax_iter: 100\n', 90),
                       ('# max_iter: 10\nlr_policy: "step"\nstepsize: 30\nmax_iter: 100\n', 90),
                       ('lr_policy: "step"\nmax_iter: 100\n', None), ("max_iter: 100\n", None)):
        solver.write_text(text)
        assert last_lr_step(solver) == step, text
    assert last_lr_step(tmp_path / "absent.prototxt") is None


@pytest.mark.parametrize("stamp", ["1202 10:00:00.000000", "20261202 10:00:00.000000"])
def test_the_solver_is_read_from_the_log_caffe_wrote(tmp_path: Path, stamp: str):
    """A run record has no solver.prototxt: the lr step comes from the solver Caffe prints at its start (both
    glog stamp formats end the block)."""
    log = tmp_path / "train.log"
    log.write_text("#### transfer-kit start\n" + glog(stamp, "Initializing solver from parameters: ")
                   + 'test_iter: 63\nbase_lr: 0.01\nmax_iter: 3000\nlr_policy: "step"\nstepsize: 2000\n'
                   + 'net: "train_val.prototxt"\ntrain_state {\n  level: 0\n  stepsize: 7\n}\n'
                   + glog(stamp, "Creating training net from net file: train_val.prototxt")
                   + glog(stamp, "Iteration 0, lr = 0.01") + "max_iter: 5\n")
    text = solver_in_log([log])
    assert text.startswith("test_iter: 63") and text.endswith("}") and "Creating" not in text
    assert last_lr_step(text) == 2000
    assert solver_in_log([tmp_path / "train.log"]) == text and last_lr_step("") is None


def test_analyze_split_needs_runs(tmp_path: Path):
    with pytest.raises(KitError, match="no runs under"):
        analyze_split(tmp_path)
    _run(tmp_path, "baseA", {"kind": "base", "target": "A", "n": 0}, {"train.log": modern("0403", 0, range(1), 0.5)},
         finished=False)
    with pytest.raises(KitError, match="no finished runs under"):
        analyze_split(tmp_path)
    assert (tmp_path / "results" / "results.csv").is_file()  # the table is still written


def test_bad_run_json_is_a_kit_error(tmp_path: Path):
    run = _run(tmp_path, "baseA", {}, {"train.log": ""}, finished=False)
    (run / "run.json").write_text("{not json")
    with pytest.raises(KitError, match="not valid JSON"):
        collect_runs(tmp_path)


def _rows() -> list[dict]:
    common = {"finished": True, "dataset": "fa20", "split": "random0"}
    rows = [{"kind": "base", "source": None, "target": t, "n": 0, "finetuned": False, "score": 0.6 + i / 100,
             **common} for i, t in enumerate("AB")]
    for n in range(1, 8):
        for src, dst, ft in [(s, d, f) for s in "AB" for d in "AB" for f in (False, True)]:
            rows.append({"kind": "transfer", "source": src, "target": dst, "n": n, "finetuned": ft,
                         "score": 0.6 - (src != dst) * n / 100 + ft * 0.01, **common})
    return rows


def _drawn(path: Path) -> list[tuple[str, int, float, str]]:
    """(group, n, score, split) of each point in a figure2.csv, sorted."""
    with open(path, newline="", encoding="utf-8") as f:
        return sorted((r["group"], int(r["n"]), float(r["score"]), r["split"]) for r in csv.DictReader(f))


def test_plot_transfer_writes_png_and_pdf(tmp_path: Path):
    png, pdf, numbers = plot_transfer(_rows(), tmp_path / "fig" / "figure2")
    assert (png.name, pdf.name, numbers.name) == ("figure2.png", "figure2.pdf", "figure2.csv")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 5_000
    again, *_ = plot_transfer(_rows(), tmp_path / "again")
    assert again.read_bytes() == png.read_bytes()  # fixed jitter: the same rows, the same picture
    only_bases, _, bases_csv = plot_transfer(_rows()[:2], tmp_path / "bases")
    assert only_bases.read_bytes()[:4] == b"\x89PNG" and only_bases.read_bytes() != png.read_bytes()
    # no transfer at all: every base is drawn as baseB
    assert _drawn(bases_csv) == [("baseB", 0, 0.6, "random0"), ("baseB", 0, 0.61, "random0")]
    assert len(_drawn(numbers)) == len(_rows()) and numbers.name == "figure2.csv"
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_figure2_csv_holds_every_point_drawn(tmp_path: Path):
    rows = _rows()  # transfers target both halves: both bases are baseB
    label = {(True, False): "BnB", (True, True): "BnB+", (False, False): "AnB", (False, True): "AnB+"}
    expected = sorted(("baseB", 0, round(r["score"], 9), "random0") if r["kind"] == "base" else
                      (label[r["source"] == r["target"], r["finetuned"]], r["n"], round(r["score"], 9), "random0")
                      for r in rows)
    *_, numbers = plot_transfer(rows, tmp_path / "figure2")
    assert numbers.read_text().splitlines()[0] == "group,n,x,score,split,treatment"
    assert _drawn(numbers) == expected and len(expected) == 2 + 7 * 8
    with open(numbers, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):  # drawn at n plus the group's offset and a jitter under 0.03
            offset = {v[0]: v[3] for v in GROUPS.values()}[r["group"]]
            assert abs(float(r["x"]) - int(r["n"]) - offset) < 0.03
    to_b = [r for r in rows if r["kind"] == "base" or r["target"] == "B"]  # no transfer targets A: baseA is none
    *_, numbers = plot_transfer(to_b, tmp_path / "to_b", overlay=to_b)
    drawn = _drawn(numbers)
    assert [d for d in drawn if d[1] == 0] == [("authors' baseB", 0, 0.61, "random0"), ("baseB", 0, 0.61, "random0")]
    assert len(drawn) == 2 * (1 + 7 * 4)


def test_plot_pooling_and_nothing_to_plot(tmp_path: Path):
    row = {"kind": "transfer", "n": 3}
    assert group_of({**row, "source": "A", "target": "A", "finetuned": False}) == "BnB"
    assert group_of({**row, "source": "B", "target": "B", "finetuned": True}) == "BnB+"
    assert group_of({**row, "source": "B", "target": "A", "finetuned": True}) == "AnB+"
    assert group_of({**row, "source": "A", "target": "B", "finetuned": False}) == "AnB"
    assert group_of({"kind": "base", "n": 0}) == "base"
    assert group_of({"kind": "base", "target": "A"}, {"B"}) is None  # no transfer targets half A
    assert group_of({"kind": "base", "target": "B"}, {"B"}) == "base" and group_of({"kind": "random-weights"}) is None
    with pytest.raises(KitError, match="no finished runs under"):
        plot_transfer([{**r, "finished": False} for r in _rows()], tmp_path / "figure2")
    with pytest.raises(KitError, match="no finished runs under"):
        plot_transfer([], tmp_path / "figure2")


def test_a_diverged_run_is_left_out_of_every_figure(tmp_path: Path):
    """A run whose loss became NaN keeps its row (diverged_at says where) but no figure or table uses it."""
    from analysis.rules import usable
    split = tmp_path / "fa20" / "random0"
    meta = {"kind": "transfer", "source": "A", "target": "B", "n": 1, "finetune": True}
    nan_log = modern("0403", 0, range(0, 50, 10), 0.5).replace("loss = 43 (* 1 = 43 loss)",
                                                               "loss = -nan (* 1 = -nan loss)")
    _run(split, "A1B+", meta, {"train.log": nan_log}, finished=True)
    row = collect_runs(split)[0]
    assert row["diverged_at"] == 40 and row["finished"] and not usable(row)


def test_one_setting_per_pooled_group_and_a_cut_half_apart():
    """check_one_setting: the random, natman and whole splits pool, so one protocol key among them; a small split's
    runs on its cut half (baseB, the transfers) have a schedule of their own beside its baseA's."""
    from analysis.results import check_one_setting

    def row(split, treatment, target, key):
        return {"split": split, "treatment": treatment, "repeat": 0, "target": target, "protocol_key": key,
                "iterations": 3000}
    pooled = [row("random0", "baseA", "A", "k1"), row("natman", "baseB", "B", "k1"), row("all", "base", "all", "k1")]
    small = [row("small0k5", "baseA", "A", "k1"), row("small0k5", "baseB", "B", "k5"),
             row("small0k5", "A3B+", "B", "k5")]
    check_one_setting(pooled + small)
    for odd in (row("random1", "baseB", "B", "k2"), row("small0k5", "B1B", "B", "k2")):
        with pytest.raises(KitError, match="ran with 2 different settings"):
            check_one_setting(pooled + small + [odd])
        check_one_setting(pooled + small + [odd], allow_mixed=True)
