"""Shared test helpers: the real Caffe tools and the shared reference folder."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference, or skip when this clone has none beside it."""
    ref = SHARED / "reference"
    if not ref.is_dir():
        pytest.skip(f"{ref} is absent (a user's clone without ../shared)")
    return ref


def run_caffe(args: list[str], cwd: Path, log: Path) -> subprocess.CompletedProcess:
    """Run the real `caffe` binary with glog to `log`; fail the test on a non-zero exit."""
    from kitcore.caffe_env import caffe_env, tool
    with open(log, "w") as f:
        proc = subprocess.run([tool("caffe"), *args], cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                              env=caffe_env(threads=1), check=False)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return proc
