"""Per-split data: class split -> LMDBs (one per half and phase) + mean files + manifest.

Layout under the work folder, for dataset `fa20`:
```
work/fa20/dataset/            fa20.npz, classes.json        (build_fa20)
work/fa20/random<seed>/       split.json, manifest.json, data/
    data/A_train_lmdb  A_val_lmdb  B_train_lmdb  B_val_lmdb
    data/A_mean.binaryproto  B_mean.binaryproto
work/fa20/natman/             the same with halves A (natural: the 10 animals) and
                              B (man-made: the 10 Fashion-MNIST classes)
work/fa20/all/                the same with one half 'all' (all 20 classes)
work/fa20/small<seed>k<k>/    random<seed>'s halves; B's train LMDB holds the first k
                              images of each class (in FA-20's order), the rest as random<seed>
work/fa20/mix<seed>m<m>/      natman's halves with m classes swapped between them (data_prep.splits);
                              split.json's `mix` says which; m = 0: natman's LMDBs and means, byte for byte
```
Labels are re-indexed 0..K-1 within each half, in ascending original-label
order (`splits.idxmap`). Images are stored as (N, 1, 28, 28). Means come from
each half's train LMDB via Caffe's `compute_image_mean`.

`manifest.json` is written last, atomically: a split folder without it is
unfinished and is rebuilt from scratch; with it (and every file it lists),
`prepare_*` is a no-op.

Shuffle seeds: the LMDB of half number h (0 = first, in split.json order) and
phase p (0 = train, 1 = val) of a random split with seed s is shuffled with
`default_rng(1_000_003 * (s + 1) + 10 * h + p)`; the whole-dataset split uses
s = -1 and the natural/man-made split s = 2**32, one past the largest split
seed (so their seeds never collide with a random split's); a mixed split is
shuffled as natman (SHUFFLE_AS), whose halves it mixes.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep import fa20
from data_prep.lmdb_io import compute_mean, is_complete_lmdb, write_datum_lmdb
from data_prep.splits import (
    Split,
    make_random_split,
    mix_record,
    mixed_split,
    natman_split,
    whole_split,
    write_split_json,
)
from kitcore import layout
from kitcore.atomic import remove_path, sha256, write_json
from kitcore.errors import KitError
from kitcore.profiles import PREPARERS, PROFILES, profile

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
PHASES = ("train", "val")


@dataclass(frozen=True)
class DatasetSpec:
    """How to build and load one dataset the kit knows."""

    num_classes: int
    kinds: tuple[str, ...]  # 'natural' or 'man-made' per label (the natman split)
    build: Callable[[Path], Path]
    load: Callable[[Path], fa20.FA20]
    contact_sheet: Callable[[Path, Path], Path] | None = None  # (dataset folder, png) -> png


SPECS: dict[str, DatasetSpec] = {  # the embedded preparers (kitcore.profiles.EMBEDDED) and how each builds its data
    "fa20": DatasetSpec(num_classes=len(fa20.CLASS_NAMES), kinds=fa20.KINDS, build=fa20.build_fa20, load=fa20.load_fa20,
                        contact_sheet=fa20.contact_sheet),
}


def dataset_spec(dataset: str) -> DatasetSpec:
    """Return how the kit builds `dataset` (its profile's preparer), or raise KitError naming the datasets it builds."""
    p = profile(dataset)
    if p.preparer not in SPECS:
        built = sorted(n for n, q in PROFILES.items() if q.preparer in SPECS)
        raise KitError(f"the kit does not build {dataset!r} (its splits come from {PREPARERS[p.preparer]})",
                       f"use one of: {', '.join(built)}")
    return SPECS[p.preparer]


def dataset_dir(work: Path, dataset: str) -> Path:
    """Return the folder of the built dataset itself."""
    dataset_spec(dataset)
    return layout.dataset_dir(work, dataset)


def split_dir(work: Path, dataset: str, split_name: str) -> Path:
    """Return the folder of one split (e.g. 'random0', 'all') of a known dataset (kitcore.layout)."""
    return layout.split_dir(work, dataset, split_name)


NON_RANDOM_SEEDS = {"all": -1, "natman": 2**32}  # stand-in split seeds of the LMDB shuffle
SHUFFLE_AS = {"mix": "natman"}  # protocol -> the split whose shuffle seeds its LMDBs take (m = 0: natman's LMDBs)


def shuffle_seed(split_seed: int | str | None, half_index: int, phase: str) -> int:
    """Return the LMDB shuffle seed of a (split seed or non-random split name, half, phase); see the module
    docstring."""
    if split_seed is None or isinstance(split_seed, str):
        s = NON_RANDOM_SEEDS.get(split_seed, -1)
    else:
        s = int(split_seed)
    return 1_000_003 * (s + 1) + 10 * half_index + PHASES.index(phase)


def read_manifest(sdir: Path) -> dict | None:
    """Return the parsed manifest.json of a split folder, or None if absent or unreadable."""
    path = Path(sdir) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return None


def _manifest_complete(sdir: Path, manifest: dict) -> bool:
    """Whether every file the manifest lists exists."""
    for rel in manifest.get("files", {}):
        p = sdir / rel
        if not (is_complete_lmdb(p) if rel.endswith("_lmdb") else p.is_file()):
            log.warning("%s lists %s, which is missing: rebuilding", sdir / "manifest.json", p)
            return False
    return True


def _check_same(sdir: Path, manifest: dict, dataset: str, split: Split, content: str) -> None:
    """Raise KitError if an existing manifest describes a different split or dataset build."""
    if manifest.get("dataset") != dataset or Split.from_dict(manifest["split"]) != split:
        raise KitError(f"{sdir} holds a different split than {split.name} of {dataset}",
                       f"delete {sdir} or rebuild it with force")
    if manifest.get("dataset_content_sha256") != content:
        raise KitError(f"{sdir} was prepared from a different build of {dataset}",
                       f"delete {sdir} or rebuild it with force")


def _first_per_class(y: np.ndarray, keep: np.ndarray, per_class: int, split: Split, half: str) -> np.ndarray:
    """`keep` less all but the first per_class images of each class (in the arrays' order); KitError when a
    class of the half has fewer."""
    counts = {int(c): int(n) for c, n in zip(*np.unique(y[keep], return_counts=True))}
    if min(counts.values()) < per_class:
        fewest = min(counts, key=counts.get)
        raise KitError(f"half {half} of {split.name}: class {fewest} has {counts[fewest]} train images, "
                       f"fewer than k = {per_class}", f"pass PERCLASS={min(counts.values())} or less")
    rank = np.zeros(len(y), np.int64)
    for c in counts:
        where = np.flatnonzero(y == c)
        rank[where] = np.arange(len(where))
    return keep & (rank < per_class)


def _half_mask(y: np.ndarray, split: Split, half: str, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(which images are the half's, their new labels 0..K-1 by original label); with per_class, only the first
    per_class images of each class."""
    mapping = split.idxmap(half)
    lookup = np.full(split.num_classes, -1, np.int64)
    lookup[list(mapping)] = list(mapping.values())
    keep = lookup[y] >= 0
    if per_class is not None:
        keep = _first_per_class(y, keep, per_class, split, half)
    return keep, lookup


def _half_arrays(x: np.ndarray, y: np.ndarray, split: Split, half: str,
                 per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Select one half's images as (N,1,H,W) and relabel them 0..K-1 (ascending original label); with
    per_class, only the first per_class images of each class, in the arrays' order."""
    keep, lookup = _half_mask(y, split, half, per_class)
    return np.ascontiguousarray(x[keep][:, None]), lookup[y[keep]]


def _shuffle_key(split: Split) -> int | str | None:
    """What shuffle_seed reads for a split: its seed, its name (non-random splits) or SHUFFLE_AS's split."""
    protocol = layout.split_protocol(split.name)[0]
    return SHUFFLE_AS.get(protocol) or (split.name if split.seed is None else split.seed)


def _prepare(work: Path, dataset: str, split: Split, force: bool, per_class: int | None = None,
             facts: dict | None = None) -> Path:
    """Build (or reuse) the LMDBs, means and manifest of `split` (`facts`: more keys of split.json); return it."""
    spec = dataset_spec(dataset)
    ddir, sdir = dataset_dir(work, dataset), split_dir(work, dataset, split.name)
    spec.build(ddir)
    content = json.loads((ddir / fa20.CLASSES_NAME).read_text())["content_sha256"]
    manifest = read_manifest(sdir)
    if manifest is not None and not force:
        _check_same(sdir, manifest, dataset, split, content)
        if _manifest_complete(sdir, manifest):
            log.info("split %s of %s already prepared in %s (manifest.json present): nothing to do",
                     split.name, dataset, sdir)
            return sdir
    t0 = time.monotonic()
    data = spec.load(ddir)
    names = list(data.class_names)
    cut = layout.cut_halves(layout.split_protocol(split.name)[0], split.halves)
    uncut = {}
    for half in cut:  # a k above a class's images fails before the folder is touched
        keep = _half_mask(data.train_y, split, half)[0]
        _first_per_class(data.train_y, keep, per_class, split, half)
        counts = np.unique(data.train_y[keep], return_counts=True)[1]
        uncut[half] = [int(counts.min()), int(counts.max())]
    remove_path(sdir / "manifest.json")  # from here on the folder is unfinished
    cut_facts = {"per_class": per_class, "cut_halves": cut, "uncut_per_class": uncut} if cut else {}
    extra = {"dataset": dataset, **cut_facts, **(facts or {}),
             "class_names": {h: [names[c] for c in cs] for h, cs in split.halves.items()},
             "idxmap": {h: {str(o): n for o, n in split.idxmap(h).items()} for h in split.halves}}
    if hasattr(data, "kinds"):
        extra["kinds"] = {h: [data.kinds[c] for c in cs] for h, cs in split.halves.items()}
    write_split_json(sdir / "split.json", split, extra)
    files: dict[str, dict] = {"split.json": {"sha256": sha256(sdir / "split.json")}}
    phases = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y)}
    for h_index, half in enumerate(split.halves):
        for phase, (x, y) in phases.items():
            rel = f"data/{half}_{phase}_lmdb"
            images, labels = _half_arrays(x, y, split, half, per_class if phase == "train" and half in cut else None)
            seed = shuffle_seed(_shuffle_key(split), h_index, phase)
            entry = write_datum_lmdb(sdir / rel, images, labels, seed, force=True)
            files[rel] = {"half": half, "phase": phase, **entry}
        rel = f"data/{half}_mean.binaryproto"
        compute_mean(sdir / f"data/{half}_train_lmdb", sdir / rel)
        files[rel] = {"half": half, "from": f"data/{half}_train_lmdb", "sha256": sha256(sdir / rel)}
    manifest = {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "dataset_content_sha256": content,
        "split": split.to_dict(),
        "class_names": extra["class_names"],
        "files": files,
    }
    write_json(sdir / "manifest.json", manifest)
    log.info("prepared split %s of %s in %s (%.1f s)", split.name, dataset, sdir, time.monotonic() - t0)
    return sdir


def prepare_split(work: Path, dataset: str, seed: int, force: bool = False) -> Path:
    """Prepare the random A/B split `seed` of `dataset` under work/<dataset>/random<seed>/; return it."""
    spec = dataset_spec(dataset)
    return _prepare(Path(work), dataset, make_random_split(spec.num_classes, seed), force)


def prepare_whole(work: Path, dataset: str, force: bool = False) -> Path:
    """Prepare all classes of `dataset` as one half 'all' under work/<dataset>/all/; return it."""
    spec = dataset_spec(dataset)
    return _prepare(Path(work), dataset, whole_split(spec.num_classes), force)


def prepare_natman(work: Path, dataset: str, force: bool = False) -> Path:
    """Prepare the natural (A) / man-made (B) split of `dataset` under work/<dataset>/natman/; return it."""
    spec = dataset_spec(dataset)
    return _prepare(Path(work), dataset, natman_split(spec.kinds), force)


def prepare_small(work: Path, dataset: str, seed: int, per_class: int, force: bool = False) -> Path:
    """Prepare split small<seed>k<k> of `dataset`: random<seed>'s halves, B's train set cut to its first k
    images per class (A and the val sets as random<seed>'s, shuffled alike); return it."""
    spec = dataset_spec(dataset)
    k = layout.check_per_class(per_class, "small")
    random = make_random_split(spec.num_classes, seed)
    split = Split(name=layout.split_name("small", seed, k), halves=random.halves, num_classes=random.num_classes,
                  seed=random.seed)
    return _prepare(Path(work), dataset, split, force, per_class=k)


def prepare_mix(work: Path, dataset: str, seed: int, mix, force: bool = False) -> Path:
    """Prepare split mix<seed>m<m> of `dataset`: natman's halves with m classes swapped (MIX=m, or a share P% of
    A's classes; data_prep.splits.mixed_split); return it."""
    spec, groups = dataset_spec(dataset), ("natural", "man-made")  # natman's A and B
    split = mixed_split(spec.kinds, groups, seed, mix)
    return _prepare(Path(work), dataset, split, force, facts={"mix": mix_record(split, spec.kinds, groups)})


def prepare_for(work: Path, dataset: str, protocol: str, seed: int = 0, force: bool = False,
                per_class: int | None = None, mix=None) -> Path:
    """Prepare the split a protocol trains on (random: random<seed>, natman, whole: all, small: small<seed>k<k>,
    mix: mix<seed>m<m>); return it."""
    profile(dataset).check_protocol(protocol)
    if protocol == "mix":
        return prepare_mix(work, dataset, seed, mix, force=force)
    if protocol == "random":
        return prepare_split(work, dataset, seed, force=force)
    if protocol == "small":
        return prepare_small(work, dataset, seed, per_class, force=force)
    if protocol == "natman":
        return prepare_natman(work, dataset, force=force)
    if protocol == "whole":
        return prepare_whole(work, dataset, force=force)
    raise KitError(f"protocol {protocol!r} has no split of {dataset}",
                   "use --protocol random, natman, whole, small or mix (reduced is for ImageNet: make split-reduced)")
