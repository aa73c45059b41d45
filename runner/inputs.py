"""Check a run's inputs before Caffe sees them: split data, labels, base model.

Each check raises KitError with the command that fixes it. The LMDBs and mean
files are compared with the sha256 the split's manifest.json recorded when they
were written (a truncated, tampered or bit-rotted LMDB is refused); labels are
checked against the net's outputs from the manifest's label range (release
Caffe does not range-check labels and corrupts memory on them); a transfer's
base model must be the finished base run's model with the sha256 its
result.json recorded.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from kitcore import atomic
from kitcore.errors import KitError

log = logging.getLogger(__name__)


# the command that makes (FORCE=1: rebuilds) the split a protocol trains on
SPLIT_COMMANDS = {"random": "make split-random DATASET={dataset} SEED={seed}",
                  "natman": "make split-natural DATASET={dataset}", "whole": "make split-whole DATASET={dataset}",
                  "reduced": "make split-reduced DATASET={dataset} PERCLASS={per_class}"}


def _split_cmd(spec) -> str:
    protocol = getattr(spec.treatment, "protocol", "random")
    command = SPLIT_COMMANDS[protocol].format(dataset=spec.dataset, seed=spec.seed,
                                              per_class=getattr(spec, "per_class", None) or "k")
    return command + (" LISTS=dir IMAGES=dir" if spec.dataset == "imagenet" else "") + " FORCE=1"


def read_manifest(spec) -> dict:
    """The split's manifest.json, or a KitError naming the command that makes it."""
    path = spec.split_dir / "manifest.json"
    if not path.is_file():
        raise KitError(f"split {spec.split_dir.name} of {spec.dataset} is not prepared ({path} missing)",
                       _split_cmd(spec).replace(" FORCE=1", ""))
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise KitError(f"{path} is not valid JSON ({exc})", _split_cmd(spec)) from exc
    if manifest.get("encoded"):  # JPEG Datums: only an OpenCV Caffe's Data layer decodes them
        from kitcore.caffe_env import require_opencv  # pylint: disable=import-outside-toplevel
        require_opencv(f"split {spec.split_dir.name} of {spec.dataset} holds encoded Datums (ENCODED=1) and")
    return manifest


def check_labels(spec, manifest: dict, num_classes: int) -> None:
    """Refuse labels >= num_output before Caffe sees them (release Caffe corrupts memory)."""
    for name, entry in manifest.get("files", {}).items():
        if entry.get("half") != spec.treatment.target or not name.endswith("_lmdb"):
            continue
        if (entry.get("label_max") or 0) >= num_classes or (entry.get("label_min") or 0) < 0:
            raise KitError(f"{name} has labels {entry.get('label_min')}..{entry['label_max']} but the net has "
                           f"{num_classes} outputs (labels must be 0..{num_classes - 1})",
                           f"rebuild the split: {_split_cmd(spec)}")


def check_data(spec, manifest: dict, halves: set[str]) -> None:
    """Compare the LMDBs and means of `halves` with the sha256 manifest.json recorded."""
    for name, entry in manifest.get("files", {}).items():
        if entry.get("half") not in halves or "sha256" not in entry:
            continue
        path = spec.split_dir / name
        target = path / "data.mdb" if name.endswith("_lmdb") else path
        if not target.is_file():
            raise KitError(f"{target} is missing", f"rebuild the split: {_split_cmd(spec)}")
        if atomic.sha256(target) != entry["sha256"]:
            raise KitError(f"{target} is corrupt or was changed (its sha256 differs from manifest.json)",
                           f"rebuild the split: {_split_cmd(spec)}")


def base_model(spec) -> Path:
    """The finished, unaltered model of the base net a transfer starts from."""
    name = spec.treatment.base_name
    result = spec.split_dir / "runs" / name / "result.json"
    if not result.is_file():
        raise KitError(f"missing base model for {spec.treatment.name}: run {name} has not finished",
                       spec.make_cmd(name))
    record = json.loads(result.read_text())
    model = result.parent / record["model"]
    if not model.is_file():
        raise KitError(f"missing base model {model} (run {name} says it finished)",
                       spec.make_cmd(name) + " FORCE=1")
    if record.get("model_sha256") and atomic.sha256(model) != record["model_sha256"]:
        raise KitError(f"base model {model} is corrupt (its sha256 differs from {name}/result.json)",
                       spec.make_cmd(name) + " FORCE=1")
    return model
