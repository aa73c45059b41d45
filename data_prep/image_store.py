"""The whole-set image store: decode every listed image once into LMDBs, then derive each split's halves from it.

ImageNet's store comes from Caffe's lists (`image_lists`); a user's folder
dataset's from its class folders (`folder`): both are read the same way.

Pixels follow Caffe's `convert_imageset --resize_height=256 --resize_width=256`
(`ReadImageToDatum`): `cv2.imread(path, IMREAD_COLOR)` (BGR), `cv2.resize` to
256x256 with `INTER_LINEAR`, stored as an unencoded uint8 Datum in channel,
row, column order. OpenCV comes from PyPI (`opencv-python-headless`), the
same algorithm Caffe's OpenCV build uses.

With `encoded=True` (ENCODED=1, `--encoded`) each Datum holds the resized
image re-encoded, as `convert_imageset --resize_height=256 --resize_width=256
--encoded` stores it: `cv2.imencode('.' + the file's extension, resized)` (JPEG
for ILSVRC's `.JPEG` files; convert_imageset guesses the format from the name
the same way), channels/height/width of the resized image, `encoded: true`.
About an eighth of the disk (measured: 7.8x less on the synthetic set);
decoding them (compute_image_mean, the Data layer)
needs Caffe built with OpenCV (`make caffe CAFFE_OPENCV=1`).

Whole set, `<work>/imagenet/dataset/`: `train_lmdb` and `val_lmdb` keyed by
the image's path as in the list file (value: the Datum with its original
label), `bad_images.txt` (`PHASE/PATH REASON` per image that is missing or
that OpenCV cannot decode), and `dataset.json` (written last: counts per
class, bad images, the sha256 of the lists it was built from). It is built
once; every split's halves are derived from it by copying records and
rewriting only the Datum's label: no image is decoded twice. A user's
class-per-folder dataset (`data_prep.folder`) is stored by the same code
(`decode_phase`, `finish_whole_set`) in `<work>/<name>/dataset/`, at its own
size (height, width) and channels (1: `IMREAD_GRAYSCALE`; 3: `IMREAD_COLOR`).

A half's LMDB holds its list file's images in a seeded shuffled order under
keys `%08d_<path>` (convert_imageset's key format), so Caffe's Data layer,
which reads in key order, sees the classes mixed. Images listed as bad are
left out, and counted and listed in the split's manifest entry of that LMDB.
That entry also holds what `data_prep.verify` checks: `records`,
`data_mdb_bytes`, `sample_sha256` and `content_sha256` (of every record in
key order; see `lmdb_io.write_records_lmdb`).
"""
from __future__ import annotations

import json
import logging
import multiprocessing
from functools import partial
from pathlib import Path

import cv2
import lmdb
import numpy as np

from data_prep.lmdb_io import caffe_pb2, is_complete_lmdb, label_stats, write_records_lmdb
from kitcore.atomic import remove_path, sha256, write_json, write_text
from kitcore.errors import KitError
from kitcore.layout import dataset_dir

log = logging.getLogger(__name__)

SIZE = 256  # convert_imageset --resize_height/--resize_width of the paper
PHASES = ("train", "val")
WHOLE_FORMAT = 1
MAX_KEY = 511  # LMDB's default maximum key size
COLOUR = (3, SIZE, SIZE)  # ImageNet's stored (channels, height, width)


