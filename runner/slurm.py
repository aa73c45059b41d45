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
`submit` also serves make experiment (runner.experiment_slurm): its bases wait
for the split's job, and with `dry` it submits nothing and collects the sbatch
lines. Settings come from runner/slurm.toml (defaults, one comment per key; its
[prepare] table for the experiment's CPU jobs) and an optional user file with
the same keys, read strictly by runner.slurm_config.
"""
from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kitcore import atomic, layout
from kitcore.errors import KitError
from kitcore.profiles import KIT
from runner.finished import check_runs
from runner.runstate import run_state
from runner.slurm_config import load_config as load_config  # re-exported: the grid's CLI and tests read it here
from runner.slurm_config import prepare_config as prepare_config
from runner.train import RunSpec

log = logging.getLogger(__name__)
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


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


def sbatch(name: str, script: str, config: dict, out_dir: Path, array: int = 0, after=None,
            dry: list | None = None) -> str:
    """Submit one job (an array of `array` tasks) after the jobs `after` (an id, or a list of ids); return its
    id. `dry`: submit nothing, append (name, sbatch command) to it and return `<name>` for its dependents."""
    after = [after] if isinstance(after, str) else list(after or [])
    cmd = ["sbatch", "--parsable", f"--job-name={name}", f"--chdir={KIT}", f"--time={config['time']}",
           f"--cpus-per-task={config['cpus']}", f"--signal=B:TERM@{config['signal_s']}",
           f"--output={out_dir}/%x-{'%A_%a' if array else '%j'}.out", "--kill-on-invalid-dep=yes"]
    cmd += [f"--partition={config['partition']}"] if config["partition"] else []
    cmd += [f"--gres=gpu:{config['gpus']}"] if config["gpus"] else []
    cmd += [f"--mem={config['mem_mb']}"] if config["mem_mb"] else []
    cmd += [f"--array=0-{array - 1}"] if array else []
    cmd += [f"--dependency=afterok:{':'.join(after)}"] if after else []
    cmd += list(config["extra_args"]) + ["--wrap", script]
    if dry is not None:
        dry.append((name, cmd))
        return f"<{name}>"
    job = _slurm(cmd).stdout.strip().split(";")[0]
    log.info("submitted %s as job %s%s", name, job, f" after {', '.join(after)}" if after else "")
    return job


def cancel(job: str) -> None:
    """Cancel a job (scancel)."""
    _slurm(["scancel", job])


def python_job(args: list[str]) -> str:
    """The --wrap script of a job that runs `transfer-kit ARGS` with this Python, from the kit's folder."""
    return f"exec {shlex.join([sys.executable, '-m', 'runner.cli', *args])}"


@dataclass
class Submission:
    """What submitting a grid did: a line per run, the jobs of its unfinished runs, how many runs of each kind."""

    lines: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # submitted or already queued (array ids without a task)
    new: list[str] = field(default_factory=list)  # the jobs it submitted
    counts: dict[str, int] = field(default_factory=lambda: {"finished": 0, "queued": 0, "submitted": 0})


def submit_grid(specs: list[RunSpec], config: dict) -> list[str]:
    """Submit the unfinished runs of `specs` (one split, dependency order); return one line per run."""
    return submit(specs, config).lines


def submit(specs: list[RunSpec], config: dict, after: str | None = None, dry: list | None = None) -> Submission:
    """Submit the unfinished runs of `specs` (one split, dependency order), bases after the job `after` (the
    split's), transfers after their base; `dry`: submit nothing (see sbatch). Return what it did."""
    if any(s.gpu for s in specs) and config["gpus"] < 1:
        raise KitError("--gpu needs a GPU per job but the Slurm config has gpus = 0", "set gpus = 1 in your config")
    check_runs(specs)  # a run folder with other settings than asked: refused before any sbatch
    split_dir = specs[0].split_dir
    out_dir = split_dir / "slurm"
    if dry is None:
        out_dir.mkdir(parents=True, exist_ok=True)
    known = job_states(split_dir)
    jobs = json.loads(_jobs_file(split_dir).read_text()) if _jobs_file(split_dir).exists() else {}
    job_of: dict[str, str] = {}
    done, transfers = Submission(), {}
    word = "submitted" if dry is None else "to submit"
    try:
        for spec in specs:
            name, state = spec.run_dir.name, run_state(spec)
            job = known.get(name)
            if state["state"] == "finished":
                done.lines.append(f"{name:10s} finished           {state['detail']}")
                done.counts["finished"] += 1
            elif job and job["state"] in ACTIVE:
                job_of[name] = job["id"]
                done.jobs.append(job["id"].split("_")[0])
                done.lines.append(f"{name:10s} already queued     job {job['id']} {job['state']}")
                done.counts["queued"] += 1
            elif spec.treatment.base_name is None:
                script = f"exec {shlex.join(_train_cmd(spec, config) + ['--treatment', spec.treatment.name])}"
                job_of[name] = jobs[name] = sbatch(f"tk-{split_dir.name}-{name}", script, config, out_dir,
                                                    after=after, dry=dry)
                done.jobs.append(job_of[name])
                done.new.append(job_of[name])
                done.lines.append(f"{name:10s} {word:18s} job {job_of[name]}"
                                  f"{' after ' + after if after else ''} ({state['state']})")
                done.counts["submitted"] += 1
            else:
                transfers.setdefault((spec.treatment.base_name, spec.repeat), []).append((spec, state))
        _submit_arrays(transfers, split_dir, config, out_dir, job_of, jobs, done, after, word, dry)
    finally:  # what was submitted is remembered, even when a later sbatch fails
        if dry is None:
            atomic.write_json(_jobs_file(split_dir), jobs)
    return done


def _submit_arrays(transfers: dict, split_dir: Path, config: dict, out_dir: Path, job_of: dict, jobs: dict,
                   done: Submission, after: str | None, word: str, dry: list | None) -> None:
    """One array per (base, replicate) of the transfers, after its base's job (or `after`, the split's)."""
    for (base, repeat), group in transfers.items():
        if base not in job_of and not layout.is_finished(layout.run_dir(split_dir, base)):
            raise KitError(f"{group[0][0].treatment.name} needs base {base}, "
                           "which is neither finished nor in this grid",
                           f"add {base} to the grid or train it first: {group[0][0].make_cmd(base)}")
        names = [s.treatment.name for s, _ in group]
        script = ("set -- " + shlex.join(names) + '; shift "$SLURM_ARRAY_TASK_ID"; exec '
                  + shlex.join(_train_cmd(group[0][0], config)) + ' --treatment "$1"')  # one r: one --repeat
        dep = job_of.get(base, after)
        array = sbatch(f"tk-{split_dir.name}-from-{layout.run_name(base, repeat)}", script, config, out_dir,
                        len(names), dep, dry=dry)
        done.jobs.append(array)
        done.new.append(array)
        for i, (spec, state) in enumerate(group):
            jobs[spec.run_dir.name] = f"{array}_{i}"
            done.lines.append(f"{spec.run_dir.name:10s} {word:18s} job {array}_{i}"
                              f"{' after ' + dep if dep else ''} ({state['state']})")
            done.counts["submitted"] += 1


def _field(text: str, key: str) -> str:
    m = re.search(rf"\b{key}=(\S+)", text)
    return m.group(1) if m else ""


def job_states(split_dir: Path) -> dict[str, dict]:
    """Slurm's view of the jobs this split submitted: treatment -> {id, state, reason}."""
    return jobs_file_states(_jobs_file(split_dir))


def jobs_file_states(path: Path) -> dict[str, dict]:
    """Slurm's view of the jobs a jobs.json names (name -> job id), their output files beside it:
    name -> {id, state, reason} (and `error`, the job's last error line, once it has ended)."""
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
