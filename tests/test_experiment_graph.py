"""make experiment on a real single-node Slurm, every job run: FA-20's whole graph and a synthetic ILSVRC.

The issue's first two tests (issue 37): each submits an experiment in one command, lets Slurm run every
job (preparation, bases, transfer arrays, the figures), checks what the jobs made and that the same
command again submits nothing. To keep `make test` short, TREATMENTS keeps a few runs of each grid
(every job kind stays in the graph), at ITERS of 1 or 2 and one test batch.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import wait_until
from test_experiment import kit, status


@pytest.fixture(scope="module")
def work(slurm):
    """A work folder the jobs can read, and a config of 1 CPU a job."""
    work = Path(tempfile.mkdtemp(prefix="tkg", dir="/tmp"))
    (work / "run.toml").write_text('cpus = 1\ntime = "10:00"\nsignal_s = 30\n[prepare]\ncpus = 1\ntime = "10:00"\n')
    yield work
    shutil.rmtree(work, ignore_errors=True)



def job_lines(env, job: str) -> list[dict[str, str]]:
    """`scontrol show job -o` of a job, one dict per array task (one for a plain job)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True,
                         check=True).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]


def every_job(work: Path, dataset: str) -> dict[str, str]:
    """Every Slurm job an experiment submitted, name -> id: its steps' and each split's runs' (array ids bare)."""
    jobs = json.loads((work / dataset / "experiment" / "jobs.json").read_text())
    for runs in (work / dataset).glob("*/slurm/jobs.json"):
        split = runs.parent.parent.name
        jobs.update({f"{split}/{n}": j.split("_")[0] for n, j in json.loads(runs.read_text()).items()})
    return jobs


def assert_sane_png(path: Path) -> None:
    from PIL import Image
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("L"))
    assert img.format == "PNG" and min(pixels.shape) >= 300, (path, pixels.shape)
    assert len(np.unique(pixels)) > 16, f"{path} is nearly blank"


def figures_outputs(split: Path) -> dict:
    """The figures job's results/outputs.json (written last), each file it names checked: there, not empty."""
    outputs = json.loads((split / "results" / "outputs.json").read_text())
    files = {k: Path(v) for k, v in outputs.items() if k != "absent"}
    assert all(f.parent == split / "results" and f.stat().st_size > 0 for f in files.values()), files
    made = (split / "results" / "outputs.json").stat().st_mtime
    results = list(split.parent.glob("*/runs/*/result.json"))
    assert results and all(r.stat().st_mtime <= made for r in results), "the figures come after every run"
    for key in ("figure_png", "figure2_bottom_png", "figure3_png", "reduced_png"):
        if key in files:
            assert_sane_png(files[key])
    return {**files, "absent": outputs["absent"]}


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def wait_for_figures(env, work: Path, dataset: str, timeout: float) -> str:
    """experiment-status once the figures step has finished (or failed: then the test fails with the status)."""
    wait_until(lambda: re.search(r"^figures\s+(finished|failed)", status(env, work, dataset), re.M), timeout,
               "the figures")
    text = status(env, work, dataset)
    assert re.search(r"^figures\s+finished", text, re.M), text
    return text


# Each grid's runs at n = 1 (TREATMENTS): 18 runs, yet every job kind of the whole graph (store, split, base,
# transfer array, random-weights run, figures) and a point in every piece of Figures 2 and 3.
FA20_TOY = "baseA,baseB,A1B,A1B+,B1B,B1B+,B1A,base,randfrozen1"


