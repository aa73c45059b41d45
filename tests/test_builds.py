"""Evidence that two Caffe builds train the same nets (kitcore.builds, runner.evidence), on record folders the
tests write: a published run trained again on another build joins the two builds into one class only when it
ended in the very model its record names, and only joined builds pool."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from analysis.records import check_pooled
from analysis.small import check_small
from kitcore import builds, sums
from kitcore.errors import KitError
from runner.evidence import publish_evidence

SHA = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("x", "y", "z")}


def _record(folder: Path, build: str, model: str, treatment: str = "baseB") -> Path:
    """A record folder: run.json naming its build, result.json naming its final model's sha256, a gzipped log."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"treatment": treatment, "build": {"key": build}}))
    (folder / "result.json").write_text(json.dumps({"treatment": treatment, "model_sha256": model}))
    (folder / "train.log.gz").write_bytes(gzip.compress(b"I0101 Iteration 0, loss = 1\n"))
    return folder


@pytest.fixture
def records(tmp_path) -> Path:
    """fa20 records on build b1 (random0/baseB ends in model y, small/small0k5/baseB in x), and evidence: build b2
    repeats small0k5/baseB into x (joined), a0 repeats random0/baseB into y (joined), b3 into z (not joined)."""
    root = tmp_path / "fa20"
    _record(root / "random0" / "baseB", "b1", SHA["y"])
    _record(root / "small" / "small0k5" / "baseB", "b1", SHA["x"])
    _record(root / "builds" / "b2" / "small0k5" / "baseB", "b2", SHA["x"])
    _record(root / "builds" / "b3" / "random0" / "baseB", "b3", SHA["z"])
    return root


def test_the_same_model_joins_two_builds(records):
    (b2,) = [p for p in builds.pairs(records) if p["builds"][0] == "b2"]
    assert b2 == {"evidence": records / "builds" / "b2" / "small0k5" / "baseB",
                  "twin": records / "small" / "small0k5" / "baseB", "builds": ("b2", "b1"), "same": True,
                  "model": SHA["x"]}
    assert builds.build_key(b2["evidence"]) == "b2"
    assert builds.classes(records) == {"b1": "b1", "b2": "b1"}
    assert builds.classes(records / "small") == builds.classes(records)  # small/'s records see fa20/builds too
    assert builds.canonical("b2", builds.classes(records)) == "b1"


def test_a_different_model_is_no_evidence(records):
    (b3,) = [p for p in builds.pairs(records) if p["builds"][0] == "b3"]
    assert b3["twin"] == records / "random0" / "baseB" and b3["same"] is False
    joined = builds.classes(records)
    assert "b3" not in joined and builds.canonical("b3", joined) == "b3"
    _record(records / "builds" / "b4" / "random9" / "baseB", "b4", SHA["y"])  # repeats nothing published
    assert builds.twin(records / "builds" / "b4" / "random9" / "baseB") is None
    assert [p["builds"][0] for p in builds.pairs(records)] == ["b2", "b3"]
    assert builds.classes(records) == joined


def test_a_class_is_every_build_the_evidence_chains_to_and_its_smallest_key(records):
    _record(records / "builds" / "a0" / "random0" / "baseB", "a0", SHA["y"])  # a0 = b1, and b2 = b1
    assert builds.classes(records) == {"a0": "a0", "b1": "a0", "b2": "a0"}


def _rows(split: str, build: str) -> list[dict]:
    return [{"split": split, "target": t, "build_key": build, "protocol_key": "p"} for t in ("A", "B")]


def test_only_joined_builds_pool(records):
    full = _rows("random0", "b1")
    check_small(_rows("small0k5", "b2"), full, builds.classes(records))
    with pytest.raises(KitError, match=r"2 Caffe builds: \['b1', 'b2'\]"):
        check_small(_rows("small0k5", "b2"), full)  # no evidence named
    with pytest.raises(KitError, match=r"2 Caffe builds: \['b1', 'b3'\]"):
        check_small(_rows("small0k5", "b3"), full, builds.classes(records))


