"""A user's class-per-folder image tree (torchvision ImageFolder's layout): classes, files, held-out val, probe.

Layouts of IMAGES (DIR):
- `DIR/train/<class>/...` and `DIR/val/<class>/...`: the given train and val;
  every val class must be a train class (a train class without val images is
  allowed, with a warning);
- `DIR/<class>/...`: each class's files in sorted order, of which a seeded
  share `val_fraction` is held out as val: `round(val_fraction * n)` (halves
  up, at most n - 1) drawn by `default_rng([seed, crc32(class name)])`, so a
  class's val does not change when other classes are added.

A class is a subfolder (names starting with "." are skipped everywhere, files
directly in DIR or DIR/train are ignored); its images are every file under it
(subfolders too), in sorted order. Labels are the classes' sorted order (as
ILSVRC's synset order); at least `MIN_CLASSES`. Keys are paths relative to the
phase's root (`<class>/<file>`), as Caffe's list files name images.

The probe reads images with `cv2.IMREAD_ANYCOLOR` (the size OpenCV decodes
them at, EXIF orientation applied): an image is grey when it has one channel
or three identical ones. OpenCV has no header-only read, so probing decodes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from kitcore.errors import KitError
from kitcore.profiles import check_seed

log = logging.getLogger(__name__)

PHASES = ("train", "val")
MIN_CLASSES = 4  # the random split gives each half K // 2 >= 2 classes
SMALL_MAX_SIDE = 64  # NET defaults to small when the probed images' longer side is at most this
FIX_TREE = "IMAGES must be a folder DIR/train/<class>/<image> and DIR/val/<class>/<image>, or DIR/<class>/<image>"


@dataclass(frozen=True, eq=False)
class Tree:
    """A read image tree: classes in label order, (key, label) per phase in list order, each phase's root."""

    root: Path
    layout: str                            # "train/val" or "class folders" (val held out)
    classes: tuple[str, ...]
    entries: dict[str, list[tuple[str, int]]]
    roots: dict[str, Path]                 # phase -> the folder its keys are relative to
    val_fraction: float | None             # the held-out share (None: the tree has its own val/)
    seed: int | None
    sha256: str                            # of the layout, every key, label and file size, and the hold-out

    def items(self, phase: str) -> list[tuple[str, str, int]]:
        """(key, file path, label) of a phase's images, in list order."""
        return [(key, str(self.roots[phase] / key), lab) for key, lab in self.entries[phase]]


def _visible(names) -> list[str]:
    """Names not starting with "." (hidden files, macOS ._ files), sorted."""
    return sorted(n for n in names if not n.startswith("."))


def _class_dirs(folder: Path) -> list[str]:
    """The class subfolders of a phase folder; a file directly in it is ignored with a warning."""
    names = _visible(os.listdir(folder))
    loose = [n for n in names if not (folder / n).is_dir()]
    if loose:
        log.warning("%s: %d files beside the class folders are ignored (e.g. %s)", folder, len(loose), loose[0])
    return [n for n in names if (folder / n).is_dir()]


def _check_key(key: str, where: Path) -> None:
    """Refuse a file name that a `FILE LABEL` list line or an LMDB key cannot carry."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise KitError(f"{where / key!r}: the file name is not valid UTF-8", "rename the file") from None
    if key != key.strip() or "\n" in key or "\r" in key:
        raise KitError(f"{where / key!r}: a name starts or ends with a space or holds a line break",
                       "rename the file (or its class folder)")


def class_files(phase_root: Path, name: str) -> list[str]:
    """Keys `<class>/<file>` of every visible file under a class folder, sorted; KitError when it has none."""
    folder, keys = phase_root / name, []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = _visible(dirnames)
        rel = Path(dirpath).relative_to(phase_root)
        keys += [(rel / f).as_posix() for f in _visible(filenames)]
    if not keys:
        raise KitError(f"class folder {folder} holds no images", "put the class's images in it, or remove the folder")
    keys.sort()
    for key in keys:
        _check_key(key, phase_root)
    return keys


def _check_classes(names: dict[str, list[str]], root: Path) -> tuple[str, ...]:
    """The train classes in label order, after the checks on class names (see the module docstring)."""
    folded: dict[str, str] = {}
    for name in sorted({n for ns in names.values() for n in ns}):
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            raise KitError(f"class folders {other!r} and {name!r} under {root} differ only in case",
                           "rename or merge one of them: class names must differ after case-folding")
    classes = tuple(names["train"])
    extra = sorted(set(names.get("val", ())) - set(classes))
    if extra:
        raise KitError(f"class {extra[0]!r} is in {root / 'val'} but not in {root / 'train'}",
                       f"add {root / 'train' / extra[0]} with its train images, or remove {root / 'val' / extra[0]}")
    if len(classes) < MIN_CLASSES:
        raise KitError(f"{root} has {len(classes)} class folders ({', '.join(classes) or 'none'}); the kit needs "
                       f"at least {MIN_CLASSES}", f"add class folders: {FIX_TREE}")
    return classes


def held_out(keys: list[str], name: str, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, val) keys of one class of a tree without val/: the seeded held-out share, both in sorted order."""
    n = len(keys)
    n_val = min(n - 1, int(fraction * n + 0.5))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    val = set(rng.permutation(n)[:n_val].tolist())
    return [k for i, k in enumerate(keys) if i not in val], [k for i, k in enumerate(keys) if i in val]


