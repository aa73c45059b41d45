"""data_prep.verify and the runner's input check on a synthetic ILSVRC split and an FA-20 split, clean and broken.

Real JPEGs, real lmdb, real caffe_pb2 Datums, the real `compute_image_mean`
and the kit's real FA-20; every break is made in place on a copy of the split,
with python lmdb (a changed or deleted record) or on data.mdb itself
(truncated, removed, a flipped byte). Nothing is mocked.
"""
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import lmdb
import pytest

from data_prep import fa20
from data_prep.imagenet import prepare_imagenet
from data_prep.imagenet_synth import make_synthetic_ilsvrc
from data_prep.lmdb_io import caffe_pb2
from data_prep.prepare import prepare_split
from data_prep.verify import verify_lmdb, verify_split
from kitcore.errors import KitError
from kitcore.treatments import parse
from runner import inputs
from runner.train import RunSpec

FIX = "rebuild it as the test says"
LMDB = "data/A_train_lmdb"
FAST = {"full_below": 0}  # the sampled check alone, as on an LMDB too large to read whole


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Split random0 of a synthetic ILSVRC folder (48 train records per half) and of FA-20."""
    root = tmp_path_factory.mktemp("verify")
    images, lists = make_synthetic_ilsvrc(root / "src", train_per_class=16, val_per_class=2)
    imagenet = prepare_imagenet(root / "inet", lists, "random", seed=0, images=images)
    fa20.build_fa20(root / "fa" / "fa20" / "dataset")
    return {"imagenet": imagenet, "fa20": prepare_split(root / "fa", "fa20", 0)}


@pytest.fixture(params=["imagenet", "fa20"])
def split(request, built, tmp_path):
    """A fresh copy of one split folder, at <tmp>/work/<dataset>/random0, to break."""
    dest = tmp_path / "work" / request.param / "random0"
    shutil.copytree(built[request.param], dest)
    return dest


def entry_of(sdir: Path, rel: str = LMDB) -> dict:
    return json.loads((sdir / "manifest.json").read_text())["files"][rel]


def keys(path: Path) -> list[str]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        out = [k.decode() for k, _ in txn.cursor()]
    env.close()
    return out


def unsampled_key(sdir: Path) -> str:
    sample = entry_of(sdir)["sample_sha256"]
    return next(k for k in keys(sdir / LMDB) if k not in sample)


def sampled_key(sdir: Path) -> str:
    sample = sorted(entry_of(sdir)["sample_sha256"])
    return sample[len(sample) // 2]


def change(path: Path, key: str, delete: bool = False) -> None:
    """With python lmdb: flip one pixel of record `key` (same length), or delete it."""
    env = lmdb.open(str(path), map_size=2 * (path / "data.mdb").stat().st_size + (1 << 24))
    try:
        with env.begin(write=True) as txn:
            if delete:
                assert txn.delete(key.encode())
                return
            datum = caffe_pb2().Datum.FromString(txn.get(key.encode()))
            data = bytearray(datum.data)
            data[len(data) // 2] ^= 0xFF
            datum.data = bytes(data)
            txn.put(key.encode(), datum.SerializeToString())
    finally:
        env.close()


def refused(sdir: Path, *parts: str, **kw) -> KitError:
    """verify_split's KitError: one line naming the LMDB folder, `parts`, and the fix."""
    with pytest.raises(KitError) as err:
        verify_split(sdir, fix=FIX, **kw)
    text = str(err.value)
    assert "\n" not in text and err.value.fix == FIX and text.endswith(f"; fix: {FIX}")
    assert str(sdir / LMDB) in text or str(sdir / "data" / "A_mean.binaryproto") in text, text
    for part in parts:
        assert part in text, text
    return err.value


