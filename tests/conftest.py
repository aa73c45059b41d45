"""Shared test helpers: the real Caffe tools, the shared reference folder, a real single-node Slurm (`slurm`)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
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


@pytest.fixture(scope="session")
def random0_tiny(tmp_path_factory) -> Path:
    """A work folder where random0's grid finished at 2 iterations a run: the full-k reference that the record
    tests of other protocols (small, mix) publish beside their own grid, which each trains into it (a split of
    its own)."""
    import sys
    work = tmp_path_factory.mktemp("random0tiny")
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "grid", "--work", str(work), "--iters", "2",
                           "--jobs", "2", "--protocol", "random"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def beside_random0(work: Path, records: Path, folder: str, split: str, runs: int, *grid_args: str) -> Path:
    """Train a grid (grid_args: its protocol's options) into random0_tiny's work folder at 2 iterations a run, then
    publish random0 into `records` and the grid's split into records/<folder>; return `records`."""
    import sys

    def kit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False)
    proc = kit("grid", "--work", str(work), "--iters", "2", "--jobs", "2", *grid_args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert kit("publish", "--work", str(work), "--records", str(records), "--splits", "random0").returncode == 0
    proc = kit("publish", "--work", str(work), "--records", str(records / folder), "--splits", split)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"{split}: published {runs} runs into"), proc.stdout
    return records


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a fresh tmpfs of that size ("4m") under tmp_path, and resize(path, size) to give it more
    room (as a user freeing space would); root only, else the test is skipped; unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        mnt = tmp_path / f"small{len(mounted)}"
        mnt.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          check=False).returncode:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(mnt)
        return mnt

    def resize(mnt: Path, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)

    mount.resize = resize
    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, leave: int = 0) -> Path:
    """Fill the file system of `mnt` with one file until at most `leave` bytes are free; return the file."""
    filler = mnt / "filler"
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(mnt).free - leave))
    return filler


def run_caffe(args: list[str], cwd: Path, log: Path) -> subprocess.CompletedProcess:
    """Run the real `caffe` binary with glog to `log`; fail the test on a non-zero exit."""
    from kitcore.caffe_env import caffe_env, tool
    with open(log, "w") as f:
        proc = subprocess.run([tool("caffe"), *args], cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                              env=caffe_env(threads=1), check=False)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return proc


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str) -> None:
    """Poll `pred` every 0.2 s until it is true; TimeoutError naming `what` after `timeout` seconds."""
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise TimeoutError(what)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A real slurmctld + slurmd + munged on localhost; yields the environment that reaches it."""
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        pytest.skip("slurm-wlm and munge are not installed (make system installs them)")
    root = Path(tempfile.mkdtemp(prefix="tks", dir="/tmp"))
    os.chmod(root, 0o755)
    (root / "munge").mkdir(mode=0o755)
    (root / "state").mkdir()
    (root / "spool").mkdir()
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    conf = f"""ClusterName=tk
SlurmctldHost=localhost
SlurmctldPort={_port()}
SlurmdPort={_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MinJobAge=3600
KillWait=30
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
    (root / "slurm.conf").write_text(conf)
    procs = []
    try:
        subprocess.run(["mungekey", "--create", "--force", f"--keyfile={root}/munge/munge.key"], check=True)
        m = root / "munge"
        procs.append(subprocess.Popen(["munged", "--foreground", f"--socket={m}/munge.socket",
                                       f"--key-file={m}/munge.key", f"--pid-file={m}/munged.pid",
                                       f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"]))
        wait_until(lambda: (m / "munge.socket").exists(), 20, "munged")
        procs.append(subprocess.Popen(["slurmctld", "-D", "-f", str(root / "slurm.conf")], env=env))
        wait_until(lambda: "UP" in subprocess.run(["scontrol", "ping"], env=env, capture_output=True,
                                             text=True).stdout, 30, "slurmctld")
        procs.append(subprocess.Popen(["slurmd", "-D", "-N", "localhost", "-f", str(root / "slurm.conf")], env=env))
        wait_until(lambda: subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%t"], env=env, capture_output=True,
                                     text=True).stdout.strip() == "idle", 30, "slurmd")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, check=False, capture_output=True)
        try:
            wait_until(lambda: not subprocess.run(["squeue", "-h"], env=env, capture_output=True,
                                             text=True).stdout.strip(), 45, "squeue empty")
        except TimeoutError:
            pass
        subprocess.run(["scontrol", "shutdown"], env=env, check=False, capture_output=True)
        for proc in reversed(procs):  # slurmd, slurmctld: they end on the shutdown; munged only on SIGTERM
            if proc is procs[0]:
                proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