def test_records_of_joined_builds_pool(records):
    rows = [{"build_key": b, "protocol_key": "p"} for b in ("b1", "b2")]
    with pytest.raises(KitError, match=r"2 \(build, protocol\) pairs"):
        check_pooled(rows)
    with pytest.raises(KitError, match=r"2 \(build, protocol\) pairs"):
        check_pooled(rows + [{"build_key": "b3", "protocol_key": "p"}], joined=builds.classes(records))
    check_pooled(rows, joined=builds.classes(records))  # b2 = b1: one class, one protocol


# ---- publishing evidence (runner.evidence) ------------------------------------------------------------------------

def _work_run(work: Path, split: str, build: str, model: bytes, treatment: str = "baseB") -> Path:
    """A finished run folder in a work folder: its model file with the recorded sha256, run.json, a train.log."""
    run = work / "fa20" / split / "runs" / treatment
    (run / "snapshots").mkdir(parents=True)
    (run / "snapshots" / "m.caffemodel").write_bytes(model)
    (run / "run.json").write_text(json.dumps({"treatment": treatment, "build": {"key": build}}))
    (run / "result.json").write_text(json.dumps({"treatment": treatment, "model": "snapshots/m.caffemodel",
                                                 "model_sha256": hashlib.sha256(model).hexdigest()}))
    (run / "train.log").write_text("I0101 Iteration 0, loss = 1\n")
    return run


def test_publish_evidence_of_the_same_model(records, tmp_path):
    run = _work_run(tmp_path / "work", "small0k5", "b5", b"x")  # sha256(b"x") is the small0k5 record's model
    line = publish_evidence(tmp_path / "work", "fa20", records, "small0k5", "baseB")
    dest = records / "builds" / "b5" / "small0k5" / "baseB"
    assert line == (f"small0k5/baseB: build b5 ended in the model of the record on build b1 ({SHA['x'][:12]}...); "
                    f"evidence published in {dest}")
    assert sorted(p.name for p in dest.iterdir()) == ["SHA256SUMS", "result.json", "run.json", "train.log.gz"]
    assert sums.verify_unit(dest) == 3  # the evidence verifies itself, as every published unit
    assert (dest / "run.json").read_bytes() == (run / "run.json").read_bytes()
    assert gzip.decompress((dest / "train.log.gz").read_bytes()) == (run / "train.log").read_bytes()
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert builds.classes(records) == {"b1": "b1", "b2": "b1", "b5": "b1"}
    again = publish_evidence(tmp_path / "work", "fa20", records, "small0k5", "baseB")
    assert again == f"small0k5/baseB: evidence for build b5 already published in {dest}"


def test_publish_evidence_refuses_another_model(records, tmp_path):
    _work_run(tmp_path / "work", "random0", "b6", b"not y")
    with pytest.raises(KitError, match="no evidence that the builds train the same nets") as refused:
        publish_evidence(tmp_path / "work", "fa20", records, "random0", "baseB")
    assert "build b6 ended in model" in str(refused.value) and f"build b1 in {SHA['y'][:12]}" in str(refused.value)
    assert not (records / "builds" / "b6").exists() and "b6" not in builds.classes(records)


def test_publish_evidence_needs_a_finished_run_and_a_published_record(records, tmp_path):
    run = _work_run(tmp_path / "work", "small0k5", "b7", b"x")
    (run / "snapshots" / "m.caffemodel").write_bytes(b"x, changed")  # no longer the model result.json names
    with pytest.raises(KitError, match="is not a finished run") as unfinished:
        publish_evidence(tmp_path / "work", "fa20", records, "small0k5", "baseB")
    assert "make train TREATMENT=baseB DATASET=fa20 PROTOCOL=small SEED=0 PERCLASS=5" in str(unfinished.value)
    _work_run(tmp_path / "work", "random4", "b7", b"y")
    with pytest.raises(KitError, match="no published record of random4/baseB"):
        publish_evidence(tmp_path / "work", "fa20", records, "random4", "baseB")
    assert not (records / "builds" / "b7").exists()
