"""The grid on a Slurm cluster: the same DAG as a local grid, submitted with sbatch.

Every unfinished base is one job; the unfinished transfers of a base are one
job array with `--dependency=afterok:<base job>` and `--kill-on-invalid-dep=yes`
(a failed base cancels them instead of leaving them pending forever). A job
runs `transfer-kit train` for its treatment, which resumes from the run folder
like a local run, so a cancelled or failed job is simply submitted again by
rerunning the grid command; finished runs and runs whose job is still queued or
running are not submitted twice. Jobs get `--signal=B:TERM@signal_s`: the kit
turns SIGTERM into a Caffe snapshot (runner.supervise) before the time limit.
Replicates (runner.train's `repeat`) are runs like any other, named by their
folder (`A3B.r2`) in jobs.json and the status table; a job passes `--repeat r`,
and the transfers of one base and one r are one array, after the r = 0 base.
Job ids are kept in `<split>/slurm/jobs.json`, job logs in `<split>/slurm/`.
Settings come from runner/slurm.toml (defaults, one comment per key) and an
optional user file with the same keys.
"""
from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from kitcore import atomic, layout
from kitcore.errors import KitError
from kitcore.profiles import KIT
from runner.runstate import run_state
from runner.train import RunSpec

log = logging.getLogger(__name__)
DEFAULTS = Path(__file__).with_name("slurm.toml")
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


def load_config(path: Path | None = None) -> dict:
    """The defaults of runner/slurm.toml, overridden by `path`; unknown keys and wrong types are errors."""
    config = tomllib.loads(DEFAULTS.read_text())
    if path is None:
        return config
    try:
        user = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KitError(f"cannot read the Slurm config {path} ({exc})",
                       f"fix the file; its keys and types are those of {DEFAULTS}") from exc
    for key, value in user.items():
        if key not in config:
            raise KitError(f"unknown key {key!r} in {path}", f"use only: {', '.join(config)} (see {DEFAULTS})")
        want = type(config[key])
        if type(value) is not want or (want is list and not all(isinstance(v, str) for v in value)):
            raise KitError(f"{key} in {path} must be {want.__name__ if want is not list else 'a list of strings'}, "
                           f"got {value!r}", f"write e.g. {key} = {json.dumps(config[key])}")
        config[key] = value
    if not _TIME.match(config["time"]):
        raise KitError(f"time = {config['time']!r} is not a Slurm time", 'write e.g. time = "2-00:00:00" or "90:00"')
    for key in ("cpus", "gpus", "mem_mb", "signal_s"):
        if config[key] < (1 if key == "cpus" else 0):
            raise KitError(f"{key} = {config[key]} is out of range", f"set {key} to a non-negative number (cpus >= 1)")
    return config


def _slurm(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise KitError(f"{cmd[0]} is not on PATH (no Slurm client here)",
                       "run on a Slurm login node, or use the local engine (ENGINE=local)")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise KitError(f"{cmd[0]} failed: "
                       f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}",
                       "check the partition, time and resources in your Slurm config")
    return proc


def _jobs_file(split_dir: Path) -> Path:
    return Path(split_dir) / "slurm" / "jobs.json"


def _train_cmd(spec: RunSpec, config: dict) -> list[str]:
    return [sys.executable, "-m", "runner.cli", "train", "--threads", str(config["cpus"]), *spec.cli_flags()]


def _sbatch(name: str, script: str, config: dict, out_dir: Path, array: int = 0, after: str | None = None) -> str:
    cmd = ["sbatch", "--parsable", f"--job-name={name}", f"--chdir={KIT}", f"--time={config['time']}",
           f"--cpus-per-task={config['cpus']}", f"--signal=B:TERM@{config['signal_s']}",
           f"--output={out_dir}/%x-{'%A_%a' if array else '%j'}.out", "--kill-on-invalid-dep=yes"]
    cmd += [f"--partition={config['partition']}"] if config["partition"] else []
    cmd += [f"--gres=gpu:{config['gpus']}"] if config["gpus"] else []
    cmd += [f"--mem={config['mem_mb']}"] if config["mem_mb"] else []
    cmd += [f"--array=0-{array - 1}"] if array else []
    cmd += [f"--dependency=afterok:{after}"] if after else []
    cmd += list(config["extra_args"]) + ["--wrap", script]
    job = _slurm(cmd).stdout.strip().split(";")[0]
    log.info("submitted %s as job %s%s", name, job, f" after {after}" if after else "")
    return job


