"""Your own images through every target, as a user types them: dataset, splits, a base, a transfer, plots.

A colour class-per-folder tree is drawn here with OpenCV (4 classes of
shapes, PNG and JPEG mixed, one grey image per class), added with
`transfer-kit dataset --images` (one tree, a seeded val fraction), split at
random and by a groups file, and trained with the real `caffe` binary for a
few iterations; `plots` draws Figure 2 from the runs.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from analysis.plots import class_caption

from conftest import ROOT

CLASSES = ("circle", "cross", "square", "triangle")


def kit(*args) -> subprocess.CompletedProcess:
    """`transfer-kit ARGS` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, check=False)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def draw_tree(root: Path, per_class: int = 20, size: int = 32) -> Path:
    """root/<class>/<i>.png|jpg: a coloured shape per image on a noisy background; image 0 of each class grey."""
    rng = np.random.default_rng(0)
    for _label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            colour = tuple(int(c) for c in rng.integers(120, 256, 3))
            c, r = rng.integers(10, size - 10, 2), int(rng.integers(5, 9))
            if name == "circle":
                cv2.circle(img, (int(c[0]), int(c[1])), r, colour, -1)
            elif name == "square":
                cv2.rectangle(img, (int(c[0] - r), int(c[1] - r)), (int(c[0] + r), int(c[1] + r)), colour, -1)
            elif name == "cross":
                cv2.line(img, (int(c[0] - r), int(c[1] - r)), (int(c[0] + r), int(c[1] + r)), colour, 2)
                cv2.line(img, (int(c[0] - r), int(c[1] + r)), (int(c[0] + r), int(c[1] - r)), colour, 2)
            else:
                pts = np.array([[c[0], c[1] - r], [c[0] - r, c[1] + r], [c[0] + r, c[1] + r]], np.int32)
                cv2.fillPoly(img, [pts], colour)
            if i == 0:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            assert cv2.imwrite(str(root / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}"), img)
    return root


@pytest.mark.slow
def test_own_images_split_base_transfer_plots(tmp_path):
    tree, work = draw_tree(tmp_path / "shapes"), tmp_path / "work"
    common = ("--work", work, "--dataset", "shapes")
    ok(kit("dataset", *common, "--images", tree, "--val-fraction", "0.25"))
    record = json.loads((work / "shapes" / "dataset" / "profile.json").read_text())
    assert (record["image_shape"], record["extra"]["net"], record["exact_classes"]) == ([3, 32, 32], "small", True)
    assert record["extra"]["class_names"] == list(CLASSES)
    ok(kit("split-random", *common, "--seed", "0"))
    split = json.loads((work / "shapes" / "random0" / "split.json").read_text())
    assert sorted(split["halves"]["A"] + split["halves"]["B"]) == [0, 1, 2, 3] and len(split["halves"]["A"]) == 2
    toy = (*common, "--iters", "4", "--threads", "1")
    for name in ("baseA", "baseB", "A2B+", "B1B"):
        ok(kit("train", *toy, "--treatment", name))
    runs = work / "shapes" / "random0" / "runs"
    run = json.loads((runs / "A2B+" / "run.json").read_text())
    assert run["profile"] == record, "the run records the profile make dataset wrote"
    assert "copied from base:conv2" in (runs / "A2B+" / "surgery.txt").read_text()
    ok(kit("plots", *common))
    with open(work / "shapes" / "random0" / "results" / "figure2.csv", newline="", encoding="utf-8") as f:
        drawn = {row["treatment"] for row in csv.DictReader(f)}
    assert {"baseB", "A2B+", "B1B"} <= drawn
    for figure in ("figure2.png", "figure2_bottom.png"):  # the classes of each half are named on the figures
        caption = Image.open(work / "shapes" / "random0" / "results" / figure).info.get("Description", "")
        assert all(name in caption for name in CLASSES) and caption.startswith("A: "), caption

    groups = tmp_path / "groups.csv"
    groups.write_text("circle,curved\ncross,straight\nsquare,straight\ntriangle,curved\n")
    ok(kit("split-groups", *common, "--groups", groups))
    natman = json.loads((work / "shapes" / "natman" / "split.json").read_text())["halves"]
    assert (natman["A"], natman["B"]) == ([0, 3], [1, 2]), "the first group in sorted order is A"
    for name in ("baseA", "A1B"):
        ok(kit("train", *toy, "--protocol", "natman", "--treatment", name))
    assert (work / "shapes" / "natman" / "runs" / "A1B" / "result.json").is_file()
    ok(kit("verify", *common, "--protocol", "natman", "--full"))


def test_class_caption_names_each_half():
    assert class_caption({"B": ["x"], "A": list("abcdefgh")}) == "A: a, b, c, d, e, f (+2 more) | B: x"
    assert class_caption(None) == "" and class_caption({}) == ""


def test_bad_own_dataset_commands_are_one_line_errors(tmp_path):
    work = tmp_path / "work"
    for args, part in ((("dataset", "--work", work, "--dataset", "fa20", "--images", tmp_path), "fa20"),
                       (("split-random", "--work", work, "--dataset", "nosuch"), "unknown dataset 'nosuch'"),
                       (("split-groups", "--work", work, "--dataset", "fa20", "--groups", tmp_path / "g.csv"),
                        "split-groups is for your own datasets")):
        proc = kit(*args)
        lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith(("INFO", "WARNING"))]
        assert proc.returncode == 2 and len(lines) == 1 and part in lines[0] and "; fix: " in lines[0], proc.stderr
