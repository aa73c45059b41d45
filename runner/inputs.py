"""Check a run's inputs before Caffe sees them: split data, labels, base model; each read once.

`gather` reads the split's manifest.json and split.json and a transfer's base
model once per run start and returns them checked (`RunInputs`). Each check
raises KitError with the command that fixes it (kitcore.layout). Every LMDB
of the halves a run reads, FA-20's and ImageNet's alike, is checked against
what manifest.json recorded when it was written (data_prep.verify, fast mode:
record count, file size, sampled records; small files whole); mean files by
sha256. Labels are checked against the net's outputs from the manifest's label
range (release Caffe does not range-check labels and corrupts memory on them);
a transfer's base model must be the finished base run's model with the sha256
its result.json recorded.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from kitcore import atomic, layout
from kitcore.errors import KitError

log = logging.getLogger(__name__)


def _split_cmd(spec) -> str:
    """The make command that rebuilds the split of `spec` (kitcore.layout.split_command)."""
    return layout.split_command(spec.dataset, spec.treatment.protocol, spec.seed, spec.per_class, force=True,
                                mix=spec.mix, work=spec.work)


@dataclass(frozen=True)
class RunInputs:
    """What a run start read and checked: the split's manifest and halves, the base model and its sha256."""

    manifest: dict
    manifest_sha256: str
    halves: dict
    num_classes: int
    val_records: int | None
    base_model: Path | None = None
    base_sha256: str | None = None


def gather(spec) -> RunInputs:
    """Read the manifest, split.json and a transfer's base model once; check labels, data and the base."""
    t = spec.treatment
    manifest = read_manifest(spec)
    try:
        halves = json.loads((spec.split_dir / "split.json").read_text())["halves"]
    except (OSError, ValueError, KeyError) as exc:
        raise KitError(f"{spec.split_dir / 'split.json'} is missing or unreadable ({exc})", _split_cmd(spec)) from exc
    num_classes = len(halves[t.target])
    check_labels(spec, manifest, num_classes)  # release Caffe corrupts memory on labels >= num_output
    check_data(spec, manifest, {t.target, spec.profile.mean_half(t.source, t.target)})
    model, digest = base_model(spec) if t.kind == "transfer" else (None, None)
    val = manifest.get("files", {}).get(f"data/{t.target}_val_lmdb", {})
    return RunInputs(manifest=manifest, manifest_sha256=atomic.sha256(spec.split_dir / "manifest.json"),
                     halves=halves, num_classes=num_classes, val_records=val.get("records"),
                     base_model=model, base_sha256=digest)


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
        from kitcore.caffe_env import require_opencv
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
    """Check the LMDBs and means of `halves` against manifest.json (data_prep.verify, fast mode), any dataset."""
    from data_prep.verify import verify_files
    lines = verify_files(spec.split_dir, manifest.get("files", {}), set(halves), full=False,
                         fix=f"rebuild the split: {_split_cmd(spec)}")
    log.debug("checked %d files of halves %s in %s against manifest.json (fast)", len(lines),
             ",".join(sorted(halves)), spec.split_dir)


def base_model(spec) -> tuple[Path, str]:
    """The finished, unaltered model of the base net a transfer starts from, and its sha256 (hashed once)."""
    name = spec.treatment.base_name
    run = layout.run_dir(spec.split_dir, name)
    record = layout.read_result(run)
    if record is None and (run / "result.json").exists():
        raise KitError(f"the result.json of {spec.treatment.name}'s base run {name} cannot be read ({run})",
                       f"rebuild it from the base's final model and log: {spec.make_cmd(name)}")
    if record is None:
        raise KitError(f"missing base model for {spec.treatment.name}: run {name} has not finished",
                       spec.make_cmd(name))
    model = run / record["model"]
    if not model.is_file():
        raise KitError(f"missing base model {model} (run {name} says it finished)", spec.make_cmd(name, force=True))
    digest = atomic.sha256(model)
    if record.get("model_sha256") and digest != record["model_sha256"]:
        raise KitError(f"base model {model} is corrupt (its sha256 differs from {name}/result.json)",
                       spec.make_cmd(name, force=True))
    return model, digest
