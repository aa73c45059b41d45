"""Tests of kitcore/caffe_log.py and kitcore/glog.py: 2014 logs, real modern Caffe logs, merging."""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
from google.protobuf import text_format

from kitcore.caffe_log import best_indices, parse_log, score, write_csvs
from kitcore.errors import KitError

from conftest import run_caffe

REF_RUNS = ["half0A", "half0B", "nolearn_1_3", "transfer-ft0A0B_1_3", "transfer0A0A_1_3", "transfer0A0B_1_3",
            "transfernatmanAB_1_3"]
# the header BVLC tools/extra/parse_log.py writes: the first row's keys, i.e. NumIters, Seconds,
# LearningRate, then the net outputs in log order (train: loss; test: accuracy, loss)
BVLC_TRAIN_HEADER = ["NumIters", "Seconds", "LearningRate", "loss"]
BVLC_TEST_HEADER = ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"]


def glog(stamp: str, msg: str, where: str = "solver.cpp:1") -> str:
    """A glog line with the given `MMDD hh:mm:ss.us` (or `YYYYMMDD ...`) stamp."""
    return f"I{stamp}  4242 {where}] {msg}\n"


def mark_finished(run: Path) -> None:  # what kitcore.layout.is_finished looks for: a result.json naming a model
    (run / "snapshots").mkdir(exist_ok=True)
    (run / "snapshots" / "final.caffemodel").write_bytes(b"weights")
    (run / "result.json").write_text('{"model": "snapshots/final.caffemodel"}')


def modern(day: str, t0: int, its: range, acc: float, extra: bool = False) -> str:
    """A modern-format log: test, train loss, lr at each iteration of `its`, one second apart."""
    out = []
    for k, it in enumerate(its):
        s = f"{day} 10:{(t0 + k) // 60:02d}:{(t0 + k) % 60:02d}.000000"
        out += [glog(s, f"Iteration {it}, Testing net (#0)"),
                glog(s, f"    Test net output #0: accuracy = {acc + it / 1000}"),
                glog(s, f"    Test net output #1: loss = {1 + it} (* 1 = {1 + it} loss)"),
                glog(s, f"Iteration {it} (12.5 iter/s, 0.8s/10 iters), loss = {2 + it}"),
                glog(s, f"    Train net output #0: loss = {3 + it} (* 1 = {3 + it} loss)")]
        if extra:
            out.append(glog(s, f"    Train net output #1: acc_train = {acc}"))
        out.append(glog(s, f"Iteration {it}, lr = {0.1 / (1 + it)}", "sgd_solver.cpp:106"))
    return "".join(out)


# ---- the authors' 2014 logs -------------------------------------------------------------

def _ref_logs(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("*.gz"), key=lambda p: int(p.name.rsplit(".o", 1)[1].split(".")[0]))


def _independent(files: list[Path]) -> tuple[dict[int, float], set[int]]:
    """Test accuracies by iteration (later files win) and train iterations, by splitting words."""
    acc, train = {}, set()
    for f in files:
        current = None
        for line in gzip.decompress(f.read_bytes()).decode().splitlines():
            words = line.split()
            if words[-2:] == ["Testing", "net"]:
                current = int(words[-3].rstrip(","))
            elif words[-3:-1] == ["score", "#0:"]:
                acc[current] = float(words[-1])
            elif words[-3:-1] == ["loss", "="] and words[-4].endswith(","):
                train.add(int(words[-4].rstrip(",")))
    return acc, train


@pytest.mark.parametrize("name", REF_RUNS)
def test_reference_run(reference_dir: Path, name: str):
    files = _ref_logs(reference_dir / "original_runs" / name)
    parsed = parse_log(files)
    acc, train = _independent(files)
    assert [r["NumIters"] for r in parsed.test] == sorted(acc)
    assert parsed.test_accuracies == [acc[k] for k in sorted(acc)]
    assert len(parsed.test_accuracies) == 450 and parsed.last_iteration == 450000
    assert [r["NumIters"] for r in parsed.train] == sorted(train)
    best = sorted(acc.values())[-10:]
    assert score(parsed.test_accuracies) == pytest.approx(sum(best) / 10, abs=1e-12)
    assert parsed.skipped_lines == 0 and parsed.truncated_files == []
    seconds = [r["Seconds"] for r in parsed.test]
    assert min(seconds) >= 0
    assert 4 * 86400 < parsed.wall_seconds < 30 * 86400  # days of training, not a year off