def record_bytes(encoded: bool, chw: tuple[int, int, int] = COLOUR) -> int:
    """Estimated bytes per record of a whole-set or half LMDB of `chw` images (the map grows on demand beyond
    it); encoded: a generous quarter of the raw size (a JPEG)."""
    c, h, w = chw
    return (c * h * w // 4 if encoded else c * h * w) + 512


def encoding_of(path: str) -> str:
    """The format convert_imageset --encoded re-encodes a resized image in: the file's extension,
    lower case (jpeg/jpg -> JPEG); JPEG when OpenCV cannot write that extension."""
    ext = Path(path).suffix[1:].lower()
    return ext if ext and cv2.haveImageWriter(f"x.{ext}") else "jpg"


def height_width(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a size: an int n is n x n (convert_imageset's --resize_height = --resize_width)."""
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def decode_resize(path: Path, size: int | tuple[int, int] = SIZE, channels: int = 3) -> np.ndarray | None:
    """Decode an image file (3 channels: BGR, IMREAD_COLOR; 1: IMREAD_GRAYSCALE) and resize it to `size`
    (n: n x n, or (height, width); INTER_LINEAR) as an (H, W, C) array; None if OpenCV cannot."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    h, w = height_width(size)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, channels)


def datum_bytes(img_hwc: np.ndarray, label: int, encoding: str | None = None) -> bytes:
    """Serialise an (H, W, C) uint8 image (BGR or grey) as Caffe's raw Datum (C, H, W order), as CVMatToDatum
    does; with `encoding` ('jpg', 'png', ...) as EncodeCVMatToDatum does: the image encoded, encoded=True."""
    img_hwc = img_hwc.reshape(*img_hwc.shape[:2], -1)
    h, w, c = img_hwc.shape
    if encoding:
        ok, buf = cv2.imencode(f".{encoding}", img_hwc)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode an image as {encoding}")
        datum = caffe_pb2().Datum(channels=c, height=h, width=w, data=buf.tobytes(), encoded=True,
                                  label=int(label))
        return datum.SerializeToString()
    data = np.ascontiguousarray(img_hwc.transpose(2, 0, 1)).tobytes()
    datum = caffe_pb2().Datum(channels=c, height=h, width=w, data=data, encoded=False, label=int(label))
    return datum.SerializeToString()


def _decode_item(item: tuple[str, str, int], encoded: bool = False, size: int | tuple[int, int] = SIZE,
                 channels: int = 3) -> tuple[str, bytes | None, str | None]:
    """(key, file path, label) -> (key, Datum bytes or None, reason if bad)."""
    key, file_path, label = item
    if not Path(file_path).is_file():
        return key, None, "missing"
    # colour (ImageNet) keeps decode_resize's two-argument call, as before channels were a parameter
    img = decode_resize(Path(file_path), size) if channels == 3 else decode_resize(Path(file_path), size, channels)
    if img is None:
        return key, None, "undecodable"
    return key, datum_bytes(img, label, encoding_of(file_path) if encoded else None), None


def _check_images(images: Path) -> Path:
    """Return the resolved ILSVRC image folder, or raise KitError if it lacks train/ and val/."""
    images = Path(images).resolve()
    for phase in PHASES:
        if not (images / phase).is_dir():
            raise KitError(f"image folder {images} has no {phase}/ subfolder",
                           "IMAGES must be an ILSVRC2012 folder: train/<wnid>/<file>.JPEG and val/<file>.JPEG")
    return images


def read_whole_meta(wdir: Path) -> dict | None:
    """Return dataset.json of a finished whole-set store, or None."""
    path = Path(wdir) / "dataset.json"
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    if not all(is_complete_lmdb(Path(wdir) / f"{p}_lmdb") for p in PHASES):
        return None
    return meta


def _flag(encoded: bool) -> str:
    return f"ENCODED={int(encoded)}" + (" (--encoded)" if encoded else "")


def build_whole_set(work: Path, lists, images: Path, jobs: int = 1, force: bool = False,
                    encoded: bool = False, reencode: bool = False) -> Path:
    """Decode every listed image once into <work>/imagenet/dataset (no-op when built from the same lists).

    `encoded`: store encoded Datums (see the module doc). A store built with the
    other setting is an error, or with `reencode` (the split command's --force)
    rebuilt with this one.
    """
    wdir, images = dataset_dir(work, "imagenet"), _check_images(images)
    meta = read_whole_meta(wdir)
    if meta is not None and not force and bool(meta.get("encoded", False)) != encoded:
        if not reencode:
            raise KitError(f"{wdir} was built with {_flag(meta.get('encoded', False))}, this command asks for "
                           f"{_flag(encoded)}",
                           f"pass {_flag(meta.get('encoded', False))} as when it was built, or FORCE=1 (--force) "
                           f"or delete {wdir} to decode every image again")
        log.warning("%s was built with %s: decoding every image again for %s", wdir,
                    _flag(meta.get("encoded", False)), _flag(encoded))
        force = True
    if encoded:
        from kitcore.caffe_env import require_opencv
        require_opencv("encoded Datums (ENCODED=1) for compute_image_mean and Caffe's Data layer")
    if meta is not None and not force:
        if meta["lists_sha256"] != lists.sha256 or meta["size"] != SIZE:
            raise KitError(f"{wdir} was built from other lists than {lists.folder}",
                           f"pass the same LISTS, or delete {wdir} to decode every image again from the new lists")
        if meta["images"] != str(images):
            log.warning("%s was built from %s; reusing it for %s", wdir, meta["images"], images)
        log.info("whole-set LMDBs in %s already built: no image is decoded again", wdir)
        return wdir
    remove_path(wdir / "dataset.json")
    bad: list[tuple[str, str, str]] = []
    counts, info = {}, {}
    for phase in PHASES:
        items = [(p, str(images / phase / p), lab) for p, lab in lists.entries[phase]]
        info[phase], phase_counts = decode_phase(wdir, phase, items, lists.num_classes, images / phase, bad,
                                                 jobs=jobs, encoded=encoded)
        counts[phase] = {lists.synsets[i]: int(n) for i, n in enumerate(phase_counts)}
    return finish_whole_set(wdir, bad, {
        "size": SIZE, "encoded": bool(encoded), "images": str(images), "lists": str(lists.folder.resolve()),
        "lists_sha256": lists.sha256, "lmdbs": info, "class_counts": counts})


def decode_phase(wdir: Path, phase: str, items: list[tuple[str, str, int]], num_classes: int, where: Path,
                 bad: list[tuple[str, str, str]], jobs: int = 1, encoded: bool = False,
                 size: int | tuple[int, int] = SIZE, channels: int = 3) -> tuple[dict, np.ndarray]:
    """Decode (key, file, label) items once into <wdir>/<phase>_lmdb (in a pool when jobs > 1), appending
    (phase, key, reason) of each bad one to `bad`; return the phase's dataset.json entry and records per label."""
    remove_path(wdir / f"{phase}_lmdb")
    too_long = [key for key, _f, _lab in items if len(key.encode()) > MAX_KEY - 9]
    if too_long:
        raise KitError(f"image path {too_long[0]!r} is longer than {MAX_KEY - 9} bytes (LMDB's {MAX_KEY}-byte key "
                       "limit less a split's 9-byte key prefix)",
                       "shorten the image paths in the list files (or the folder and file names)")
    phase_counts = np.zeros(num_classes, np.int64)

    def records():
        """Decode items and yield (key, Datum) of the good ones."""
        pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
        decode = partial(_decode_item, encoded=encoded, size=size, channels=channels)
        try:
            results = pool.imap(decode, items, chunksize=32) if pool else map(decode, items)
            for (key, value, reason), (_k, _f, label) in zip(results, items):
                if value is None:
                    bad.append((phase, key, reason))
                    continue
                phase_counts[label] += 1
                yield key.encode(), value
        finally:
            if pool:
                pool.terminate()

    map_size = int(1.1 * len(items) * record_bytes(encoded, (channels, *height_width(size))))
    written = write_records_lmdb(wdir / f"{phase}_lmdb", records(), len(items), f"decode {phase}", map_size)
    if not phase_counts.any():
        raise KitError(f"none of the {len(items)} {phase} images under {where} could be decoded",
                       f"check IMAGES: see {wdir / 'bad_images.txt'}")
    return {"listed": len(items), "records": int(phase_counts.sum()),
            "content_sha256": written["content_sha256"]}, phase_counts


def finish_whole_set(wdir: Path, bad: list[tuple[str, str, str]], meta: dict) -> Path:
    """Write bad_images.txt, then dataset.json (`meta` with the format, decoded and bad-image facts): written
    last, so the store is finished from then on; return `wdir`."""
    write_text(wdir / "bad_images.txt", "".join(f"{ph}/{p} {why}\n" for ph, p, why in bad))
    if bad:
        log.warning("%d listed images are missing or undecodable and left out: see %s", len(bad),
                    wdir / "bad_images.txt")
    listed = sum(v["listed"] for v in meta["lmdbs"].values())
    write_json(wdir / "dataset.json", {
        "format": WHOLE_FORMAT, **meta, "decoded": listed - sum(why == "missing" for *_x, why in bad),
        "bad_images": {"count": len(bad), "file": "bad_images.txt", "sha256": sha256(wdir / "bad_images.txt")}})
    return wdir


def bad_paths(wdir: Path) -> dict[str, set[str]]:
    """Return {phase: list paths} of the whole set's bad images."""
    out: dict[str, set[str]] = {p: set() for p in PHASES}
    for line in (Path(wdir) / "bad_images.txt").read_text().splitlines():
        phase, _, rest = line.partition("/")
        out[phase].add(rest.rsplit(" ", 1)[0])
    return out


def derive_lmdb(whole_lmdb: Path, entries: list[tuple[str, int]], out: Path, shuffle_seed: int,
                bad: set[str], encoded: bool = False, chw: tuple[int, int, int] = COLOUR) -> dict:
    """Copy the listed images from a whole-set LMDB into `out`, relabelled and shuffled; return its entry."""
    pb2 = caffe_pb2()
    skipped = [p for p, _lab in entries if p in bad]
    kept = [(p, lab) for p, lab in entries if p not in bad]
    order = np.random.default_rng(shuffle_seed).permutation(len(kept))
    labels = np.asarray([lab for _p, lab in kept], np.int64)
    env = lmdb.open(str(whole_lmdb), readonly=True, lock=False, subdir=True)
    shape = []

    def records():
        """Yield (key, relabelled Datum) in shuffled order."""
        with env.begin(buffers=False) as txn:
            for new_key, src in enumerate(order):
                path, label = kept[src]
                value = txn.get(path.encode())
                if value is None:
                    raise KitError(f"{path} is not in {whole_lmdb} (and not listed as bad)",
                                   f"the whole set was built from other lists: delete {whole_lmdb.parent} and rerun")
                datum = pb2.Datum.FromString(value)
                datum.label = label
                if not shape:
                    shape.extend((datum.channels, datum.height, datum.width))
                yield f"{new_key:08d}_{path}".encode(), datum.SerializeToString()

    try:
        map_size = int(1.1 * len(kept) * record_bytes(encoded, chw))
        written = write_records_lmdb(out, records(), len(kept), out.name, map_size)
    finally:
        env.close()
    return {**label_stats(labels, tuple(shape) if shape else (None, None, None)), **written,
            "shuffle_seed": int(shuffle_seed), "skipped_bad": len(skipped), "skipped_paths": skipped}
