"""Tests of data_prep.lmdb_io: Datum LMDBs and means, with real lmdb, real caffe_pb2 Datums, Caffe's own
Data layer and the real `compute_image_mean` binary; nothing mocked.
"""
from __future__ import annotations

import hashlib
import os

import lmdb
import numpy as np
import pytest
from test_data_prep import dead_pid

from data_prep.lmdb_io import (
    caffe_pb2,
    compute_mean,
    is_complete_lmdb,
    read_datum_lmdb,
    read_mean,
    write_datum_lmdb,
    write_records_lmdb,
)
from kitcore.errors import KitError

from conftest import fill


def _images(n=37, c=3, h=5, w=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, c, h, w), dtype=np.uint8), rng.integers(0, 6, n)


def test_lmdb_round_trip_real_datums(tmp_path):
    x, y = _images()
    path = tmp_path / "db_lmdb"
    entry = write_datum_lmdb(path, x, y, shuffle_seed=7)
    order = np.random.default_rng(7).permutation(len(y))
    rx, ry = read_datum_lmdb(path)
    assert np.array_equal(rx, x[order]) and np.array_equal(ry, y[order])
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        keys = [k for k, _ in txn.cursor()]
        first = caffe_pb2().Datum.FromString(txn.get(b"00000000"))
    env.close()
    assert keys == [f"{i:08d}".encode() for i in range(37)]
    assert not first.encoded and (first.channels, first.height, first.width) == (3, 5, 4)
    assert first.data == x[order[0]].tobytes() and first.label == y[order[0]]
    assert entry["records"] == 37 and entry["label_min"] == y.min() and entry["label_max"] == y.max()
    assert entry["label_counts"] == {str(i): int(k) for i, k in enumerate(np.bincount(y)) if k}
    assert (entry["channels"], entry["height"], entry["width"]) == (3, 5, 4)
    assert entry["sha256"] == hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()
    assert entry["data_mdb_bytes"] == (path / "data.mdb").stat().st_size
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:  # 32 of the 37 records, spread evenly, first and last included
        want = {f"{i * 36 // 31:08d}": hashlib.sha256(txn.get(f"{i * 36 // 31:08d}".encode())).hexdigest()
                for i in range(32)}
    env.close()
    assert entry["sample_sha256"] == want and {"00000000", "00000036"} <= set(want)
    assert write_datum_lmdb(tmp_path / "again_lmdb", x, y, 7)["sha256"] == entry["sha256"]
    assert write_datum_lmdb(tmp_path / "other_lmdb", x, y, 8)["sha256"] != entry["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again_lmdb", "db_lmdb", "other_lmdb"]


def test_caffe_data_layer_reads_our_lmdb(tmp_path):
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    x, y = _images(n=20, c=1, h=28, w=28, seed=4)
    write_datum_lmdb(tmp_path / "db_lmdb", x, y, 5)
    proto = tmp_path / "net.prototxt"
    proto.write_text(f'layer {{ name: "d" type: "Data" top: "data" top: "label" data_param '
                     f'{{ source: "{tmp_path / "db_lmdb"}" backend: LMDB batch_size: 8 }} }}\n')
    net = caffe.Net(str(proto), caffe.TEST)
    try:
        net.forward()
        order = np.random.default_rng(5).permutation(20)[:8]
        assert np.array_equal(net.blobs["label"].data, y[order])
        assert np.array_equal(net.blobs["data"].data, x[order].astype(np.float32))
    finally:
        del net


def test_lmdb_rejects_bad_input(tmp_path):
    x, y = _images()
    with pytest.raises(ValueError, match="uint8"):
        write_datum_lmdb(tmp_path / "a", x.astype(np.float32), y, 0)
    with pytest.raises(ValueError, match="labels"):
        write_datum_lmdb(tmp_path / "a", x, y[:-1], 0)


def test_existing_lmdb_not_overwritten_without_force(tmp_path):
    x, y = _images()
    path = tmp_path / "db_lmdb"
    first = write_datum_lmdb(path, x, y, 1)
    with pytest.raises(KitError, match="already exists"):
        write_datum_lmdb(path, x[:5], y[:5], 1)
    assert read_datum_lmdb(path)[0].shape[0] == 37
    assert first["sha256"] == hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()
    entry = write_datum_lmdb(path, x[:5], y[:5], 1, force=True)
    assert entry["records"] == 5 and read_datum_lmdb(path)[0].shape[0] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db_lmdb"]