def test_reference_score_matches_paper_scale(reference_dir: Path):
    parsed = parse_log(_ref_logs(reference_dir / "original_runs" / "half0B"))
    assert 0.60 < score(parsed.test_accuracies) < 0.65  # the paper: baseB top-1 0.625 (mean of splits)


# ---- time stamps ------------------------------------------------------------------------

def _seconds(tmp_path: Path, stamps: list[str]) -> list[float]:
    log = tmp_path / "t.log"
    log.write_text("".join(glog(s, f"Iteration {10 * i}, lr = 0.1") for i, s in enumerate(stamps)))
    return [r["Seconds"] for r in parse_log([log]).train]


def test_midnight_and_new_year(tmp_path: Path):
    assert _seconds(tmp_path, ["1231 23:59:50.000000", "0101 00:00:05.000000", "0101 23:59:59.000000",
                               "0102 00:00:01.500000"]) == [0, 15, 15 + 86394, 15 + 86394 + 2.5]
    assert _seconds(tmp_path, ["20231231 23:59:59.000000", "20240101 00:00:01.000000"]) == [0, 2]


def test_leap_day_only_when_seen(tmp_path: Path):
    assert _seconds(tmp_path, ["0228 23:00:00.0", "0301 01:00:00.0"]) == [0, 7200]
    assert _seconds(tmp_path, ["0228 23:00:00.0", "0229 01:00:00.0", "0301 01:00:00.0"]) == [0, 7200, 93600]


def test_clock_never_goes_back(tmp_path: Path):
    # threads interleaving (0.5 s back), then a clock set back an hour
    assert _seconds(tmp_path, ["0403 10:00:01.0", "0403 10:00:00.5", "0403 10:00:02.0",
                               "0403 09:00:03.0", "0403 09:00:04.0"]) == [0, 0, 1, 1, 2]


def test_restart_gap_counts_in_wall_not_active(tmp_path: Path):
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text(glog("0403 10:00:00.0", "Iteration 0, lr = 1") + glog("0403 10:01:00.0", "Iteration 10, lr = 1"))
    second.write_text(glog("0403 12:00:00.0", "Iteration 10, lr = 2") + glog("0403 12:00:30.0", "Iteration 20, lr = 2"))
    parsed = parse_log([first, second])
    assert [r["Seconds"] for r in parsed.train] == [0, 7200, 7230]
    assert (parsed.wall_seconds, parsed.active_seconds) == (7230, 90)


# ---- merging, garbage, CSV --------------------------------------------------------------

def test_merge_overlapping_logs_later_wins(tmp_path: Path):
    first, second = tmp_path / "train.log.1", tmp_path / "train.log.gz"
    first.write_text(modern("0403", 0, range(0, 50, 10), 0.5, extra=True))
    second.write_bytes(gzip.compress(modern("0403", 100, range(20, 70, 10), 0.7).encode()))
    parsed = parse_log([first, second])
    assert [(r["NumIters"], r["accuracy"]) for r in parsed.test] == [
        (0, 0.5), (10, 0.51), (20, 0.72), (30, 0.73), (40, 0.74), (50, 0.75), (60, 0.76)]
    rows = {r["NumIters"]: r for r in parsed.train}
    assert rows[10]["acc_train"] == 0.5 and "acc_train" not in rows[40]  # whole rows replaced
    assert rows[40]["loss"] == 43 and rows[40]["LearningRate"] == pytest.approx(0.1 / 41)
    one = tmp_path / "train.log"  # the runner's way: one file, a `####` line before the resume
    one.write_text(first.read_text() + "#### transfer-kit: resuming\n" + gzip.decompress(second.read_bytes()).decode())
    assert parse_log([one]).test == parsed.test and parse_log([one]).train == parsed.train


def test_garbled_lines_are_counted_not_fatal(tmp_path: Path):
    good = modern("0403", 0, range(0, 30, 10), 0.5)
    bad = [glog("0403 10:00:05.0", "Iteration 20, lr = "),
           "I0403 10:00:0\n",
           glog("0403 10:00:05.0", "Iteration 20, loss = 6.6").rstrip("\n") + glog("0403 10:00:05.1", "x"),
           glog("1340 10:00:05.0", "Iteration 40, loss = 1"),
           glog("0231 10:00:05.0", "Iteration 40, loss = 1"),
           glog("0403 10:00:06.0", "    Test net output #0: accuracy = 0.9", "net.cpp:1").replace(
               "Iteration", ""),
           "\x00\x00\x00\x00 binary junk\n"]
    harmless = ["a line that is not Caffe's\n", glog("0403 10:00:06.0", "Creating layer data", "net.cpp:100")]
    log = tmp_path / "train.log"
    log.write_text(good + "".join(bad) + "".join(harmless)
                   + glog("0403 10:00:07.0", "Iteration 6").rstrip("\n"))  # cut, no newline
    parsed = parse_log([log])
    assert parsed.skipped_lines == len(bad) + 1
    assert len(parsed.skipped_examples) == len(bad) + 1
    assert [r["accuracy"] for r in parsed.test] == [0.5, 0.51, 0.52]
    assert [r["loss"] for r in parsed.train] == [3, 13, 23]


