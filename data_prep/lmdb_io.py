"""LMDBs of raw Caffe Datums, and their mean images via the real `compute_image_mean`.

`write_datum_lmdb` stores unencoded `pb2().Datum`s (uint8, C x H x W) under
keys `00000000`, `00000001`, ... in a seeded shuffled order, so Caffe's Data
layer (which reads in key order) sees the classes mixed. It writes into
`<path>.tmp-<pid>` and renames it into place only when complete.

Every LMDB written here is described for `data_prep.verify` by its manifest
fields `records` (the record count), `data_mdb_bytes` (data.mdb's size when
written) and `sample_sha256` ({key: sha256 of its value} of `SAMPLE_RECORDS`
records spread evenly over the write order, first and last included), besides
a hash of the whole content (`sha256` of data.mdb, or `content_sha256` of the
records, see `add_record`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
from google.protobuf.message import DecodeError
from tqdm import tqdm

from kitcore import diskspace
from kitcore.atomic import clean_stale_tmp, remove_path, replacing, sha256, tmp_path
from kitcore.errors import KitError

log = logging.getLogger(__name__)

BATCH = 1000  # Datums per LMDB write transaction
SAMPLE_RECORDS = 32  # records per LMDB whose value hashes the manifest keeps for the fast check


def sample_positions(n: int, k: int = SAMPLE_RECORDS) -> list[int]:
    """Positions (in write order) of the sampled records of an LMDB of n: k spread evenly, first and last included."""
    if n <= k:
        return list(range(n))
    return sorted({i * (n - 1) // (k - 1) for i in range(k)})


def value_sha256(value: bytes) -> str:
    """The sha256 (hex) of one record's value, as `sample_sha256` stores it."""
    return hashlib.sha256(value).hexdigest()


def add_record(digest, key: bytes, value: bytes) -> None:
    """Feed one record into a `content_sha256` digest (key and value, each length-prefixed; buffers allowed)."""
    digest.update(len(key).to_bytes(4, "little"))
    digest.update(key)
    digest.update(len(value).to_bytes(8, "little"))
    digest.update(value)


def caffe_pb2():
    """Return pycaffe's `caffe_pb2` (imported on first use), or raise KitError."""
    from kitcore.caffe_env import pb2
    return pb2()


def caffe_tool(name: str) -> str:
    """Return the path of Caffe tool `name` (see kitcore.caffe_env.tool)."""
    from kitcore.caffe_env import tool
    return tool(name)


def is_complete_lmdb(path: Path) -> bool:
    """Whether `path` is a finished LMDB folder (only ever created by a rename)."""
    return (Path(path) / "data.mdb").is_file()


def _check_inputs(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Validate images (N,C,H,W) uint8 and integer labels; return labels as int64."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) uint8, got {images.dtype} {images.shape}")
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {images.shape[0]} integers, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= 2**31):
        raise ValueError("labels must be in [0, 2**31)")
    return labels.astype(np.int64)


def _put_all(env: lmdb.Environment, images: np.ndarray, labels: np.ndarray, order: np.ndarray,
             desc: str) -> dict[str, str]:
    """Put the Datums in `order` under ascending keys (doubling the map size whenever it is full);
    return the `sample_sha256` of the sampled keys."""
    pb2 = caffe_pb2()
    n, c, h, w = images.shape
    sampled, sample = set(sample_positions(n)), {}
    with tqdm(total=n, desc=desc, unit="img", file=sys.stderr, mininterval=1.0, leave=False) as bar:
        for start in range(0, n, BATCH):
            stop = min(start + BATCH, n)
            while True:
                try:
                    with env.begin(write=True) as txn:
                        for key in range(start, stop):
                            src = int(order[key])
                            datum = pb2.Datum(channels=c, height=h, width=w, label=int(labels[src]),
                                              data=images[src].tobytes(), encoded=False)
                            value = datum.SerializeToString()
                            txn.put(f"{key:08d}".encode(), value, append=True)
                            if key in sampled:
                                sample[f"{key:08d}"] = value_sha256(value)
                    break
                except lmdb.MapFullError:
                    new_size = env.info()["map_size"] * 2
                    log.debug("LMDB map full; growing it to %d bytes", new_size)
                    env.set_mapsize(new_size)
            bar.update(stop - start)
    return sample


