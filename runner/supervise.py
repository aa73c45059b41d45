"""The real `caffe train` as a supervised child: one trainer per run folder, signals, live log.

- Lock: an exclusive `flock` on `<run>/.lock`, held for the whole run and
  inherited by the caffe child, so an orphaned caffe still holds it and a second
  trainer of the same folder is refused (`status` reports the run as running).
- Signals: caffe is started with `-sigint_effect stop -sighup_effect stop`.
  Caffe's "stop" ends `Solve()` early and `snapshot_after_train` then writes a
  snapshot of the current iteration, so SIGINT and SIGHUP mean "snapshot, then
  exit 0". Caffe has no SIGTERM handler of its own (tools/caffe.cpp,
  signal_handler.cpp), and glog's failure handler (InstallFailureSignalHandler,
  in Caffe's GlobalInit) dies on SIGTERM with a stack trace and no snapshot. So
  the child blocks SIGTERM (a blocked mask survives exec and glog does not
  unblock it; every caffe thread inherits it) and the kit, which catches
  SIGINT, SIGTERM and SIGHUP (`install_handlers`, main thread), forwards SIGINT
  to every live caffe. A SIGTERM sent to the whole job (scancel, a time limit,
  `kill`) therefore ends in a snapshot too.
- If the kit itself dies (even kill -9), the kernel sends caffe SIGINT
  (PR_SET_PDEATHSIG): it snapshots and stops instead of running on unsupervised.
- Caffe writes its log straight into train.log (it survives the kit), never to
  the terminal; the kit tails that file to report the iteration as it goes and,
  when verbose (kitcore.caffe_env.verbose: --verbose, make VERBOSE=1), echoes
  every line of it to stderr (above any progress bar).
"""
from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from kitcore.caffe_env import verbose
from kitcore.errors import KitError

log = logging.getLogger(__name__)

_ITER = re.compile(r"\] Iteration (\d+)")
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_stop = {"signal": 0}


class Interrupted(KitError):
    """Training stopped on a signal after Caffe wrote a snapshot; rerunning resumes it."""

    def __init__(self, problem: str, fix: str, signum: int):
        super().__init__(problem, fix)
        self.exit_code = 128 + signum


def stop_requested() -> int:
    """The signal number the kit was asked to stop with, or 0."""
    return _stop["signal"]


def _forward(signum, _frame) -> None:
    first = not _stop["signal"]
    _stop["signal"] = _stop["signal"] or signum
    with _live_lock:
        children = list(_live)
    if first:
        log.warning("received %s: asking %d caffe process(es) to snapshot and stop",
                    signal.Signals(signum).name, len(children))
    for proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)


def install_handlers() -> None:
    """Catch SIGINT, SIGTERM and SIGHUP (call from the main thread) and forward them to caffe."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _forward)


def _child_setup() -> None:  # runs in the forked child, before exec
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # glog would catch an ignored one: block it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0)


def lock_holder(run: Path) -> int | None:
    """The pid recorded by the process that holds run's lock, or None if nobody holds it."""
    path = Path(run) / ".lock"
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextmanager
def run_lock(run: Path) -> Iterator[int]:
    """Hold the run folder's exclusive lock; yield its file descriptor."""
    run.mkdir(parents=True, exist_ok=True)
    fh = open(run / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise KitError(f"{run} is being trained by another process (pid {fh.read().strip() or '?'})",
                           "wait for it to finish, or stop it with kill -INT <pid> and rerun") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield fh.fileno()
    finally:
        fh.close()


@dataclass
class Outcome:
    """How a caffe process ended."""

    returncode: int
    stopped_early: bool
    last_iter: int | None


def run_caffe(cmd: list[str], run: Path, env: dict, lock_fd: int,
              on_iter: Callable[[int], None] | None = None, poll_s: float = 0.5) -> Outcome:
    """Run `cmd` in `run` with its output appended to train.log, reporting iterations as they appear."""
    if _stop["signal"]:
        raise Interrupted("not starting caffe: the kit was asked to stop", "rerun the same command to resume",
                          _stop["signal"])
    logf = open(run / "train.log", "ab")
    start = logf.tell()
    last = None
    echo = verbose()
    with logf, open(run / "train.log", "rb") as reader:
        reader.seek(start)
        proc = subprocess.Popen(cmd, cwd=run, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                pass_fds=(lock_fd,), preexec_fn=_child_setup)
        with _live_lock:
            _live.add(proc)
        try:
            buf = b""
            stopped = False
            while True:
                done = proc.poll() is not None
                buf += reader.read()
                *lines, buf = buf.split(b"\n")
                if done and buf:  # a last line without its newline
                    lines, buf = [*lines, buf], b""
                for line in lines:
                    if echo:
                        tqdm.write(line.decode(errors="replace"), file=sys.stderr)
                    stopped = stopped or b"Optimization stopped early" in line
                    m = _ITER.search(line.decode(errors="replace"))
                    if m and on_iter is not None and int(m.group(1)) != last:
                        last = int(m.group(1))
                        on_iter(last)
                if done:
                    break
                time.sleep(poll_s)
        finally:
            with _live_lock:
                _live.discard(proc)
            if proc.poll() is None:  # the kit is unwinding on an exception: let caffe snapshot and stop
                proc.send_signal(signal.SIGINT)
                proc.wait()
    return Outcome(proc.returncode, stopped, last)
