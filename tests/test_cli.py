"""The `transfer-kit` CLI: bad input gives one line naming the problem and the fix, exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT


def kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "; fix: " in lines[0]
    return lines[0]


@pytest.mark.parametrize("args, problem, fix", [
    (["split-random", "--dataset", "imagenet9"], "unknown dataset 'imagenet9'", "fa20"),
    (["split-random", "--seed", "-1"], "invalid split seed -1", "non-negative integer"),
    (["train", "--treatment", "A9B"], "invalid treatment 'A9B'", "n in 1..7"),
    (["train", "--treatment", ""], "invalid treatment ''", "baseA"),
    (["train", "--treatment", "baseA", "--iters", "0"], "--iters must be a positive", "--iters 300"),
])
def test_bad_arguments(tmp_path, args, problem, fix):
    line = one_line_error(kit(*args, "--work", str(tmp_path)))
    assert problem in line and fix in line
    assert not any(tmp_path.iterdir()), "a refused command must not write anything"


def test_train_before_the_split_names_the_make_command(tmp_path):
    line = one_line_error(kit("train", "--treatment", "baseB", "--seed", "2", "--work", str(tmp_path)))
    assert "split random2 of fa20 is not prepared" in line
    assert "make split-random DATASET=fa20 SEED=2" in line


def test_plots_without_runs(tmp_path):
    line = one_line_error(kit("plots", "--work", str(tmp_path)))
    assert "no runs under" in line and "make train TREATMENT=baseA" in line


def test_help_lists_the_make_targets():
    out = kit("--help").stdout
    for command in ("dataset", "split-random", "train", "plots", "demo"):
        assert command in out