def write_datum_lmdb(path: Path, images: np.ndarray, labels: np.ndarray, shuffle_seed: int,
                     force: bool = False) -> dict:
    """Write images (N,C,H,W uint8) and labels as a shuffled raw-Datum LMDB; return its manifest entry."""
    path = Path(path)
    labels = _check_inputs(images, labels)
    clean_stale_tmp(path)
    if path.exists() and not force:
        raise KitError(f"LMDB {path} already exists", "pass force=True (CLI: --force) to rebuild it, or delete it")
    n, c, h, w = images.shape
    order = np.random.default_rng(shuffle_seed).permutation(n)
    tmp = tmp_path(path)
    need = n * (c * h * w + 64)  # about a Datum each
    map_size = max(1 << 20, 2 * need)  # grown on demand by _put_all
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with diskspace.writing(path, need, also=(lmdb.Error,), partial=tmp, refuse_low=True):
            env = lmdb.open(str(tmp), map_size=map_size, subdir=True, create=True, sync=True)
            try:
                sample = _put_all(env, np.ascontiguousarray(images), labels, order, path.name)
                env.sync(True)
            finally:
                env.close()
        if path.exists():  # force: swap the old one out, then drop it
            old = path.with_name(f"{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            remove_path(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            remove_path(tmp)
    entry = lmdb_entry(path, labels, (c, h, w), sample)
    entry["shuffle_seed"] = int(shuffle_seed)
    log.debug("wrote %s: %d Datums %dx%dx%d, labels %s..%s", path, n, c, h, w, entry["label_min"], entry["label_max"])
    return entry


def label_stats(labels: np.ndarray, chw) -> dict:
    """Return the manifest fields of an LMDB's contents: record count, counts per label, label range, shape."""
    counts = np.bincount(labels) if labels.size else np.zeros(0, np.int64)
    return {
        "records": int(labels.size),
        "label_counts": {str(i): int(k) for i, k in enumerate(counts) if k},
        "label_min": int(labels.min()) if labels.size else None,
        "label_max": int(labels.max()) if labels.size else None,
        "channels": chw[0], "height": chw[1], "width": chw[2],
    }


def lmdb_entry(path: Path, labels: np.ndarray, chw: tuple[int, int, int], sample: dict[str, str]) -> dict:
    """Return the manifest entry of a written LMDB: label_stats, the sha256 and size of data.mdb, the sample."""
    mdb = Path(path) / "data.mdb"
    return {**label_stats(labels, tuple(int(x) for x in chw)), "sha256": sha256(mdb),
            "data_mdb_bytes": mdb.stat().st_size, "sample_sha256": sample}


def read_datum_lmdb(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a raw-Datum LMDB in key order: (N,C,H,W) uint8 images and int64 labels."""
    pb2 = caffe_pb2()
    if not is_complete_lmdb(path):
        raise KitError(f"no LMDB at {path}", "prepare the data first: make split-random")
    images, labels = [], []
    env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            for _key, value in txn.cursor():
                d = pb2.Datum.FromString(value)
                if d.encoded:
                    raise ValueError(f"{path}: encoded Datums are not supported here")
                images.append(np.frombuffer(d.data, np.uint8).reshape(d.channels, d.height, d.width))
                labels.append(d.label)
    finally:
        env.close()
    if not images:
        return np.zeros((0, 0, 0, 0), np.uint8), np.zeros(0, np.int64)
    return np.stack(images), np.asarray(labels, np.int64)


def compute_mean(lmdb_path: Path, out_path: Path) -> Path:
    """Run the real `compute_image_mean -backend lmdb` on an LMDB, writing `out_path` atomically."""
    out_path = Path(out_path)
    tool = caffe_tool("compute_image_mean")
    clean_stale_tmp(out_path)
    env = {**os.environ, "GLOG_logtostderr": "1"}
    with replacing(out_path) as tmp:
        cmd = [tool, "-backend", "lmdb", str(lmdb_path), str(tmp)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        try:  # whole: it parses to its shape (a full disk can cut it short even at exit 0)
            whole = proc.returncode == 0 and read_mean(tmp).size > 0
        except (OSError, DecodeError, ValueError):
            whole = False
        if not whole:
            if diskspace.low_space(out_path):  # its CHECK(SerializeToOstream) failed, or the mean was cut short
                tmp.unlink(missing_ok=True)  # first: the message gives the room a rerun has
                raise diskspace.disk_full(out_path, f"compute_image_mean exit {proc.returncode}")
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            if "requires OpenCV" in proc.stderr:
                raise KitError(f"{tool} refuses to run without OpenCV (an unpatched Caffe build)",
                               "rebuild with the kit's patches: make caffe "
                               "(or point CAFFE_ROOT at a build with OpenCV)")
            raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{tail}")
    for line in proc.stderr.splitlines():  # Caffe's own lines: on the terminal with --verbose
        log.debug("compute_image_mean: %s", line)
    log.debug("wrote mean %s (compute_image_mean on %s)", out_path, lmdb_path)
    return out_path


def read_mean(path: Path) -> np.ndarray:
    """Read a mean .binaryproto as a (C,H,W) float32 array."""
    blob = caffe_pb2().BlobProto.FromString(Path(path).read_bytes())
    if blob.HasField("shape"):
        shape = tuple(blob.shape.dim)[-3:]
    else:
        shape = (blob.channels, blob.height, blob.width)
    return np.asarray(blob.data, np.float32).reshape(shape)


def write_records_lmdb(path: Path, records, total: int, desc: str, map_size: int = 1 << 30,
                       batch: int = 256) -> dict:
    """Stream (key, value) byte pairs into a new LMDB at `path` (tmp folder + rename); return its check fields.

    Returns `content_sha256` (every key and value in the order given, see
    `add_record`: computed while writing, without re-reading a large data.mdb;
    it is in key order, the order a full check reads, when the keys ascend),
    `data_mdb_bytes` and `sample_sha256` (positions from `total`, the number
    of records expected, plus the last record). `path` must not exist
    (callers remove or move an old one first).
    """
    path = Path(path)
    clean_stale_tmp(path)
    if path.exists():
        raise KitError(f"LMDB {path} already exists", "delete it, or pass force (CLI: --force) to rebuild it")
    tmp = tmp_path(path)
    digest = hashlib.sha256()
    sampled, sample, last = set(sample_positions(total)), {}, None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with diskspace.writing(path, map_size, also=(lmdb.Error,), partial=tmp, refuse_low=True):
            env = lmdb.open(str(tmp), map_size=max(1 << 20, map_size), subdir=True, create=True, sync=True)
            try:
                with tqdm(total=total, desc=desc, unit="img", file=sys.stderr, mininterval=1.0, leave=False) as bar:
                    chunk: list[tuple[bytes, bytes]] = []
                    for position, item in enumerate(records):
                        if position in sampled:
                            sample[item[0].decode()] = value_sha256(item[1])
                        last = item
                        chunk.append(item)
                        if len(chunk) >= batch:
                            _put_chunk(env, chunk, digest)
                            bar.update(len(chunk))
                            chunk = []
                    _put_chunk(env, chunk, digest)
                    bar.update(len(chunk))
                env.sync(True)
            finally:
                env.close()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            remove_path(tmp)
    if last is not None:
        sample[last[0].decode()] = value_sha256(last[1])
    return {"content_sha256": digest.hexdigest(), "data_mdb_bytes": (path / "data.mdb").stat().st_size,
            "sample_sha256": sample}


def _put_chunk(env: lmdb.Environment, chunk: list[tuple[bytes, bytes]], digest) -> None:
    """Put one transaction's records, doubling the map size whenever it is full."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in chunk:
                    if not txn.put(key, value, overwrite=False):
                        raise KitError(f"key {key[:80]!r} occurs twice", "list every image once")
            break
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)
            log.debug("LMDB map full; grew it to %d bytes", env.info()["map_size"])
    for key, value in chunk:
        add_record(digest, key, value)
