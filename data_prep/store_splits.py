"""A split's LMDBs, means and manifest, derived from a whole-set store (ImageNet's, or a user's folder dataset's).

Input: a split folder holding `split.json` and `lists/{half}_{train,val}.txt`
(`image_lists.write_split_lists`), and the whole-set store (`image_store`:
`train_lmdb`, `val_lmdb` keyed by path, `dataset.json`, `bad_images.txt`).
Output: `data/{half}_{train,val}_lmdb`, `data/{half}_mean.binaryproto`, and
`manifest.json`, written last: with it (and the same split.json and whole set)
a rerun is a no-op. Labels, shuffle seeds (`prepare.shuffle_seed`) and the
manifest's `files` entries follow FA-20's conventions, so the runner reads
every dataset alike.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from data_prep import image_store
from data_prep.image_lists import DATASET, PHASES, read_image_list
from data_prep.lmdb_io import compute_mean, is_complete_lmdb
from data_prep.prepare import MANIFEST_FORMAT, SHUFFLE_AS, read_manifest, shuffle_seed
from data_prep.splits import Split
from kitcore.atomic import remove_path, sha256, write_json
from kitcore.errors import KitError
from kitcore.layout import split_protocol

log = logging.getLogger(__name__)


def _up_to_date(sdir: Path, manifest: dict, split_sha: str, whole_sha: str) -> bool:
    """Whether an existing manifest matches this split.json and whole set and lists only existing files."""
    if manifest.get("split_json_sha256") != split_sha or manifest.get("whole_set_sha256") != whole_sha:
        return False
    return all(is_complete_lmdb(sdir / rel) if rel.endswith("_lmdb") else (sdir / rel).is_file()
               for rel in manifest.get("files", {}))


def prepare_split_db(sdir: Path, wdir: Path, force: bool = False) -> dict:
    """Derive the LMDBs of every half and phase of the split in `sdir` from the whole set, means, manifest
    (of ImageNet, or of the dataset split.json names: a user's folder dataset)."""
    sdir, wdir = Path(sdir), Path(wdir)
    meta = json.loads((sdir / "split.json").read_text())
    split, dataset = Split.from_dict(meta), meta.get("dataset", DATASET)
    split_sha, whole_sha = sha256(sdir / "split.json"), sha256(wdir / "dataset.json")
    manifest = read_manifest(sdir)
    if manifest is not None and not force and _up_to_date(sdir, manifest, split_sha, whole_sha):
        log.info("split %s already prepared in %s (manifest.json present): nothing to do", split.name, sdir)
        return manifest
    whole = json.loads((wdir / "dataset.json").read_text())
    encoded, chw = bool(whole.get("encoded", False)), tuple(whole.get("shape", image_store.COLOUR))
    if encoded:
        from kitcore.caffe_env import require_opencv
        require_opencv(f"the encoded Datums of {wdir} (ENCODED=1) for compute_image_mean")
    remove_path(sdir / "manifest.json")  # from here on the folder is unfinished
    t0 = time.monotonic()
    bad = image_store.bad_paths(wdir)
    files: dict[str, dict] = {"split.json": {"sha256": split_sha}}
    skipped_total = 0
    # a mixed split is shuffled as natman, whose seed is None here (m = 0: natman's LMDBs, byte for byte)
    key = None if split_protocol(split.name)[0] in SHUFFLE_AS else split.seed
    for h_index, half in enumerate(split.halves):
        for phase in PHASES:
            rel = f"data/{half}_{phase}_lmdb"
            entries = read_image_list(sdir / "lists" / f"{half}_{phase}.txt", len(split.halves[half]))
            remove_path(sdir / rel)
            entry = image_store.derive_lmdb(wdir / f"{phase}_lmdb", entries, sdir / rel,
                                            shuffle_seed(key, h_index, phase), bad[phase], encoded, chw)
            names = meta["class_names"][half]
            entry["class_counts"] = {names[int(k)]: n for k, n in entry["label_counts"].items()}
            files[rel] = {"half": half, "phase": phase, "list": f"lists/{half}_{phase}.txt", **entry}
            skipped_total += entry["skipped_bad"]
            if entry["records"] == 0:
                raise KitError(f"{sdir / rel} would be empty: every listed image is bad",
                               f"check IMAGES: see {wdir / 'bad_images.txt'}")
        rel = f"data/{half}_mean.binaryproto"
        compute_mean(sdir / f"data/{half}_train_lmdb", sdir / rel)
        files[rel] = {"half": half, "from": f"data/{half}_train_lmdb", "sha256": sha256(sdir / rel)}
    if skipped_total:
        log.warning("split %s: %d listed images are missing or undecodable and left out (see %s and "
                    "the manifest's skipped_paths)", split.name, skipped_total, wdir / "bad_images.txt")
    manifest = {"format": MANIFEST_FORMAT, "dataset": dataset, "split": split.to_dict(),
                "class_names": meta["class_names"], "encoded": encoded, "split_json_sha256": split_sha,
                "whole_set": str(wdir.resolve()), "whole_set_sha256": whole_sha,
                "bad_images": {"skipped": skipped_total, "whole_set_list": str((wdir / "bad_images.txt").resolve())},
                "files": files}
    write_json(sdir / "manifest.json", manifest)
    log.info("prepared split %s of %s in %s (%.1f s)", split.name, dataset, sdir, time.monotonic() - t0)
    return manifest
