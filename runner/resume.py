"""Start or resume `caffe train` in a run folder from its newest whole snapshot.

Works on any folder holding solver.prototxt and train_val.prototxt (snapshots
under snapshots/): the newest snapshot that is whole (runner.snapshots) is
passed to `--snapshot`, a truncated newer one is set aside with a warning, and
train.log gets a `#### transfer-kit ...` line before each start. caffe runs
under runner.supervise. runner.train uses this for every run;
`python -m runner.resume RUN [--threads N]` runs it on a folder alone.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from kitcore import diskspace
from kitcore.caffe_env import caffe_env, tool
from kitcore.errors import KitError
from runner import snapshots, supervise

log = logging.getLogger(__name__)


def _mark(run: Path, text: str) -> None:
    with open(run / "train.log", "a") as logf:
        logf.write(f"#### transfer-kit {time.strftime('%Y-%m-%d %H:%M:%S')}{text}\n")


def low_space(run: Path) -> bool:
    """Whether the file system of `run` has less room than two snapshot files (or 1 MiB: kitcore.diskspace)."""
    sizes = [p.stat().st_size for p in (Path(run) / "snapshots").glob("snap_iter_*")]
    return diskspace.low_space(run, 2 * max(sizes, default=0))


def disk_full(run: Path, detail: object) -> KitError:
    """The one-line error of a full disk under run folder `run` (kitcore.diskspace's, whose rerun resumes)."""
    return diskspace.disk_full(run, detail, then="rerun the same command to resume")


@functools.cache
def check_gpu() -> None:
    """Raise KitError unless Caffe can run in GPU mode on device 0 here (`caffe device_query -gpu 0`).

    The two ways it fails have different fixes: a CPU-only build (make caffe CUDA=1), and a
    CUDA build on a machine without a usable GPU (caffe_build/patches/cuda makes that one line).
    """
    proc = subprocess.run([tool("caffe"), "device_query", "-gpu", "0"], env=caffe_env(), capture_output=True,
                          text=True, check=False, timeout=120)
    if proc.returncode == 0:
        return
    err = proc.stderr.splitlines()
    if any("CPU-only Caffe" in ln for ln in err):
        raise KitError("--gpu needs a Caffe built with CUDA and a visible GPU; this one says: Cannot use GPU in "
                       f"CPU-only Caffe ({tool('caffe')})",
                       "build and wire GPU Caffe: make caffe CUDA=1 (or point CAFFE_ROOT at a CUDA build); "
                       "or drop --gpu / MODE=cpu")
    kit = [ln[len("error: "):].split("; fix:")[0] for ln in err if ln.startswith("error: CUDA")]
    lines = kit or [ln.split("] ", 1)[-1] for ln in err if " Check failed" in ln or "CUDA" in ln or "cuda" in ln]
    why = (lines[0] if lines else f"caffe device_query exit {proc.returncode}").strip()
    raise KitError(f"--gpu needs a Caffe built with CUDA and a visible GPU; this one says: {why}",
                   "run on a machine with an NVIDIA GPU and its driver (nvidia-smi lists it), "
                   "or drop --gpu / MODE=cpu")


def resume(run: Path, lock_fd: int, threads: int | None = None, gpu: bool = False, weights: str | None = None,
           on_iter=None, name: str | None = None) -> str:
    """Run caffe in `run` to its max_iter, resuming if it can; return 'trained' or 'resumed'."""
    run, name = Path(run), name or Path(run).name
    (run / "snapshots").mkdir(exist_ok=True)
    found = snapshots.newest_valid(run)
    cmd = [tool("caffe"), "train", "--solver=solver.prototxt", "-sigint_effect", "stop", "-sighup_effect", "stop"]
    cmd += ["-gpu=0"] if gpu else []
    if found:
        cmd.append(f"--snapshot=snapshots/{found[1].name}")
    elif weights:
        cmd.append(f"--weights={weights}")
    what = (f"resuming from {found[1].name} (iteration {found[0]})" if found
            else "restarting from iteration 0 (no whole snapshot)" if (run / "train.log").exists() else "starting")
    _mark(run, f" pid {os.getpid()}: {what}: {shlex.join(cmd[1:])}")
    if found:
        log.info("%s: %s", name, what)
    out = supervise.run_caffe(cmd, run, caffe_env(threads), lock_fd, on_iter)
    sig = supervise.stop_requested()
    if out.returncode == 0 and (out.stopped_early or sig):
        state = snapshots.newest_valid(run)
        _mark(run, f": stopped early by request; newest snapshot {state[1].name if state else 'none'}")
        raise supervise.Interrupted(f"training of {name} stopped at iteration {state[0] if state else 0} "
                                    "(snapshot written)", "rerun the same command to resume", sig or 2)
    if out.returncode != 0:
        if low_space(run):
            raise disk_full(run, f"caffe exit {out.returncode}")
        lines = (run / "train.log").read_text(errors="replace").strip().splitlines()
        raise KitError(f"caffe train of {name} failed (exit {out.returncode}); last line: "
                       f"{lines[-1][-200:] if lines else '(empty log)'}",
                       f"read {run / 'train.log'}; rerun the same command to resume")
    return "resumed" if found else "trained"


def main(argv: list[str] | None = None) -> int:
    """`python -m runner.resume RUN`: train or resume the caffe run in a folder; one-line errors."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run", type=Path, help="folder with solver.prototxt and train_val.prototxt")
    parser.add_argument("--threads", type=int, default=None, help="Caffe's compute threads (default: all cores)")
    parser.add_argument("--weights", default=None, help="model to start from when there is no snapshot")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    supervise.install_handlers()
    try:
        with supervise.run_lock(args.run) as fd:
            status = resume(args.run, fd, args.threads, weights=args.weights)
        log.info("%s: %s", args.run, status)
        return 0
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
