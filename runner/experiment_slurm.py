"""The experiment's graph on Slurm (make experiment ENGINE=slurm) and the state of it all (make experiment-status).

`submit` sends runner.experiment's plan as dependent jobs and returns: the store's job; each split's job
after it; each grid as runner.slurm.submit sends it (bases after their split's job, the transfers of a
base one array after it); the figures job after every training job. Every job has
--kill-on-invalid-dep=yes (runner.slurm.sbatch), so a failed job cancels all that needs it. The CPU
steps run with the [prepare] settings of the Slurm config. It is idempotent: a step whose output is
there, or whose job (kept in <work>/<dataset>/experiment/jobs.json; the runs' jobs in each split's
slurm/jobs.json) is queued or running, is left alone, as is every finished or queued run, and new
jobs wait for the queued ones they need. A queued figures job that would not wait for runs submitted
now is replaced. With `dry` nothing is submitted: the lines say what would be, and `dry` collects the
sbatch commands.

`status_lines` tells, per step and per grid: finished, running, pending, failed or not submitted, with
the Slurm jobs, and under a failed one its fix: the job's own error's fix, then the command to rerun.
"""
from __future__ import annotations

import json

from kitcore import atomic
from kitcore.errors import KitError
from runner import slurm
from runner.experiment import Plan, Step, save, step_done
from runner.finished import check_runs
from runner.runstate import run_state

FAILED = "failed"
LIMITS = {"TIMEOUT": "time", "OUT_OF_MEMORY": "mem_mb"}  # a step's job that ran past its [prepare] limit


class _Submitter:
    """One call of `submit`: the jobs it knows and makes, its lines, its counts."""

    def __init__(self, p: Plan, config: dict, dry: list | None):
        self.p, self.config, self.dry = p, config, dry
        self.prep = slurm.prepare_config(config)
        self.path = p.folder / "jobs.json"
        self.known = slurm.jobs_file_states(self.path)
        self.jobs = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.job_of: dict[str, str] = {}  # step -> its job (submitted now, or queued before)
        self.lines: list[str] = []
        self.verb = "submitted" if dry is None else "to submit"
        self.count = {"preparation": 0, "training": 0, "figures": 0}

    def step(self, s: Step, after: list[str], replace: bool = False) -> None:
        """Leave a finished or queued step alone (unless `replace`), else submit it after the jobs `after`."""
        job = self.known.get(s.name)
        if not replace and step_done(self.p, s):
            return self.lines.append(f"{s.name:14s} finished           {s.where} (left alone)")
        if not replace and job and job["state"] in slurm.ACTIVE:
            self.job_of[s.name] = job["id"]
            return self.lines.append(f"{s.name:14s} already queued     job {job['id']} {job['state']} (left alone)")
        self.job_of[s.name] = self.jobs[s.name] = slurm.sbatch(
            f"tk-{self.p.definition.dataset}-{s.name}", slurm.python_job(list(s.args)), self.prep, self.p.folder,
            after=after, dry=self.dry)
        self.count["figures" if s.kind == "figures" else "preparation"] += 1
        shown = ", ".join(after) if len(after) <= 3 else f"{len(after)} jobs (every training job)"
        self.lines.append(f"{s.name:14s} {self.verb:18s} job {self.job_of[s.name]}"
                          + (f" after {shown}" if after else ""))

    def graph(self) -> None:
        """The steps, each grid after its split's job, the figures after every training job."""
        for s in self.p.steps:
            self.step(s, [self.job_of[a] for a in s.after if a in self.job_of])
        training: list[str] = []
        for g in self.p.grids:
            after = self.job_of.get(g.split)
            sub = slurm.submit(g.specs, self.config, after=after, dry=self.dry)
            training += [j for j in sub.jobs if j not in training]
            self.count["training"] += len(sub.new)
            c = sub.counts
            self.lines.append(f"grid {g.split:9s} {len(g.specs)} runs: {c['submitted']} {self.verb} in "
                              f"{len(sub.new)} job(s)" + (f" after {after}" if after and sub.new else "")
                              + f"; {c['finished']} finished, {c['queued']} queued (left alone)")
        if self.p.figures is None:
            return
        job = self.known.get("figures")
        stale = bool(self.count["training"] and job and job["state"] in slurm.ACTIVE)  # would not wait for them
        if stale:
            if self.dry is None:
                slurm.cancel(job["id"])
            self.lines.append(f"{'figures':14s} {'replaced' if self.dry is None else 'to replace':18s} job "
                              f"{job['id']} (it would not wait for the runs submitted now)")
        self.step(self.p.figures, training, replace=stale)


def submit(p: Plan, config: dict, dry: list | None = None) -> list[str]:
    """Submit what of the plan is neither finished nor queued; return one line per step and grid, and a summary."""
    if p.definition.gpu and config["gpus"] < 1:  # before any job is submitted
        raise KitError("MODE=gpu needs a GPU per training job but the Slurm config has gpus = 0",
                       "set gpus = 1 in your SLURM_CONFIG file (its top-level keys are the training jobs')")
    check_runs([s for g in p.grids for s in g.specs])  # before the definition is saved or any job submitted
    if dry is None:
        p.folder.mkdir(parents=True, exist_ok=True)
        save(p)
    run = _Submitter(p, config, dry)
    try:
        run.graph()
    finally:  # what was submitted is remembered, even when a later sbatch fails
        if dry is None:
            atomic.write_json(run.path, run.jobs)
    total = sum(run.count.values())
    return run.lines + [f"{run.verb} {total} job(s): {run.count['preparation']} preparation, {run.count['training']} "
                        f"training, {run.count['figures']} figures"
                        + ("" if total else "; nothing to do: everything is finished or queued")]


