"""make experiment: the whole experiment as one graph, its dry run and cost, and on a real single-node Slurm.

The dry runs need no Slurm; the slow tests use the `slurm` fixture of tests/conftest.py (munged,
slurmctld and slurmd on localhost) and toy runs (--iters 2 on FA-20).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kitcore.errors import KitError
from kitcore.layout import AUTHORS_PER_CLASS
from kitcore.treatments import grid_names
from runner.experiment import Definition, plan
from runner.slurm import load_config, prepare_config
from runner.train import budget

from conftest import ROOT, wait_until


def kit(env: dict | None, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, check=False)


def graph(stdout: str) -> dict[str, tuple[int, list[str]]]:
    """job name -> (array size, the jobs it waits for) from a dry run's graph lines."""
    out = {}
    for m in re.finditer(r"^  (tk-\S+)(?: \[array of (\d+)\])?\s*(?:after (.*))?$", stdout, re.M):
        out[m[1]] = (int(m[2] or 0), [d for d in (m[3] or "").split(", ") if d])
    return out


def test_dry_run_prints_the_graph_and_its_size_on_fa20(tmp_path):
    proc = kit(None, "experiment", "--work", str(tmp_path), "--seeds", "0,1", "--grids", "all", "--iters", "2",
               "--engine", "slurm", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    jobs = graph(proc.stdout)
    splits = ["random0", "random1", "natman", "all"]
    assert jobs["tk-fa20-store"] == (0, []) and all(jobs[f"tk-fa20-{s}"] == (0, ["tk-fa20-store"]) for s in splits)
    for seed in (0, 1):
        for half in "AB":
            assert jobs[f"tk-random{seed}-base{half}"] == (0, [f"tk-fa20-random{seed}"])
            assert jobs[f"tk-random{seed}-from-base{half}"] == (14, [f"tk-random{seed}-base{half}"])
    assert jobs["tk-natman-from-baseB"] == (7, ["tk-natman-baseB"])
    assert all(jobs[f"tk-all-randfrozen{n}"] == (0, ["tk-fa20-all"]) for n in range(1, 8))
    assert "(20 jobs)" in proc.stdout and len(jobs) == 5 + 20 + 1 and "graph: 26 job(s)" in proc.stdout
    runs = 2 * len(grid_names("random")) + len(grid_names("natman")) + len(grid_names("whole"))
    assert f"{runs} runs ({runs} left to train), {2 * runs} iterations" in proc.stdout and runs == 84
    assert "to submit 26 job(s): 5 preparation, 20 training, 1 figures" in proc.stdout
    sbatch = [ln for ln in proc.stdout.splitlines() if ln.startswith("sbatch --")]
    assert len(sbatch) == 26 and all("--kill-on-invalid-dep=yes" in ln for ln in sbatch)
    cpus = prepare_config(load_config())["cpus"]
    assert sum(f"--cpus-per-task={cpus} " in ln for ln in sbatch) == 6  # store, 4 splits, figures: [prepare]
    measured = tmp_path / "m" / "gpu_check.json"
    assert f"GPU-hours: not projected: no make gpu-check measurement at {tmp_path / 'gpu-check'}" in proc.stdout
    assert not (tmp_path / "fa20").exists(), "a dry run writes nothing"
    measured.parent.mkdir()
    measured.write_text(json.dumps({"cpu_vs_gpu": {"runs": {"gpu_kit": {"iters_per_s": 0.05}}}}))
    proc = kit(None, "experiment", "--work", str(tmp_path), "--seeds", "0,1", "--grids", "all", "--iters", "2",
               "--engine", "slurm", "--dry-run", "--gpu-check", str(measured.parent))
    assert f"GPU-hours: {168 / 0.05 / 3600:,.1f} projected for the 84 runs" in proc.stdout, proc.stdout[-600:]


def test_dry_run_of_the_paper_on_imagenet_counts_its_jobs_and_projects_gpu_hours(tmp_path):
    args = ("experiment", "--work", str(tmp_path), "--dataset", "imagenet", "--seeds", "0,1,2,3", "--grids", "all",
            "--engine", "slurm", "--dry-run")
    proc = kit(None, *args)
    assert proc.returncode == 0, proc.stderr
    k = len(AUTHORS_PER_CLASS)
    runs = 4 * len(grid_names("random")) + len(grid_names("natman")) + len(grid_names("whole")) + k
    assert runs == 156 and f" {runs} runs ({runs} left" in proc.stdout
    assert f"graph: {1 + 6 + k + 4 * 4 + 4 + 8 + k + 1} job(s)" in proc.stdout  # store, splits, grids, figures
    assert "--lists LISTS --images IMAGES --jobs 8" in proc.stdout and "LISTS and IMAGES not given" in proc.stdout
    measured = tmp_path / "gpu-check" / "gpu_check.json"
    assert f"no make gpu-check measurement at {measured}" in proc.stdout and "make gpu-check PACK=" in proc.stdout
    measured.parent.mkdir()
    measured.write_text(json.dumps({"versions": {"gpu": [{"name": "Test GPU"}]}, "time": {
        "baseB": {"forward_backward_ms": 100.0}, "baseB_test_phase": {"forward_ms": 20.0}, "a7b_over_baseb": 0.5,
        "paper_solver": {"template": "solvers/caffenet_solver.prototxt", "timed_train_batch": 256}}}))
    proc = kit(None, *args)
    d = Definition(work=tmp_path, dataset="imagenet", seeds=(0, 1, 2, 3), grids=("random", "natman", "whole",
                                                                                 "reduced"), engine="slurm")
    iters = [budget(s) for g in plan(d, dry=True).grids for s in g.specs]
    hours = sum(n * 0.1 + n // 1000 * 1000 * 0.02 for n in iters) / 3600  # test_interval, test_iter: 1000
    assert f"GPU-hours: {hours:,.0f} projected for the 156 runs" in proc.stdout and "on Test GPU" in proc.stdout
    assert f"{sum(iters):,} iterations" in proc.stdout and sum(iters[:144]) == 144 * 450_000


def test_treatments_keep_those_runs_of_each_grid(tmp_path):
    proc = kit(None, "experiment", "--work", str(tmp_path), "--grids", "all", "--treatments",
               "baseA,baseB,A1B,B1A,base,randfrozen1", "--engine", "slurm", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    jobs = graph(proc.stdout)
    assert jobs["tk-random0-from-baseA"] == (1, ["tk-random0-baseA"]) and "tk-random0-from-baseB" not in jobs
    assert all(jobs[f"tk-natman-from-base{h}"] == (1, [f"tk-natman-base{h}"]) for h in "AB")
    assert jobs["tk-all-randfrozen1"] == (0, ["tk-fa20-all"]) and "tk-all-randfrozen2" not in jobs
    assert "9 runs (9 left to train)" in proc.stdout, proc.stdout
    assert "to submit 14 job(s): 4 preparation, 9 training, 1 figures" in proc.stdout


def test_the_mix_grid_is_each_seeds_split_at_each_m_and_never_in_all(tmp_path):
    proc = kit(None, "experiment", "--work", str(tmp_path), "--seeds", "0,1", "--grids", "random,mix", "--engine",
               "slurm", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    jobs = graph(proc.stdout)
    mixes = [f"mix{s}m{m}" for s in (0, 1) for m in range(6)]  # FA-20's every m: 0 .. 10 natural classes // 2
    assert all(jobs[f"tk-fa20-{x}"] == (0, ["tk-fa20-store"]) for x in mixes)
    assert all(jobs[f"tk-{x}-from-baseA"] == (14, [f"tk-{x}-baseA"]) and f"tk-{x}-from-baseB" not in jobs
               for x in mixes)  # baseA's AnB and AnB+ for n = 1..7; baseB is the control
    assert f"{2 * 30 + 12 * 16} runs" in proc.stdout and "tk-fa20-figures" in jobs
    assert "--wrap 'exec " in proc.stdout and "split-mix --work " in proc.stdout
    assert re.search(r"split-mix --work \S+ --dataset fa20 --seed 1 --mix 4'", proc.stdout)
    assert re.search(r"train --threads \d+ --work \S+ --dataset fa20 --seed 1 --protocol mix --mix 4 --treatment "
                     r"baseA'", proc.stdout)
    d = Definition(work=tmp_path, dataset="fa20", seeds=(2,), grids=("mix",), mixes=(0, 3))
    assert [g.split for g in plan(d, dry=True).grids] == ["mix2m0", "mix2m3"]
    assert "GRIDS=mix MIX=0,3" in d.make_command()
    paper = kit(None, "experiment", "--work", str(tmp_path), "--grids", "all", "--dry-run")
    assert paper.returncode == 0 and "split-mix" not in paper.stdout and " mix0m" not in paper.stdout, paper.stdout


@pytest.mark.parametrize("text, problem", [
    ("[prepare]\ncpu = 4\n", "unknown key 'prepare.cpu'"),
    ("[prepare]\ngpus = 1\n", "unknown key 'prepare.gpus'"),
    ("[prepare]\ncpus = '4'\n", "prepare.cpus in .* must be int"),
    ("prepare = 3\n", "prepare in .* must be a table"),
    ("[prepare]\ntime = 'soon'\n", "prepare.time = 'soon' is not a Slurm time"),
    ("[prepare]\ncpus = 0\n", "prepare.cpus = 0 is out of range"),
    ("[prepare]\nextra_args = '--qos=x'\n", "prepare.extra_args in .* must be a list of strings"),
])
def test_the_prepare_section_is_strict(tmp_path, text, problem):
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(KitError, match=problem):
        load_config(tmp_path / "s.toml")
    proc = kit(None, "experiment", "--work", str(tmp_path), "--engine", "slurm", "--dry-run", "--slurm-config",
               str(tmp_path / "s.toml"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "; fix: " in proc.stderr


def test_preparation_jobs_take_their_section_and_training_jobs_keep_theirs(tmp_path):
    (tmp_path / "s.toml").write_text('cpus = 4\ngpus = 1\n[prepare]\npartition = "cpu"\ncpus = 16\n')
    config = load_config(tmp_path / "s.toml")
    prep = prepare_config(config)
    assert (config["cpus"], config["gpus"], config["partition"]) == (4, 1, "")
    assert (prep["cpus"], prep["gpus"], prep["partition"], prep["time"]) == (16, 0, "cpu", "1-00:00:00")


@pytest.mark.parametrize("args, problem", [
    (("--grids", "reduced"), "bad GRIDS"), (("--seeds", "1,1"), "bad --seeds"),
    (("--per-class", "0"), "bad --per-class"),
    (("--treatments", "baseA,A9B"), "A9B is in none of the grids random"),
    (("--grids", "random,whole", "--treatments", "baseA"), "leaves the whole grid without runs"),
    (("--treatments", "baseB,A1B"), "keeps A1B of the random grid without its base baseA"),
    (("--treatments", "baseA,baseA"), "bad TREATMENTS"),
    (("--grids", "mix", "--mix", "6"), "bad MIX '6'"), (("--grids", "mix", "--mix", "25%"), "bad MIX"),
    (("--mix", "1"), "MIX is the mix grid's, which GRIDS leaves out"),
    (("--dataset", "imagenet", "--grids", "mix"), "the mix grid of imagenet needs MIX")])
def test_bad_options_are_one_line_errors(tmp_path, args, problem):
    proc = kit(None, "experiment", "--work", str(tmp_path), "--dry-run", *args)
    assert proc.returncode == 2 and problem in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def work(slurm):
    """A work folder the jobs can read, and two configs of 1 CPU a job: one holding its preparation jobs."""
    work = Path(tempfile.mkdtemp(prefix="tke", dir="/tmp"))
    base = 'cpus = 1\ntime = "10:00"\nsignal_s = 30\n[prepare]\ncpus = 1\ntime = "10:00"\n'
    (work / "run.toml").write_text(base)
    (work / "held.toml").write_text(base + 'extra_args = ["--hold"]\n')
    yield work
    shutil.rmtree(work, ignore_errors=True)


def submit(env, work: Path, config: str, grids: str) -> subprocess.CompletedProcess:
    proc = kit(env, "experiment", "--engine", "slurm", "--work", str(work), "--seeds", "0", "--grids", grids,
               "--iters", "2", "--slurm-config", str(work / config))
    assert proc.returncode == 0, proc.stderr
    return proc


def show(env, job: str) -> dict[str, str]:
    """`scontrol show job -o` of a job (its first task): field -> value."""
    line = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]
    return dict(re.findall(r"(\w+)=(\S*)", line))


def status(env, work: Path, dataset: str = "fa20") -> str:
    proc = kit(env, "experiment-status", "--work", str(work), "--dataset", dataset)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_one_command_submits_the_graph_and_again_nothing(slurm, work):
    t0 = time.time()
    first = submit(slurm, work, "held.toml", "whole")  # the preparation jobs held: the graph stays as submitted
    assert time.time() - t0 < 60 and "submitted 10 job(s): 2 preparation, 8 training, 0 figures" in first.stdout
    steps = json.loads((work / "fa20" / "experiment" / "jobs.json").read_text())
    runs = json.loads((work / "fa20" / "all" / "slurm" / "jobs.json").read_text())
    assert show(slurm, steps["store"])["Dependency"] == "(null)"
    assert show(slurm, steps["all"])["Dependency"] == f"afterok:{steps['store']}(unfulfilled)"
    assert sorted(runs) == ["base"] + [f"randfrozen{n}" for n in range(1, 8)]
    assert all(show(slurm, j)["Dependency"] == f"afterok:{steps['all']}(unfulfilled)" for j in runs.values())
    again = submit(slurm, work, "held.toml", "whole")
    assert "nothing to do" in again.stdout and "8 queued (left alone)" in again.stdout
    assert again.stdout.count("already queued") == 2 and "submitted 0 job(s)" in again.stdout
    assert re.search(r"split all\s+pending\s+" + steps["all"], status(slurm, work))
    subprocess.run(["scontrol", "release", steps["store"], steps["all"]], env=slurm, check=True)
    wait_until(lambda: re.search(r"grid all\s+finished", status(slurm, work)), 240, "the whole grid")
    assert re.search(r"^store\s+finished\s+" + steps["store"], status(slurm, work), re.M)
    third = submit(slurm, work, "run.toml", "whole")
    assert "submitted 0 job(s)" in third.stdout and third.stdout.count("finished") >= 3, third.stdout


@pytest.mark.slow
def test_a_failed_preparation_job_cancels_its_grid_and_status_says_the_fix(slurm, work):
    natman = work / "fa20" / "natman"
    natman.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "fa20" / "all" / "manifest.json", natman / "manifest.json")  # another split's: its job fails
    first = submit(slurm, work, "run.toml", "natman")
    assert re.search(r"^store\s+finished", first.stdout, re.M) and "16 runs: 16 submitted in 4 job(s)" in first.stdout
    split = json.loads((work / "fa20" / "experiment" / "jobs.json").read_text())["natman"]
    runs = json.loads((natman / "slurm" / "jobs.json").read_text())
    wait_until(lambda: all(show(slurm, j)["JobState"] == "CANCELLED" for j in runs.values()), 120, "cancelled runs")
    text = status(slurm, work)
    assert re.search(rf"split natman\s+failed\s+{split}\s+FAILED.*holds a different split than natman", text), text
    assert f"fix: delete {natman} or rebuild it with force; then rerun: make experiment DATASET=fa20" in text
    assert re.search(r"grid natman\s+failed", text) and "fix: fix natman first (above)" in text
    shutil.rmtree(natman)
    fixed = submit(slurm, work, "held.toml", "natman")
    assert re.search(r"^store\s+finished.*\(left alone\)", fixed.stdout, re.M)
    assert "submitted 5 job(s): 1 preparation, 4 training" in fixed.stdout
    split = json.loads((work / "fa20" / "experiment" / "jobs.json").read_text())["natman"]
    runs = json.loads((natman / "slurm" / "jobs.json").read_text())
    assert show(slurm, runs["baseA"])["Dependency"] == f"afterok:{split}(unfulfilled)"
    assert show(slurm, runs["A3B"])["Dependency"] == f"afterok:{runs['baseA']}(unfulfilled)"
    assert show(slurm, runs["B3A"])["Dependency"] == f"afterok:{runs['baseB']}(unfulfilled)"
    subprocess.run(["scancel", split, *{j.split("_")[0] for j in runs.values()}], env=slurm, check=True)


def test_make_experiment_passes_its_variables_on(tmp_path):
    out = subprocess.run(["make", "--no-print-directory", "-n", "experiment", "DATASET=imagenet", "SEEDS=0,1",
                          "GRIDS=all", "PERCLASS=1,10", "ENGINE=slurm", "MODE=gpu", "LISTS=l", "IMAGES=i",
                          "DRY_RUN=1", "GPU_CHECK=g.json", "REPEATS=2", "TREATMENTS=baseA,base", "MIX=0,9"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if "transfer-kit experiment " in ln)
    for flag in ("--dataset imagenet", "--seeds '0,1'", "--grids 'all'", "--per-class '1,10'", "--engine slurm",
                 "--gpu", "--lists 'l'", "--images 'i'", "--dry-run", "--gpu-check 'g.json'", "--repeats '2'",
                 "--treatments 'baseA,base'", "--mix '0,9'"):
        assert flag in line, (flag, line)
    status = subprocess.run(["make", "--no-print-directory", "-n", "experiment-status", "DATASET=imagenet"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    assert "transfer-kit experiment-status --work work --dataset imagenet" in status


@pytest.mark.slow
def test_locally_the_graph_runs_here_and_status_reads_it(tmp_path):
    proc = kit(None, "experiment", "--work", str(tmp_path), "--grids", "whole", "--iters", "2")
    assert proc.returncode == 0 and "experiment done: 8 runs" in proc.stdout, proc.stderr[-3000:]
    from kitcore.layout import is_finished
    assert all(is_finished(tmp_path / "fa20" / "all" / "runs" / n) for n in grid_names("whole"))
    text = kit(None, "experiment-status", "--work", str(tmp_path)).stdout
    assert re.search(r"^store\s+finished\s+-", text, re.M) and re.search(r"grid all\s+finished\s+-\s+8 finished", text)
    again = kit(None, "experiment", "--work", str(tmp_path), "--grids", "whole", "--iters", "2", "--dry-run")
    assert again.stdout.count(" finished  transfer-kit ") == 2 and "8 runs (0 left to train)" in again.stdout
    saved = (tmp_path / "fa20" / "experiment" / "experiment.json").read_bytes()
    other = kit(None, "experiment", "--work", str(tmp_path), "--grids", "whole", "--iters", "3")
    assert other.returncode == 2 and "finished with other settings than asked: iterations 2 (asked: 3)" in other.stderr
    assert (tmp_path / "fa20" / "experiment" / "experiment.json").read_bytes() == saved  # refused before anything


@pytest.mark.slow
def test_locally_a_mix_grid_runs_on_its_split_and_names_the_commands_of_its_figure(tmp_path):
    proc = kit(None, "experiment", "--work", str(tmp_path), "--grids", "mix", "--mix", "2", "--treatments",
               "baseA,baseB,A1B+", "--iters", "2")
    assert proc.returncode == 0 and "experiment done: 3 runs" in proc.stdout, proc.stderr[-3000:]
    split = tmp_path / "fa20" / "mix0m2"
    assert json.loads((split / "split.json").read_text())["mix"]["m"] == 2
    from kitcore.layout import is_finished
    assert all(is_finished(split / "runs" / n) for n in ("baseA", "baseB", "A1B+"))
    assert (f"make publish WORK={tmp_path} DATASET=fa20 RECORDS=results/fa20/mix SPLITS=mix0m2 (and the random "
            "splits' beside them), then make plots RECORDS=results/fa20") in proc.stdout, proc.stdout
