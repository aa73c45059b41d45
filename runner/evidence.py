"""Publish evidence that two Caffe builds train the same nets (make publish-evidence WORK=dir SPLITS=... RUNS=...).

A published run trained again in a work folder on another build (or host),
`transfer-kit train` with the same split, treatment and iterations, ends in
some model. Where it is the very model the published record names
(result.json's `model_sha256`), its record is published as evidence under
`<root>/builds/<its build key>/<split>/<treatment>/` (kitcore.builds), and
from then on the analysis pools the two builds' records. Where the models
differ, nothing is written and the error says so: that pair is no evidence.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from kitcore import atomic, builds, layout, sums
from kitcore.errors import KitError
from runner.publish import record_files


def published_run(records: Path, split: str, treatment: str) -> Path:
    """The published record of a split's run under a records root (or its small/ folder); KitError if none."""
    for folder in builds.TWIN_FOLDERS:
        run = Path(records) / folder / split / treatment
        if (run / "result.json").is_file():
            return run
    raise KitError(f"no published record of {split}/{treatment} under {records}",
                   "name a run that is published (results/<dataset>/<split>/<treatment>)")


def publish_evidence(work: Path, dataset: str, records: Path, split: str, treatment: str) -> str:
    """Publish one retrained run as evidence; return one line saying what was done."""
    run = layout.run_dir(layout.split_dir(Path(work), dataset, split), treatment)
    protocol, seed, per_class = layout.split_protocol(split)
    if not layout.is_finished(run):
        cmd = layout.train_command(treatment, dataset, protocol, seed, per_class, work=work,
                                   mix=layout.split_mix(split))
        raise KitError(f"{run} is not a finished run", f"train it first: {cmd}")
    twin = published_run(records, split, treatment)
    mine = json.loads((run / "result.json").read_text())["model_sha256"]
    theirs = json.loads((twin / "result.json").read_text()).get("model_sha256")
    key, their_key = builds.build_key(run), builds.build_key(twin)
    if mine != theirs:
        raise KitError(f"{split}/{treatment} on build {key} ended in model {mine[:12]}..., the record on build "
                       f"{their_key} in {str(theirs)[:12]}...: no evidence that the builds train the same nets",
                       "pool their records only with MIXED=1, and say so where they are reported")
    dest = Path(records) / builds.EVIDENCE / key / split / treatment
    if dest.exists():
        return f"{split}/{treatment}: evidence for build {key} already published in {dest}"
    tmp = atomic.tmp_path(dest.parent / f".{treatment}")
    try:
        for name, data in record_files(run).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        sums.write_sums(tmp)
        os.replace(tmp, dest)
    finally:
        atomic.remove_path(tmp)
    return (f"{split}/{treatment}: build {key} ended in the model of the record on build {their_key} "
            f"({mine[:12]}...); evidence published in {dest}")