def read_tree(images: Path, val_fraction: float = 0.2, seed: int = 0) -> Tree:
    """Read and check an image tree (see the module docstring); no image is decoded."""
    root = Path(images).expanduser().resolve()
    if not root.is_dir():
        raise KitError(f"image folder {images} does not exist" if not root.exists()
                       else f"IMAGES {images} is not a folder", FIX_TREE)
    have = {p: (root / p).is_dir() for p in PHASES}
    if have["train"] != have["val"]:
        there, missing = ("train", "val") if have["train"] else ("val", "train")
        raise KitError(f"{root} has {there}/ but no {missing}/",
                       f"add {root / missing}/<class>/..., or move the class folders up to {root}/<class>/ "
                       "to hold out a share of each class as val")
    if have["train"]:
        names = {p: _class_dirs(root / p) for p in PHASES}
        classes = _check_classes(names, root)
        roots = {p: root / p for p in PHASES}
        per_phase = {p: {c: class_files(roots[p], c) for c in names[p]} for p in PHASES}
        no_val = [c for c in classes if c not in per_phase["val"]]
        if no_val:
            log.warning("%d classes have no val images (e.g. %s): their val accuracy is not measured",
                        len(no_val), no_val[0])
        layout, fraction, seed = "train/val", None, None
    else:
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
                or not 0 < val_fraction < 1:
            raise KitError(f"invalid val fraction {val_fraction!r}",
                           "pass a share 0 < f < 1 of each class to hold out as val, e.g. --val-fraction 0.2")
        seed = check_seed(seed)
        classes = _check_classes({"train": _class_dirs(root)}, root)
        roots = {p: root for p in PHASES}
        split = {c: held_out(class_files(root, c), c, float(val_fraction), seed) for c in classes}
        per_phase = {p: {c: split[c][i] for c in classes} for i, p in enumerate(PHASES)}
        layout, fraction = "class folders", float(val_fraction)
    label = {c: i for i, c in enumerate(classes)}
    entries = {p: [(k, label[c]) for c in classes for k in per_phase[p].get(c, ())] for p in PHASES}
    if not entries["val"]:
        held = f" (a val fraction of {fraction} rounds to 0 images in every class)" if fraction else ""
        raise KitError(f"{root} gives no val images{held}", "give the classes more images, a larger "
                       "--val-fraction, or val/<class>/ folders beside train/<class>/")
    listing = {p: [(k, lab, (roots[p] / k).stat().st_size) for k, lab in entries[p]] for p in PHASES}
    digest = hashlib.sha256(json.dumps([layout, classes, listing, fraction, seed]).encode()).hexdigest()
    log.info("read %s (%s): %d classes, %d train and %d val images", root, layout, len(classes),
             len(entries["train"]), len(entries["val"]))
    return Tree(root=root, layout=layout, classes=classes, entries=entries, roots=roots, val_fraction=fraction,
                seed=seed, sha256=digest)


def probe_image(path: str) -> tuple[int, int, bool] | None:
    """(height, width, grey) of an image as OpenCV decodes it, or None if it cannot."""
    img = cv2.imread(str(path), cv2.IMREAD_ANYCOLOR)
    if img is None:
        return None
    grey = img.ndim == 2 or img.shape[2] == 1 or (
        np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]))
    return int(img.shape[0]), int(img.shape[1]), bool(grey)


def first_decodable(tree: Tree) -> dict[str, tuple[int, int, bool]]:
    """{class: probe} of the first train image of each class (in list order) that OpenCV decodes."""
    out = {}
    for key, path, label in tree.items("train"):
        name = tree.classes[label]
        if name not in out:
            found = probe_image(path)
            if found is not None:
                out[name] = found
                log.debug("%s: first decodable image %s is %dx%d", name, key, found[0], found[1])
    return out


def default_net(samples: dict[str, tuple[int, int, bool]]) -> str:
    """small when the longer side of every sampled image is at most SMALL_MAX_SIDE, else caffenet."""
    small = bool(samples) and all(max(h, w) <= SMALL_MAX_SIDE for h, w, _g in samples.values())
    return "small" if small else "caffenet"


def probe_all(tree: Tree, jobs: int = 1) -> tuple[Counter, int, int]:
    """(Counter of (height, width), grey images, decodable images) over every image of both phases."""
    paths = [path for phase in PHASES for _k, path, _lab in tree.items(phase)]
    sizes: Counter = Counter()
    grey = good = 0
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    try:
        results = pool.imap(probe_image, paths, chunksize=64) if pool else map(probe_image, paths)
        for found in tqdm(results, total=len(paths), desc="probe sizes", unit="img", file=sys.stderr,
                          mininterval=1.0, leave=False):
            if found is not None:
                sizes[found[:2]] += 1
                grey += found[2]
                good += 1
    finally:
        if pool:
            pool.terminate()
    return sizes, grey, good


def most_common_size(sizes: Counter) -> tuple[int, int]:
    """The most common (height, width); a tie goes to the larger area, then the greater height."""
    if not sizes:
        raise KitError("none of the images could be decoded", f"check IMAGES: {FIX_TREE}")
    return max(sizes, key=lambda hw: (sizes[hw], hw[0] * hw[1], hw[0]))
