"""The GPU pack (bench/gpu_pack.py) and the GPU check (bench/gpu_check.sh) on a machine without a GPU.

The pack is made for real in a temporary folder (FA-20 split in a temporary work folder, the sdist from
build_caffe.sh's cache, nets from the kit's generators, init weights from pycaffe; no .debs: --skip-debs).
The check runs with --root of the wired CPU build: device_query fails ("Cannot use GPU in CPU-only Caffe"),
every GPU stage is skipped, the CPU trainings of cpu_vs_gpu run with the real caffe binary, and it exits 0
with "stopped where a GPU is needed".
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format

from kitcore.atomic import sha256
from kitcore.caffe_env import caffe_root, pb2

from conftest import ROOT

PACK_PY = ROOT / "bench" / "gpu_pack.py"
CHECK_SH = ROOT / "bench" / "gpu_check.sh"
STAGES = ["prefix", "build", "device", "unit_tests", "cpu_vs_gpu", "time"]


def _env() -> dict:
    env = dict(os.environ)
    if shutil.which("python3") is None:  # the check needs a python3 on PATH
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _pack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PACK_PY), *args], cwd=ROOT, capture_output=True, text=True,
                          env=_env(), check=False)


def _check(*args: str) -> subprocess.CompletedProcess:
    env = {**_env(), "GLOG_minloglevel": "2"}  # as a pycaffe import leaves it: the check must still see INFO lines
    return subprocess.run(["bash", str(CHECK_SH), *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          check=False)


def _one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "; fix: " in lines[0], proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    """A real pack without .debs, made once for this module."""
    base = tmp_path_factory.mktemp("gpu_pack")
    proc = _pack(str(base / "pack"), "--work", str(base / "work"), "--skip-debs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GPU pack" in proc.stdout and "MiB" in proc.stdout, proc.stdout
    return base / "pack"


def test_pack_bad_arguments(tmp_path):
    assert "PACK" in _one_line_error(_pack())
    _one_line_error(_pack(str(tmp_path / "p"), "--no-such-option"))


def test_pack_refuses_a_complete_pack_and_a_foreign_folder(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "manifest.json").write_text("{}")
    assert "--force" in _one_line_error(_pack(str(done)))
    assert (done / "manifest.json").read_text() == "{}"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    assert "not a GPU pack" in _one_line_error(_pack(str(foreign), "--force"))
    assert (foreign / "mine.txt").read_text() == "keep me"


def test_check_bad_arguments(tmp_path):
    assert "PACK and OUT" in _one_line_error(_check())
    assert "no manifest.json" in _one_line_error(_check(str(tmp_path), str(tmp_path / "out")))
    (tmp_path / "manifest.json").write_text("{}")
    assert "unknown option" in _one_line_error(_check(str(tmp_path), str(tmp_path / "out"), "--bogus"))
    assert "needs a folder" in _one_line_error(_check(str(tmp_path), str(tmp_path / "out"), "--root"))
    assert "no build/tools/caffe" in _one_line_error(_check(str(tmp_path), str(tmp_path / "o"), "--root", "/"))
    assert "unexpected argument" in _one_line_error(_check(str(tmp_path), "o", "extra"))


def _net(path: Path):
    net = pb2().NetParameter()
    text_format.Merge(path.read_text(), net)
    return net


def test_pack_contents(pack):
    m = json.loads((pack / "manifest.json").read_text())
    for rel, entry in m["files"].items():
        assert (pack / rel).stat().st_size == entry["bytes"] and sha256(pack / rel) == entry["sha256"], rel
    assert {"sdist", "fa20", "nets"} == set(m["bytes"]) and m["total_bytes"] < 15 * 2**20
    assert m["debs"].startswith("skipped") and m["split"]["num_classes"] == 10
    solver = pb2().SolverParameter()
    text_format.Merge((pack / "nets" / "solver.prototxt").read_text(), solver)
    assert (solver.max_iter, solver.display, solver.snapshot, solver.random_seed) == (100, 1, 0, 1)
    assert solver.net == "train_val.prototxt" and solver.test_interval == 50
    kit, nodrop = _net(pack / "nets" / "train_val.prototxt"), _net(pack / "nets" / "train_val_nodrop.prototxt")
    ratios = lambda net: [layer.dropout_param.dropout_ratio for layer in net.layer if layer.type == "Dropout"]
    assert ratios(kit) == [0.5, 0.5] and ratios(nodrop) == [0.0, 0.0]
    assert [layer.data_param.source for layer in kit.layer if layer.type == "Data"] == [
        "../../data/B_train_lmdb", "../../data/B_val_lmdb"]
    for name, frozen in (("baseB", 0), ("A7B", 7)):
        net = _net(pack / "nets" / f"paper_{name}.prototxt")
        dummy = [layer for layer in net.layer if layer.type == "DummyData"]
        assert [list(d.dummy_data_param.shape[0].dim) for d in dummy] == [[256, 3, 227, 227], [50, 3, 227, 227]]
        assert not any(layer.type == "Data" for layer in net.layer)
        weights = [layer for layer in net.layer if layer.type in ("Convolution", "InnerProduct")]
        assert [layer.param[0].lr_mult == 0 for layer in weights] == [True] * frozen + [False] * (8 - frozen)
    paper = json.loads((pack / "nets" / "paper_solver.json").read_text())
    assert (paper["max_iter"], paper["test_interval"], paper["test_iter"], paper["test_batch"]) == (
        450000, 1000, 1000, 50)
    assert m["nets"]["fa20"]["moved_one_ulp"] > 0.99 * m["nets"]["fa20"]["params"] - 1000  # biases stay 0
    assert _pack(str(pack)).returncode == 2 and json.loads((pack / "manifest.json").read_text()) == m


def test_check_refuses_a_changed_pack(pack, tmp_path):
    copy = tmp_path / "pack"
    shutil.copytree(pack, copy)
    (copy / "nets" / "solver.prototxt").write_text("max_iter: 1\n")
    line = _one_line_error(_check(str(copy), str(tmp_path / "out"), "--root", str(caffe_root())))
    assert "does not match its manifest.json" in line and "solver.prototxt" in line


@pytest.mark.slow
def test_check_without_a_gpu_runs_the_cpu_parts(pack, tmp_path):
    root = caffe_root()
    assert root is not None and (root / "build" / "tools" / "caffe").exists(), "fix: make caffe"
    cpu_only = "CPU_ONLY := 1" in (root / "Makefile.config").read_text()
    smi = shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    if not cpu_only and smi and "GPU" in smi:
        pytest.skip("a GPU build with a GPU: this test is the check's path without one")
    out = tmp_path / "out"
    proc = _check(str(pack), str(out), "--root", str(root))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stopped where a GPU is needed" in proc.stdout.strip().splitlines()[-1], proc.stdout
    res = json.loads((out / "gpu_check.json").read_text())
    stages = {s["name"]: s for s in res["stages"]}
    assert [s["name"] for s in res["stages"]] == STAGES
    assert [stages[n]["status"] for n in STAGES] == ["skipped", "skipped", "failed", "skipped", "ran", "skipped"]
    assert stages["device"]["reason"].startswith("no GPU: ")
    assert not cpu_only or "Cannot use GPU in CPU-only Caffe" in stages["device"]["reason"]
    assert all(stages[n]["reason"].startswith("no GPU") for n in ("unit_tests", "cpu_vs_gpu", "time"))
    assert all(s["seconds"] >= 0 for s in res["stages"]) and stages["cpu_vs_gpu"]["seconds"] > 1
    runs = res["cpu_vs_gpu"]["runs"]
    assert {"cpu_nodrop", "cpu_nodrop_ulp", "cpu_kit", "cpu_kit_seed2"} <= set(runs)
    assert not any(name.startswith("gpu") for name in runs)
    for name, run in runs.items():
        assert run["rc"] == 0 and run["mode"] == "cpu", name
        assert len(run["losses"]) == 100 and all(isinstance(v, float) and math.isfinite(v) for v in run["losses"])
        assert [t[0] for t in run["test"]] == [0, 50, 100] and run["model_sha256"]
    comps = res["cpu_vs_gpu"]["comparisons"]
    assert res["cpu_vs_gpu"]["checks"] == [] and "nodrop_cpu_vs_gpu" not in comps
    assert comps["cpu_spread_ulp"]["iter0_rel"] <= res["tolerances"]["iter0_rel"]
    assert comps["cpu_spread_dropout_masks"]["test0_loss_rel"] == 0  # TEST has no dropout: the same forward
    assert (res["versions"]["makefile_config"].get("CPU_ONLY") == "1") == cpu_only
    assert (out / "logs" / "train_cpu_nodrop.log").is_file() and not Path(res["scratch"]).exists()
