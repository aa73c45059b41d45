"""ImageNet (ILSVRC2012) per-split data: lists -> split -> (with IMAGES) LMDBs + means + manifest.

The ImageNet counterpart of `prepare.py` (which owns the embedded FA-20):
ImageNet is not built by the kit but read from the user's LISTS and IMAGES
folders, so it has its own entry point, `prepare_imagenet`. Layout:
```
work/imagenet/dataset/        train_lmdb, val_lmdb (keyed by path), bad_images.txt, dataset.json
work/imagenet/<split>/        split.json, lists/{half}_{train,val}.txt          (always)
    data/{half}_{train,val}_lmdb, data/{half}_mean.binaryproto, manifest.json  (with IMAGES)
```
`<split>` is `random<s>`, `natman` (A natural, B man-made), `reduced<k>` or
`all` (see `imagenet_lists`). Labels, shuffle seeds (`prepare.shuffle_seed`)
and the manifest's `files` entries follow FA-20's conventions, so the runner
reads both alike. `manifest.json` is written last: with it (and the same
lists and whole set) a rerun is a no-op.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from data_prep import imagenet_db
from data_prep.imagenet_lists import (
    DATASET,
    PHASES,
    IlsvrcLists,
    load_lists,
    make_split,
    read_image_list,
    write_split_lists,
)
from data_prep.lmdb_io import compute_mean, is_complete_lmdb
from data_prep.prepare import MANIFEST_FORMAT, read_manifest, shuffle_seed
from data_prep.splits import Split
from kitcore import layout
from kitcore.atomic import remove_path, sha256, write_json
from kitcore.errors import KitError

log = logging.getLogger(__name__)


def imagenet_split_dir(work: Path, name: str) -> Path:
    """Return <work>/imagenet/<name> (kitcore.layout)."""
    return layout.split_dir(work, DATASET, name)


def _kinds(lists: IlsvrcLists, split: Split) -> dict[str, list[str]] | None:
    """Per-half class kinds (natural / man-made) of the natman split, else None."""
    if split.name != "natman":
        return None
    from data_prep.natman import kind_of
    from data_prep.wordnet import load_wordnet
    wn = load_wordnet()
    return {h: [kind_of(wn, lists.synsets[c]) for c in cs] for h, cs in split.halves.items()}


def prepare_imagenet(work: Path, lists_dir: Path, protocol: str, seed: int | None = None,
                     per_class: int | None = None, images: Path | None = None, jobs: int = 1,
                     force: bool = False, encoded: bool = False) -> Path:
    """Write the split of `protocol` (random, natman, whole, reduced) of LISTS; with `images` also its LMDBs and means.

    `encoded`: the whole set (and so every half) holds encoded JPEG Datums, as
    `convert_imageset --encoded` (needs Caffe built with OpenCV to use)."""
    layout.split_name(protocol, seed=seed, per_class=per_class)  # bad arguments fail before any file is read
    if encoded and images is not None:
        from kitcore.caffe_env import require_opencv
        require_opencv("encoded Datums (ENCODED=1) for compute_image_mean and Caffe's Data layer")
    lists = load_lists(lists_dir)
    split = make_split(protocol, lists, seed=seed, per_class=per_class)
    sdir = imagenet_split_dir(work, split.name)
    write_split_lists(sdir, lists, split, per_class=per_class if protocol == "reduced" else None,
                      kinds=_kinds(lists, split), force=force)
    if images is None:
        log.info("lists of %s written to %s; pass IMAGES (--images) to build its LMDBs and means",
                 split.name, sdir / "lists")
        return sdir
    wdir = imagenet_db.build_whole_set(work, lists, images, jobs=jobs, encoded=encoded, reencode=force)
    prepare_split_db(sdir, wdir, force=force)
    return sdir


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
    encoded, chw = bool(whole.get("encoded", False)), tuple(whole.get("shape", imagenet_db.COLOUR))
    if encoded:
        from kitcore.caffe_env import require_opencv
        require_opencv(f"the encoded Datums of {wdir} (ENCODED=1) for compute_image_mean")
    remove_path(sdir / "manifest.json")  # from here on the folder is unfinished
    t0 = time.monotonic()
    bad = imagenet_db.bad_paths(wdir)
    files: dict[str, dict] = {"split.json": {"sha256": split_sha}}
    skipped_total = 0
    for h_index, half in enumerate(split.halves):
        for phase in PHASES:
            rel = f"data/{half}_{phase}_lmdb"
            entries = read_image_list(sdir / "lists" / f"{half}_{phase}.txt", len(split.halves[half]))
            remove_path(sdir / rel)
            entry = imagenet_db.derive_lmdb(wdir / f"{phase}_lmdb", entries, sdir / rel,
                                            shuffle_seed(split.seed, h_index, phase), bad[phase], encoded, chw)
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