def test_truncated_gzip_is_read_up_to_the_break(tmp_path: Path):
    data = gzip.compress(modern("0403", 0, range(0, 500, 10), 0.5).encode())
    log = tmp_path / "train.log.1.gz"
    log.write_bytes(data[: len(data) // 2])
    parsed = parse_log([log])
    assert parsed.truncated_files == [str(log)]
    assert 0 < len(parsed.test) < 50 and parsed.test[0]["accuracy"] == 0.5


def test_missing_log_is_a_kit_error(tmp_path: Path):
    with pytest.raises(KitError, match="does not exist"):
        parse_log([tmp_path / "nope.log"])


def test_csv_headers_match_bvlc(tmp_path: Path):
    log = tmp_path / "train.log"
    log.write_text(modern("0403", 0, range(0, 30, 10), 0.5))
    train_csv, test_csv = write_csvs(parse_log([log]), tmp_path / "curve")
    assert (train_csv.name, test_csv.name) == ("curve.train.csv", "curve.test.csv")
    assert train_csv.read_text().splitlines()[0].split(",") == BVLC_TRAIN_HEADER
    assert test_csv.read_text().splitlines()[:2] == [",".join(BVLC_TEST_HEADER), "0,0.0,0.1,0.5,1.0"]
    empty = tmp_path / "empty.log"
    empty.write_text("")
    write_csvs(parse_log(empty), tmp_path / "e")
    assert (tmp_path / "e.test.csv").read_text().strip().split(",") == BVLC_TEST_HEADER
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == []


def test_score():
    assert math.isnan(score([]))
    assert score([0.1, 0.3, 0.2]) == pytest.approx(0.2)
    assert score([i / 100 for i in range(20)]) == pytest.approx(sum(range(10, 20)) / 1000)
    assert score([0.5, float("nan"), 0.7], top=1) == 0.7
    assert best_indices([0.3, 0.5, float("nan"), 0.3, None, 0.3], top=3) == [1, 0, 3]  # ties: the earliest


# ---- a real modern log from the real caffe binary ---------------------------------------

def _tiny_net() -> str:
    from kitcore.caffe_env import pb2
    caffe_pb2 = pb2()
    net = caffe_pb2.NetParameter(name="tiny")
    data = net.layer.add(name="data", type="DummyData", top=["data", "label"])
    data.dummy_data_param.shape.add(dim=[8, 5])
    data.dummy_data_param.shape.add(dim=[8])
    data.dummy_data_param.data_filler.add(type="gaussian", std=1)
    data.dummy_data_param.data_filler.add(type="constant", value=1)
    ip = net.layer.add(name="ip", type="InnerProduct", bottom=["data"], top=["ip"])
    ip.inner_product_param.num_output = 3
    ip.inner_product_param.weight_filler.type = "xavier"
    net.layer.add(name="loss", type="SoftmaxWithLoss", bottom=["ip", "label"], top=["loss"])
    acc = net.layer.add(name="accuracy", type="Accuracy", bottom=["ip", "label"], top=["accuracy"])
    acc.include.add(phase=caffe_pb2.TEST)
    return text_format.MessageToString(net)


@pytest.fixture(scope="module")
def caffe_logs(tmp_path_factory) -> dict[str, Path]:
    """Logs of a real 40-iteration run and of a resume of it from its iteration-20 snapshot."""
    from kitcore.caffe_env import pb2
    caffe_pb2 = pb2()
    d = tmp_path_factory.mktemp("caffe")
    (d / "net.prototxt").write_text(_tiny_net())
    solver = caffe_pb2.SolverParameter(net="net.prototxt", base_lr=0.1, lr_policy="step", gamma=0.5,
                                       stepsize=20, max_iter=40, display=10, test_interval=10,
                                       snapshot=20, snapshot_prefix="snap", random_seed=1,
                                       solver_mode=caffe_pb2.SolverParameter.CPU)
    solver.test_iter.append(2)
    (d / "solver.prototxt").write_text(text_format.MessageToString(solver))
    run_caffe(["train", "--solver=solver.prototxt"], d, d / "full.log")
    run_caffe(["train", "--solver=solver.prototxt", "--snapshot=snap_iter_20.solverstate"], d, d / "resume.log")
    return {"full": d / "full.log", "resume": d / "resume.log"}


def _raw_values(log: Path) -> dict[str, dict[int, float]]:
    """lr, train loss and test accuracy by iteration, read from the raw text with str methods."""
    out: dict[str, dict[int, float]] = {"lr": {}, "loss": {}, "accuracy": {}}
    it = None
    for line in log.read_text().splitlines():
        msg = line.partition("] ")[2].strip()
        if msg.startswith("Iteration "):
            it = int(msg.split()[1].rstrip(","))
            if ", lr = " in msg:
                out["lr"][it] = float(msg.rsplit(" ", 1)[1])
        elif msg.startswith("Train net output") and ": loss = " in msg:
            out["loss"][it] = float(msg.split(" = ")[1].split()[0])
        elif msg.startswith("Test net output") and ": accuracy = " in msg:
            out["accuracy"][it] = float(msg.rsplit(" ", 1)[1])
    return out


def test_real_caffe_log(caffe_logs):
    parsed = parse_log(caffe_logs["full"])
    raw = _raw_values(caffe_logs["full"])
    assert parsed.skipped_lines == 0 and parsed.last_iteration == 40
    assert [r["NumIters"] for r in parsed.test] == [0, 10, 20, 30, 40]
    assert [r["NumIters"] for r in parsed.train] == [0, 10, 20, 30, 40]
    assert {r["NumIters"]: r["accuracy"] for r in parsed.test} == raw["accuracy"]
    assert {r["NumIters"]: r["loss"] for r in parsed.train if r["NumIters"] < 40} == raw["loss"]
    assert {r["NumIters"]: r["LearningRate"] for r in parsed.train if r["NumIters"] < 40} == raw["lr"]
    assert raw["lr"] == {0: 0.1, 10: 0.1, 20: 0.05, 30: 0.05}  # step policy: the solver's numbers
    assert all(0 <= r["accuracy"] <= 1 and r["loss"] > 0 for r in parsed.test)
    secs = [r["Seconds"] for r in parsed.train]
    assert secs == sorted(secs) and secs[0] >= 0
    train_csv, test_csv = write_csvs(parsed, caffe_logs["full"].with_name("curve"))
    assert test_csv.read_text().splitlines()[0].split(",") == BVLC_TEST_HEADER
    assert train_csv.read_text().splitlines()[0].split(",") == BVLC_TRAIN_HEADER


def test_real_resume_merges(caffe_logs):
    merged = parse_log([caffe_logs["full"], caffe_logs["resume"]])
    resumed = _raw_values(caffe_logs["resume"])
    assert sorted(resumed["accuracy"]) == [20, 30, 40]  # caffe tests again at the restored iteration
    accs = {r["NumIters"]: r["accuracy"] for r in merged.test}
    assert {k: accs[k] for k in (20, 30, 40)} == resumed["accuracy"]
    assert accs[0] == _raw_values(caffe_logs["full"])["accuracy"][0]


# ---- the parser's fast path agrees with the general one --------------------------------

def test_fast_path_edge_lines(tmp_path: Path):
    good = [glog("0403 10:00:00.0", "Iteration 0, lr = 0.01"),
            glog("0403 10:00:00.1", "   Iteration 0, loss = 6.9   ").replace("\n", "\r\n"),
            glog("20260403 10:00:01.0", "Iteration 20 (3.1 iter/s, 6.4s/20 iters), loss = nan"),
            glog("0403 10:00:02.0", "Iteration 40, lr = 1e-05")]
    bad = [glog("0403 25:00:03.0", "Iteration 60, lr = 0.01"),   # hour 25
           glog("0230 10:00:03.0", "Iteration 60, loss = 1"),    # Feb 30
           glog("0403 10:00:03.0", "Iteration 60 (x), lr = 1"),  # lr never has a parenthesis
           glog("0403 10:00:03.0", "Iteration 60, lr = 1 2")]
    log = tmp_path / "t.log"
    log.write_text("".join(good + bad))
    assert (parsed := parse_log(log)).skipped_lines == len(bad)
    assert [(r["NumIters"], r.get("LearningRate")) for r in parsed.train] == [(0, 0.01), (20, 0.01), (40, 1e-05)]
    assert parsed.train[0]["loss"] == 6.9 and math.isnan(parsed.train[1]["loss"])