def submit_grid(specs: list[RunSpec], config: dict) -> list[str]:
    """Submit the unfinished runs of `specs` (one split, dependency order); return one line per run."""
    if any(s.gpu for s in specs) and config["gpus"] < 1:
        raise KitError("--gpu needs a GPU per job but the Slurm config has gpus = 0", "set gpus = 1 in your config")
    split_dir = specs[0].split_dir
    out_dir = split_dir / "slurm"
    out_dir.mkdir(parents=True, exist_ok=True)
    known = job_states(split_dir)
    jobs = json.loads(_jobs_file(split_dir).read_text()) if _jobs_file(split_dir).exists() else {}
    job_of: dict[str, str] = {}
    lines, transfers = [], {}
    for spec in specs:
        name, state = spec.run_dir.name, run_state(spec)
        job = known.get(name)
        if state["state"] == "finished":
            lines.append(f"{name:10s} finished           {state['detail']}")
        elif job and job["state"] in ACTIVE:
            job_of[name] = job["id"]
            lines.append(f"{name:10s} already queued     job {job['id']} {job['state']}")
        elif spec.treatment.base_name is None:
            script = f"exec {shlex.join(_train_cmd(spec, config) + ['--treatment', spec.treatment.name])}"
            job_of[name] = jobs[name] = _sbatch(f"tk-{split_dir.name}-{name}", script, config, out_dir)
            lines.append(f"{name:10s} submitted          job {job_of[name]} ({state['state']})")
        else:
            transfers.setdefault((spec.treatment.base_name, spec.repeat), []).append((spec, state))
    for (base, repeat), group in transfers.items():
        if base not in job_of and not layout.is_finished(layout.run_dir(split_dir, base)):
            raise KitError(f"{group[0][0].treatment.name} needs base {base}, "
                           "which is neither finished nor in this grid",
                           f"add {base} to the grid or train it first: {group[0][0].make_cmd(base)}")
        names = [s.treatment.name for s, _ in group]
        script = ("set -- " + shlex.join(names) + '; shift "$SLURM_ARRAY_TASK_ID"; exec '
                  + shlex.join(_train_cmd(group[0][0], config)) + ' --treatment "$1"')  # one r: one --repeat
        array = _sbatch(f"tk-{split_dir.name}-from-{layout.run_name(base, repeat)}", script, config, out_dir,
                        len(names), job_of.get(base))
        for i, (spec, state) in enumerate(group):
            jobs[spec.run_dir.name] = f"{array}_{i}"
            lines.append(f"{spec.run_dir.name:10s} submitted          job {array}_{i}"
                         f"{' after ' + job_of[base] if base in job_of else ''} ({state['state']})")
    atomic.write_json(_jobs_file(split_dir), jobs)
    return lines


def _field(text: str, key: str) -> str:
    m = re.search(rf"\b{key}=(\S+)", text)
    return m.group(1) if m else ""


def job_states(split_dir: Path) -> dict[str, dict]:
    """Slurm's view of the jobs this split submitted: treatment -> {id, state, reason}."""
    path = _jobs_file(split_dir)
    if not path.exists():
        return {}
    jobs: dict[str, str] = json.loads(path.read_text())
    if shutil.which("squeue") is None:
        return {n: {"id": j, "state": "UNKNOWN", "reason": "no squeue here"} for n, j in jobs.items()}
    seen = {}
    for line in _slurm(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r"], check=False).stdout.splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        seen[job.strip()] = (state.strip(), reason.strip())
    out = {}
    for name, job in jobs.items():
        if job in seen:
            state, reason = seen[job]
        else:
            proc = _slurm(["scontrol", "show", "job", "-o", job], check=False)
            lines = [ln for ln in proc.stdout.splitlines() if f"JobId={job.split('_')[0]}" in ln
                     and ("_" not in job or f"ArrayTaskId={job.split('_')[1]} " in ln)]
            if proc.returncode != 0 or not lines:
                state, reason = "GONE", "no longer known to Slurm"
            else:
                state, reason = _field(lines[0], "JobState"), "exit " + _field(lines[0], "ExitCode")
        out[name] = {"id": job, "state": state, "reason": reason}
        if state not in ACTIVE:
            out[name]["error"] = _job_error(path.parent, job)
    return out


def _job_error(out_dir: Path, job: str) -> str:
    """The last `error: ...` line of a job's output file ('' if none)."""
    for log_path in out_dir.glob(f"*-{job}.out"):
        errors = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.startswith("error: ")]
        if errors:
            return errors[-1][len("error: "):]
    return ""


def merge_state(row: dict, job: dict | None) -> None:
    """Add a run's Slurm job to its status row (a queued, running or failed job changes the state)."""
    if not job:
        return
    row["job"] = job["id"]
    tag = f"job {job['id']} {job['state']} ({job['reason']})"
    if row["state"] == "finished":
        row["detail"] = f"{row['detail']}; {tag}"
    elif job["state"] == "PENDING":
        row["detail"], row["state"] = f"{tag}; {row['state']}", "queued"
    elif job["state"] in ACTIVE:
        row["detail"], row["state"] = f"{tag}; {row['detail'] or row['state']}", "running"
    elif job["state"] not in ("GONE", "UNKNOWN"):
        error = f"; {job['error'][:160]}" if job.get("error") and job["error"] not in row["detail"] else ""
        row["detail"] = f"{tag}{error}; {row['detail'] or row['state']}"
        if row["state"] != "running":
            row["state"] = "failed" if job["state"] != "COMPLETED" else row["state"]
