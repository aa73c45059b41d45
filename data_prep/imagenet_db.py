"""ImageNet LMDBs: decode every image once into a whole-set store, then derive each split's halves from it.

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
rewriting only the Datum's label: no image is decoded twice.

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

log = logging.getLogger(__name__)

SIZE = 256  # convert_imageset --resize_height/--resize_width of the paper
PHASES = ("train", "val")
WHOLE_FORMAT = 1
MAX_KEY = 511  # LMDB's default maximum key size
ENCODED_BYTES = 3 * SIZE * SIZE // 4  # generous per-image size of a 256x256 JPEG, for the LMDB map size


def record_bytes(encoded: bool) -> int:
    """Estimated bytes per record of a whole-set or half LMDB (the map grows on demand beyond it)."""
    return (ENCODED_BYTES if encoded else 3 * SIZE * SIZE) + 512


def encoding_of(path: str) -> str:
    """The format convert_imageset --encoded re-encodes a resized image in: the file's extension,
    lower case (jpeg/jpg -> JPEG); JPEG when OpenCV cannot write that extension."""
    ext = Path(path).suffix[1:].lower()
    return ext if ext and cv2.haveImageWriter(f"x.{ext}") else "jpg"


def decode_resize(path: Path, size: int = SIZE) -> np.ndarray | None:
    """Decode an image file to BGR and resize it to size x size (INTER_LINEAR); None if OpenCV cannot."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def datum_bytes(img_hwc: np.ndarray, label: int, encoding: str | None = None) -> bytes:
    """Serialise an (H, W, C) uint8 BGR image as Caffe's raw Datum (C, H, W order), as CVMatToDatum does;
    with `encoding` ('jpg', 'png', ...) as EncodeCVMatToDatum does: the image encoded, encoded=True."""
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


def _decode_item(item: tuple[str, str, int], encoded: bool = False) -> tuple[str, bytes | None, str | None]:
    """(list path, file path, label) -> (list path, Datum bytes or None, reason if bad)."""
    key, file_path, label = item
    if not Path(file_path).is_file():
        return key, None, "missing"
    img = decode_resize(Path(file_path))
    if img is None:
        return key, None, "undecodable"
    return key, datum_bytes(img, label, encoding_of(file_path) if encoded else None), None


def whole_dir(work: Path) -> Path:
    """Return the folder of the whole-set store: <work>/imagenet/dataset."""
    return Path(work) / "imagenet" / "dataset"


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
    wdir, images = whole_dir(work), _check_images(images)
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
        from kitcore.caffe_env import require_opencv  # pylint: disable=import-outside-toplevel
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
        remove_path(wdir / f"{phase}_lmdb")
        entries = lists.entries[phase]
        items = [(p, str(images / phase / p), lab) for p, lab in entries]
        too_long = [p for p, _lab in entries if len(p.encode()) > MAX_KEY]
        if too_long:
            raise KitError(f"image path {too_long[0]!r} is longer than LMDB's {MAX_KEY}-byte key limit",
                           "shorten the image paths in the list files")
        phase_counts = np.zeros(lists.num_classes, np.int64)

        def records(items=items, phase=phase, phase_counts=phase_counts):
            """Decode items (in a pool when jobs > 1) and yield (key, Datum) of the good ones."""
            pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
            decode = partial(_decode_item, encoded=encoded)
            try:
                results = pool.imap(decode, items, chunksize=32) if pool else map(decode, items)
                for (key, value, reason), (_p, _f, label) in zip(results, items):
                    if value is None:
                        bad.append((phase, key, reason))
                        continue
                    phase_counts[label] += 1
                    yield key.encode(), value
            finally:
                if pool:
                    pool.terminate()

        map_size = int(1.1 * len(items) * record_bytes(encoded))
        written = write_records_lmdb(wdir / f"{phase}_lmdb", records(), len(items), f"decode {phase}", map_size)
        if not phase_counts.any():
            raise KitError(f"none of the {len(items)} {phase} images under {images / phase} could be decoded",
                           f"check IMAGES: see {wdir / 'bad_images.txt'}")
        counts[phase] = {lists.synsets[i]: int(n) for i, n in enumerate(phase_counts)}
        info[phase] = {"listed": len(items), "records": int(phase_counts.sum()),
                       "content_sha256": written["content_sha256"]}
    write_text(wdir / "bad_images.txt", "".join(f"{ph}/{p} {why}\n" for ph, p, why in bad))
    if bad:
        log.warning("%d listed images are missing or undecodable and left out: see %s", len(bad),
                    wdir / "bad_images.txt")
    write_json(wdir / "dataset.json", {
        "format": WHOLE_FORMAT, "size": SIZE, "encoded": bool(encoded), "images": str(images), "lists": str(lists.folder.resolve()),
        "lists_sha256": lists.sha256, "decoded": sum(v["listed"] for v in info.values()) - sum(why == "missing" for *_x, why in bad),
        "lmdbs": info,
        "bad_images": {"count": len(bad), "file": "bad_images.txt",
                       "sha256": sha256(wdir / "bad_images.txt")}, "class_counts": counts})
    return wdir


def bad_paths(wdir: Path) -> dict[str, set[str]]:
    """Return {phase: list paths} of the whole set's bad images."""
    out: dict[str, set[str]] = {p: set() for p in PHASES}
    for line in (Path(wdir) / "bad_images.txt").read_text().splitlines():
        phase, _, rest = line.partition("/")
        out[phase].add(rest.rsplit(" ", 1)[0])
    return out


def derive_lmdb(whole_lmdb: Path, entries: list[tuple[str, int]], out: Path, shuffle_seed: int,
                bad: set[str], encoded: bool = False) -> dict:
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
        map_size = int(1.1 * len(kept) * record_bytes(encoded))
        written = write_records_lmdb(out, records(), len(kept), out.name, map_size)
    finally:
        env.close()
    return {**label_stats(labels, tuple(shape) if shape else (None, None, None)), **written,
            "shuffle_seed": int(shuffle_seed), "skipped_bad": len(skipped), "skipped_paths": skipped}
