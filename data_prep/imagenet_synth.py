"""A tiny synthetic ILSVRC2012-shaped folder of JPEGs and its LISTS, for tests and dry runs.

`make_synthetic_ilsvrc(root)` writes `root/images/train/<wnid>/<wnid>_<j>.JPEG`,
`root/images/val/ILSVRC2012_val_<n>.JPEG` and `root/lists/{synsets,train,val}.txt`
in Caffe's auxiliary format. Each class is a distinct colour pattern with noise
(learnable), sizes vary (some above 256 so resizing shrinks, some below), the
first val image is a one-channel JPEG, and train lines are in a seeded mixed
order (so "the first k of each class in list order" is not "the first k
lines"). With `bad=True` one listed train file is corrupt and one is missing.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from kitcore.atomic import write_bytes, write_text

log = logging.getLogger(__name__)

# real ILSVRC2012 ids: tench, goldfish, Chihuahua (natural); airliner, laptop, pizza (man-made)
DEFAULT_WNIDS = ("n01440764", "n01443537", "n02085620", "n02690373", "n03642806", "n07873807")
CORRUPT_BYTES = b"this is not a JPEG file\n"


def _image(rng: np.random.Generator, label: int, num_classes: int) -> np.ndarray:
    """One (H, W, 3) uint8 BGR picture of class `label`: a hue-coded gradient with noise."""
    h, w = int(rng.integers(48, 320)), int(rng.integers(48, 320))
    hue = np.uint8(180 * label // max(num_classes, 1))
    yy, xx = np.mgrid[0:h, 0:w]
    hsv = np.empty((h, w, 3), np.uint8)
    hsv[..., 0] = hue
    hsv[..., 1] = (96 + 159 * xx / max(w - 1, 1)).astype(np.uint8)
    hsv[..., 2] = (64 + 191 * yy / max(h - 1, 1)).astype(np.uint8)
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.int16)
    img += rng.integers(-20, 21, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_jpeg(path: Path, img: np.ndarray) -> None:
    """Encode `img` as JPEG and write it atomically."""
    ok, buf = cv2.imencode(".jpg", img)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    write_bytes(path, buf.tobytes())


def make_synthetic_ilsvrc(root: Path, wnids: Sequence[str] = DEFAULT_WNIDS, train_per_class: int = 4,
                          val_per_class: int = 2, seed: int = 0, bad: bool = False) -> tuple[Path, Path]:
    """Write a tiny ILSVRC-layout image folder and its LISTS under `root`; return (images_dir, lists_dir)."""
    root = Path(root)
    images, lists = root / "images", root / "lists"
    rng = np.random.default_rng(seed)
    k = len(wnids)
    train = [(f"{w}/{w}_{j}.JPEG", c) for c, w in enumerate(wnids) for j in range(train_per_class)]
    train = [train[i] for i in rng.permutation(len(train))]
    for path, label in train:
        _write_jpeg(images / "train" / path, _image(rng, label, k))
    val_labels = [c for c in range(k) for _ in range(val_per_class)]
    val_labels = [val_labels[i] for i in rng.permutation(len(val_labels))]
    val = [(f"ILSVRC2012_val_{n:08d}.JPEG", c) for n, c in enumerate(val_labels, 1)]
    for n, (path, label) in enumerate(val):
        img = _image(rng, label, k)
        _write_jpeg(images / "val" / path, cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if n == 0 else img)
    if bad:
        corrupt = (f"{wnids[0]}/{wnids[0]}_corrupt.JPEG", 0)
        write_bytes(images / "train" / corrupt[0], CORRUPT_BYTES)
        train.insert(1, corrupt)
        train.insert(3, (f"{wnids[-1]}/{wnids[-1]}_missing.JPEG", k - 1))
    write_text(lists / "synsets.txt", "".join(f"{w}\n" for w in wnids))
    write_text(lists / "train.txt", "".join(f"{p} {c}\n" for p, c in train))
    write_text(lists / "val.txt", "".join(f"{p} {c}\n" for p, c in val))
    log.info("wrote a synthetic ILSVRC folder: %d classes, %d train, %d val images in %s", k, len(train),
             len(val), images)
    return images, lists