def _error_fix(error: str) -> tuple[str, str]:
    """(problem, fix) of a kit error line (`problem; fix: ...`); the fix is '' for any other text."""
    problem, _, fix = error.partition("; fix: ")
    return problem, fix


def _step_row(p: Plan, s: Step, job: dict | None, failed: set[str]) -> tuple[str, str, str, str]:
    """(state, job, detail, fix) of a CPU step."""
    tag = job["id"] if job else "-"
    if step_done(p, s):
        return "finished", tag, str(s.where), ""
    if job and job["state"] in slurm.ACTIVE:
        return ("pending" if job["state"] == "PENDING" else "running"), tag, f"{job['state']} ({job['reason']})", ""
    if not job or job["state"] in ("GONE", "UNKNOWN"):
        return "not submitted", tag, str(s.where), ""
    before = [a for a in s.after if a in failed]
    if before:
        return FAILED, tag, f"{job['state']} ({job['reason']})", f"fix {', '.join(before)} first (above)"
    problem, fix = _error_fix(job.get("error") or "")
    logs = sorted(p.folder.glob(f"*-{job['id']}.out"))
    where = f"see its log {logs[0]}" if logs else "see its job log"
    if job["state"] == "COMPLETED":
        return FAILED, tag, f"its job completed, but {s.where} is not complete", where
    if job["state"] in LIMITS:
        fix = f"raise {LIMITS[job['state']]} in the [prepare] table of your SLURM_CONFIG ({where})"
    return FAILED, tag, f"{job['state']} ({job['reason']})" + (f": {problem}" if problem else ""), fix or where


def _grid_row(p: Plan, g, failed: set[str]) -> tuple[str, str, str, str]:
    """(state, jobs, detail, fix) of a grid, from its runs' folders and Slurm jobs (runner.slurm.merge_state)."""
    specs = g.specs
    jobs = slurm.job_states(specs[0].split_dir)
    rows = []
    for spec in specs:
        row = run_state(spec)
        slurm.merge_state(row, jobs.get(row["treatment"]))
        rows.append(row)
    counts: dict[str, int] = {}
    for r in rows:
        key = r["state"].split(" at iter")[0]
        counts[key] = counts.get(key, 0) + 1
    ids = sorted({r["job"].split("_")[0] for r in rows if r.get("job")}, key=lambda j: (len(j), j))
    shown = ", ".join(ids) if len(ids) <= 3 else f"{ids[0]}, {ids[1]}, ... ({len(ids)} jobs)"
    detail = ", ".join(f"{n} {k}" for k, n in counts.items()) + f" of {len(rows)} runs"
    bad = [r for r in rows if r["state"] == FAILED]
    if counts.get("finished") == len(rows):
        return "finished", shown or "-", detail, ""
    if bad:
        if g.split in failed:
            return FAILED, shown, detail, f"fix {g.split} first (above)"
        first = bad[0]
        job = jobs.get(first["treatment"], {})
        problem, fix = _error_fix(job.get("error") or "")
        return FAILED, shown, f"{detail}; {first['treatment']}: {problem or first['detail']}", \
            fix or f"see {first['treatment']}'s train.log and job log in {specs[0].split_dir / 'slurm'}"
    if counts.get("running"):
        return "running", shown, detail, ""
    if counts.get("queued"):
        return "pending", shown, detail, ""
    return ("not submitted" if p.definition.engine == "slurm" else "not finished"), shown or "-", detail, ""


def status_lines(p: Plan) -> list[str]:
    """The state of every step and grid of an experiment, a fix line under each failed one, then counts."""
    d = p.definition
    known = slurm.jobs_file_states(p.folder / "jobs.json")
    rerun = d.make_command()
    rows, failed = [], set()
    for s in p.steps:
        row = _step_row(p, s, known.get(s.name), failed)
        failed |= {s.name} if row[0] == FAILED else set()
        rows.append((s.name if s.kind == "store" else f"split {s.name}", *row))
    for g in p.grids:
        rows.append((f"grid {g.split}", *_grid_row(p, g, failed)))
    if p.figures is not None:
        grids_failed = {g.split for g, r in zip(p.grids, rows[len(p.steps):]) if r[1] == FAILED}
        rows.append(("figures", *_step_row(p, p.figures, known.get("figures"), grids_failed | failed)))
    lines = [f"experiment {d.dataset} in {d.work}: {len(p.steps)} preparation step(s), {len(p.grids)} grid(s), "
             f"{sum(len(g.specs) for g in p.grids)} runs; made by: {rerun}",
             f"{'step':18s} {'state':14s} {'slurm job':22s} detail"]
    counts: dict[str, int] = {}
    for name, state, job, detail, fix in rows:
        lines.append(f"{name:18s} {state:14s} {job:22s} {detail}".rstrip())
        if state == FAILED:
            lines.append(f"{'':18s} fix: {fix}; then rerun: {rerun} (it resubmits only what is missing)")
        counts[state] = counts.get(state, 0) + 1
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()))
    return lines