def test_manifest_records_count_size_and_a_spread_sample(split):
    files = json.loads((split / "manifest.json").read_text())["files"]
    for rel, entry in files.items():
        if not rel.endswith("_lmdb"):
            continue
        env = lmdb.open(str(split / rel), readonly=True, lock=False)
        with env.begin() as txn:
            records = list(txn.cursor())
        env.close()
        n = len(records)
        assert entry["records"] == n and entry["data_mdb_bytes"] == (split / rel / "data.mdb").stat().st_size
        want = ({records[i * (n - 1) // 31][0].decode() for i in range(32)} if n > 32
                else {k.decode() for k, _ in records})
        assert set(entry["sample_sha256"]) == want and len(want) == min(n, 32)
        assert records[0][0].decode() in want and records[-1][0].decode() in want
        values = dict(records)
        for key, digest in entry["sample_sha256"].items():
            assert digest == hashlib.sha256(values[key.encode()]).hexdigest()
        if "content_sha256" in entry:  # ImageNet: every record in key order, length-prefixed
            h = hashlib.sha256()
            for k, v in records:
                h.update(len(k).to_bytes(4, "little") + k + len(v).to_bytes(8, "little") + v)
            assert entry["content_sha256"] == h.hexdigest()
    assert files[LMDB]["records"] == (48 if split.parent.name == "imagenet" else 8000)


def test_clean_split_passes_fast_and_full(split):
    files = json.loads((split / "manifest.json").read_text())["files"]
    for kw in ({}, FAST, {"full": True}):
        lines = verify_split(split, fix=FIX, **kw)
        assert len(lines) == len(files) and all(ln.startswith("ok ") for ln in lines)
    fast = [ln for ln in verify_split(split, **FAST) if "_lmdb" in ln]
    assert len(fast) == 4 and all("sampled records match" in ln for ln in fast)
    assert len(verify_split(split, halves={"B"})) == 3  # train, val, mean of B only


def test_changed_sampled_record_is_refused_in_every_mode(split):
    change(split / LMDB, sampled_key(split))
    refused(split, "corrupt or was changed", **FAST)
    refused(split, "corrupt or was changed")
    refused(split, "corrupt or was changed", full=True)


def test_changed_unsampled_record_full_check_catches_fast_may_miss(split):
    change(split / LMDB, unsampled_key(split))
    assert len(verify_split(split, fix=FIX, **FAST)) == 7  # the sample misses it: fast reads only the sample
    refused(split, "corrupt or was changed", full=True, **FAST)
    refused(split, "corrupt or was changed")  # under FULL_CHECK_BYTES, fast mode reads it whole


def test_deleted_record_is_refused(split):
    n = entry_of(split)["records"]
    change(split / LMDB, unsampled_key(split), delete=True)
    refused(split, f"it holds {n - 1} records, manifest.json says {n}", **FAST)
    refused(split, "corrupt or was changed", full=True)


def test_truncated_data_mdb_is_refused_before_lmdb_maps_it(split):
    mdb = split / LMDB / "data.mdb"
    os.truncate(mdb, mdb.stat().st_size // 2)
    refused(split, "truncated", **FAST)
    refused(split, "truncated", full=True)
    old = {k: v for k, v in entry_of(split).items() if k not in ("data_mdb_bytes", "sample_sha256")}
    with pytest.raises(KitError, match="truncated: .* but its pages reach byte"):  # no SIGBUS without the size
        verify_lmdb(split / LMDB, old, False, FIX)


def test_missing_data_mdb_or_folder_is_refused(split):
    (split / LMDB / "data.mdb").unlink()
    refused(split, f"{split / LMDB / 'data.mdb'} is missing")
    shutil.rmtree(split / LMDB)
    refused(split, f"{split / LMDB / 'data.mdb'} is missing", full=True)


def test_changed_mean_is_refused(split):
    mean = split / "data" / "A_mean.binaryproto"
    data = bytearray(mean.read_bytes())
    data[-3] ^= 0xFF
    mean.write_bytes(bytes(data))
    refused(split, "A_mean.binaryproto is corrupt or was changed")


def test_older_entry_without_sample_gets_the_full_check(split, caplog):
    old = {k: v for k, v in entry_of(split).items() if k not in ("data_mdb_bytes", "sample_sha256")}
    with caplog.at_level(logging.WARNING, logger="data_prep.verify"):
        verify_lmdb(split / LMDB, old, False, FIX, full_below=0)
    assert "no sampled record hashes" in caplog.text and FIX in caplog.text
    change(split / LMDB, unsampled_key(split))
    with pytest.raises(KitError, match="corrupt or was changed"):
        verify_lmdb(split / LMDB, old, False, FIX, full_below=0)


def check_data(sdir: Path, halves: set[str]) -> None:
    spec = RunSpec(sdir.parents[1], sdir.parent.name, 0, parse("baseA", "random"))
    assert spec.split_dir == sdir
    inputs.check_data(spec, json.loads((sdir / "manifest.json").read_text()), halves)


def test_runner_refuses_a_changed_lmdb_of_either_dataset(split):
    check_data(split, {"A", "B"})
    change(split / LMDB, sampled_key(split))
    check_data(split, {"B"})  # only the halves a run reads are checked
    dataset = split.parent.name
    with pytest.raises(KitError) as err:
        check_data(split, {"A"})
    assert str(split / LMDB) in err.value.problem and "corrupt or was changed" in err.value.problem
    want = "make split-random DATASET=imagenet SEED=0" if dataset == "imagenet" else \
        "make split-random DATASET=fa20 SEED=0"
    assert err.value.fix.startswith(f"rebuild the split: {want}")
    assert err.value.fix.endswith(f" FORCE=1 WORK={split.parents[1].resolve()}")  # the run's own work folder


def test_runner_refuses_a_flipped_byte_in_a_small_lmdb(built, tmp_path):
    sdir = tmp_path / "work" / "fa20" / "random0"
    shutil.copytree(built["fa20"], sdir)
    mdb = sdir / "data" / "B_train_lmdb" / "data.mdb"
    data = bytearray(mdb.read_bytes())
    data[len(data) // 2] ^= 0xFF  # most likely outside the sample: found by the whole-file sha256
    mdb.write_bytes(bytes(data))
    with pytest.raises(KitError, match="B_train_lmdb/data.mdb is corrupt or was changed"):
        check_data(sdir, {"B"})