def test_killed_lmdb_write_is_not_complete_and_is_redone(tmp_path):
    x, y = _images()
    path = tmp_path / "db_lmdb"
    leftover = tmp_path / f"db_lmdb.tmp-{dead_pid()}"
    leftover.mkdir()
    (leftover / "data.mdb").write_bytes(b"half written")
    assert not is_complete_lmdb(path)
    write_datum_lmdb(path, x, y, 0)
    assert not leftover.exists() and is_complete_lmdb(path)
    assert np.array_equal(np.sort(read_datum_lmdb(path)[1]), np.sort(y))


def test_compute_mean_real_binary_matches_numpy(tmp_path):
    x, y = _images(n=50, c=3, h=6, w=5, seed=3)
    write_datum_lmdb(tmp_path / "db_lmdb", x, y, 0)
    out = compute_mean(tmp_path / "db_lmdb", tmp_path / "mean.binaryproto")
    mean = read_mean(out)
    assert mean.shape == (3, 6, 5)
    assert np.abs(mean - x.astype(np.float64).mean(axis=0)).max() < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db_lmdb", "mean.binaryproto"]


def _disk_full(exc: pytest.ExceptionInfo, path) -> str:
    """The problem of a full-disk KitError, checked to name `path`, the room left and the fix."""
    assert str(exc.value).startswith(f"disk full while writing {path} (") and " free" in exc.value.problem
    assert exc.value.fix.startswith("free space on that file system") and "rerun the same command" in exc.value.fix
    return exc.value.problem


def test_full_disk_during_an_lmdb_write_then_rerun_writes_it(small_disk):
    """Both LMDB writers on a 2 MiB file system: LMDB's short write (mdb_txn_commit: Input/output error) is the
    one-line full-disk error with the room left after its leftover is gone; with room, the same call writes it."""
    x, y = _images(n=3000, c=1, h=28, w=28)  # about 2.5 MB of Datums
    mnt = small_disk("2m")
    path = mnt / "db_lmdb"
    with pytest.raises(KitError) as exc:
        write_datum_lmdb(path, x, y, 0)
    assert "(2048 KiB free, about 2484 KiB needed; mdb_txn_commit: " in _disk_full(exc, path)
    records = [(f"{i:08d}".encode(), x[i].tobytes()) for i in range(len(x))]
    with pytest.raises(KitError) as exc:
        write_records_lmdb(mnt / "rec_lmdb", iter(records), len(records), "rec", map_size=4 << 20)
    _disk_full(exc, mnt / "rec_lmdb")
    assert list(mnt.iterdir()) == [], "nothing half-written, nothing that looks complete"
    small_disk.resize(mnt, "16m")
    write_datum_lmdb(path, x, y, 0)
    write_records_lmdb(mnt / "rec_lmdb", iter(records), len(records), "rec", map_size=4 << 20)
    assert np.array_equal(np.sort(read_datum_lmdb(path)[1]), np.sort(y))
    assert sorted(p.name for p in mnt.iterdir()) == ["db_lmdb", "rec_lmdb"]


def test_a_full_disk_refuses_an_lmdb_before_lmdb_opens_it(small_disk):
    """Under 1 MiB left, an LMDB is refused up front: LMDB maps its lock file, which a full tmpfs answers with
    SIGBUS, killing the process."""
    x, y = _images()
    mnt = small_disk("2m")
    fill(mnt)
    with pytest.raises(KitError) as exc:
        write_datum_lmdb(mnt / "db_lmdb", x, y, 0)
    assert "too little room to start writing" in _disk_full(exc, mnt / "db_lmdb")
    assert sorted(p.name for p in mnt.iterdir()) == ["filler"]


def test_full_disk_during_compute_mean_then_rerun_writes_it(small_disk):
    """compute_image_mean's failed CHECK on a full disk is the one-line error naming the mean; no mean is there
    (none half-written); freed, the same call writes it."""
    x, y = _images(n=50, c=3, h=32, w=32, seed=3)  # a 12 KiB mean
    mnt = small_disk("2m")
    write_datum_lmdb(mnt / "db_lmdb", x, y, 0)
    filler = fill(mnt)
    with pytest.raises(KitError) as exc:
        compute_mean(mnt / "db_lmdb", mnt / "mean.binaryproto")
    assert "compute_image_mean exit" in _disk_full(exc, mnt / "mean.binaryproto")
    assert sorted(p.name for p in mnt.iterdir()) == ["db_lmdb", "filler"]
    filler.unlink()
    mean = read_mean(compute_mean(mnt / "db_lmdb", mnt / "mean.binaryproto"))
    assert np.abs(mean - x.astype(np.float64).mean(axis=0)).max() < 1e-4


# ---------------------------------------------------------------- prepare