@pytest.mark.slow
def test_fa20_whole_graph_runs_on_slurm_to_the_figures_and_again_submits_nothing(slurm, work):
    w = work / "fa20-all"
    args = ("experiment", "--engine", "slurm", "--work", str(w), "--seeds", "0,1", "--grids", "all", "--treatments",
            FA20_TOY, "--iters", "2", "--test-iter", "1", "--slurm-config", str(work / "run.toml"))
    t0 = time.time()
    first = kit(slurm, *args)
    assert first.returncode == 0 and time.time() - t0 < 60, first.stderr
    assert "submitted 20 job(s): 5 preparation, 14 training, 1 figures" in first.stdout, first.stdout
    text = wait_for_figures(slurm, w, "fa20", 600)
    assert text.splitlines()[-1] == "10 finished", text
    for split, runs in (("random0", 6), ("random1", 6), ("natman", 4), ("all", 2)):
        assert re.search(rf"^grid {split}\s+finished\s.*{runs} finished of {runs} runs$", text, re.M), text
    jobs = every_job(w, "fa20")
    assert len(set(jobs.values())) == 20
    assert all(t["JobState"] == "COMPLETED" for j in set(jobs.values()) for t in job_lines(slurm, j)), "Slurm ran all"
    out = figures_outputs(w / "fa20" / "random0")
    assert out["absent"] == [] and {"figure2_csv", "figure3_csv", "table1_md", "findings_md"} <= set(out)
    assert len(csv_rows(out["results_csv"])) == 18
    fig2 = csv_rows(out["figure2_csv"])
    assert {(r["treatment"], r["split"]) for r in fig2} == {
        (t, s) for t in ("baseB", "B1B", "B1B+", "A1B", "A1B+") for s in ("random0", "random1")}
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in fig2)
    fig3 = {(r["panel"], r["split"], r["treatment"]) for r in csv_rows(out["figure3_csv"])}
    assert {("natman", "natman", "A1B"), ("natman", "natman", "B1A"), ("random", "all", "randfrozen1"),
            ("normalized", "random0", "A1B"), ("normalized", "random1", "A1B")} <= fig3, fig3
    again = kit(slurm, *args)
    assert again.returncode == 0 and "submitted 0 job(s)" in again.stdout and "nothing to do" in again.stdout
    assert again.stdout.count("(left alone)") == 10 and set(every_job(w, "fa20").values()) == set(jobs.values())


def started_after(env, jobs: dict[str, str], job: str, before: str) -> bool:
    """Whether every task of `job` started once every task of `before` had ended (Slurm's times, in seconds)."""
    ends = [t["EndTime"] for t in job_lines(env, jobs[before])]
    return all(t["StartTime"] >= max(ends) for t in job_lines(env, jobs[job]))


@pytest.mark.slow
def test_synthetic_ilsvrc_prepared_and_trained_by_slurm_jobs_with_a_reduced_split(slurm, work):
    from data_prep.imagenet_synth import make_synthetic_ilsvrc
    images, lists = make_synthetic_ilsvrc(work / "ilsvrc", train_per_class=2, val_per_class=1)  # 6 classes
    w = work / "imagenet"
    args = ("experiment", "--engine", "slurm", "--work", str(w), "--dataset", "imagenet", "--seeds", "0", "--grids",
            "random,reduced", "--per-class", "1", "--treatments", "baseA,A1B,base", "--iters", "1", "--batch", "4",
            "--test-iter", "1", "--lists", str(lists), "--images", str(images),
            "--slurm-config", str(work / "run.toml"))
    first = kit(slurm, *args)
    assert first.returncode == 0, first.stderr
    assert "submitted 7 job(s): 3 preparation, 3 training, 1 figures" in first.stdout, first.stdout
    text = wait_for_figures(slurm, w, "imagenet", 600)
    assert text.splitlines()[-1] == "6 finished", text
    jobs = every_job(w, "imagenet")
    assert all(t["JobState"] == "COMPLETED" for j in jobs.values() for t in job_lines(slurm, j))
    for job, before in (("random0", "store"), ("reduced1", "store"), ("random0/baseA", "random0"),
                        ("random0/A1B", "random0/baseA"), ("reduced1/base", "reduced1"), ("figures", "random0/A1B"),
                        ("figures", "reduced1/base")):
        assert started_after(slurm, jobs, job, before), (job, before)
    data = w / "imagenet"
    random0 = json.loads((data / "random0" / "manifest.json").read_text())
    assert {h: len(c) for h, c in random0["split"]["halves"].items()} == {"A": 3, "B": 3}
    reduced = json.loads((data / "reduced1" / "manifest.json").read_text())
    assert reduced["files"]["data/all_train_lmdb"]["records"] == 6, "k = 1: one image of each of the 6 classes"
    transfer = json.loads((data / "random0" / "runs" / "A1B" / "run.json").read_text())
    assert transfer["batch"] == 4 and transfer["base_model"].endswith("baseA/snapshots/snap_iter_1.caffemodel")
    reduced_run = json.loads((data / "reduced1" / "runs" / "base" / "run.json").read_text())
    assert reduced_run["per_class"] == 1 and reduced_run["batch"] == 4
    out = figures_outputs(data / "random0")
    assert [(r["treatment"], r["split"]) for r in csv_rows(out["figure2_csv"])] == [("A1B", "random0")]
    assert [(r["images_per_class"], r["split"]) for r in csv_rows(out["reduced_csv"])] == [("1", "reduced1")]
    again = kit(slurm, *args)
    assert "submitted 0 job(s)" in again.stdout and again.stdout.count("(left alone)") == 6, again.stdout
