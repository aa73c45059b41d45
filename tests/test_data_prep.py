"""Tests of data_prep: FA-20, class splits, Datum LMDBs, means, per-split preparation.

Real data (Debian dataset-fashion-mnist, PyPI animal-mnist), real lmdb, real
caffe_pb2 Datums and the real `compute_image_mean` binary; nothing mocked.
"""
import hashlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from data_prep import fa20
from data_prep.lmdb_io import (caffe_pb2, compute_mean, is_complete_lmdb, read_datum_lmdb, read_mean,
                               write_datum_lmdb)
from data_prep.prepare import prepare_for, prepare_natman, prepare_split, prepare_whole, read_manifest
from data_prep.splits import (Split, apply_split_to_list, idxmap, make_random_split, natman_split, random_split,
                              read_split_json, write_split_json)
from kitcore.errors import KitError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VAL_TXT = SHARED / "reference" / "ilsvrc12" / "val.txt"


def dead_pid() -> int:
    """Return the id of a process that has just exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="session")
def fa20_dir(tmp_path_factory):
    """FA-20 built once per session from the real installed sources."""
    return fa20.build_fa20(tmp_path_factory.mktemp("fa20") / "dataset")


@pytest.fixture(scope="session")
def fa20_data(fa20_dir):
    """The session's FA-20, loaded."""
    return fa20.load_fa20(fa20_dir)


def _work_with_dataset(root: Path, fa20_dir: Path) -> Path:
    """Make a work folder whose fa20/dataset is a copy of the session's build (no rebuild)."""
    shutil.copytree(fa20_dir, root / "fa20" / "dataset")
    return root


@pytest.fixture(scope="session")
def split0(tmp_path_factory, fa20_dir):
    """prepare_split(work, 'fa20', 0) once per session."""
    work = _work_with_dataset(tmp_path_factory.mktemp("work0"), fa20_dir)
    return prepare_split(work, "fa20", 0)


# ---------------------------------------------------------------- FA-20

def test_fa20_shapes_counts_classes(fa20_dir, fa20_data):
    d = fa20_data
    assert d.train_x.shape == (16000, 28, 28) and d.val_x.shape == (4000, 28, 28)
    assert d.train_x.dtype == np.uint8 and d.val_x.dtype == np.uint8
    assert np.bincount(d.train_y).tolist() == [800] * 20
    assert np.bincount(d.val_y).tolist() == [200] * 20
    assert d.class_names[:3] == ("T-shirt/top", "Trouser", "Pullover") and d.class_names[9] == "Ankle boot"
    assert d.class_names[10:] == ("Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra")
    assert d.kinds == ("man-made",) * 10 + ("natural",) * 10
    meta = json.loads((fa20_dir / "classes.json").read_text())
    assert meta["seed"] == fa20.FA20_SEED and meta["names"] == list(d.class_names)
    arrays = {"train_x": d.train_x, "train_y": d.train_y, "val_x": d.val_x, "val_y": d.val_y}
    assert fa20.content_sha256(arrays) == meta["content_sha256"] == d.content_sha256
    assert not d.train_x.flags.writeable


def test_fa20_images_come_from_their_sources(fa20_data):
    fx, fy = fa20.load_fashion()
    ax, ay = fa20.load_animal()
    for label in (0, 8, 10, 19):
        x, y, src = (fx, fy, label) if label < 10 else (ax, ay, label - 10)
        pool = {img.tobytes() for img in x[y == src]}
        ours = np.concatenate([fa20_data.train_x[fa20_data.train_y == label], fa20_data.val_x[fa20_data.val_y == label]])
        assert all(img.tobytes() in pool for img in ours)
    train = {img.tobytes() for img in fa20_data.train_x}
    assert not any(img.tobytes() in train for img in fa20_data.val_x)  # Animal-MNIST's duplicates stay on one side


def test_fa20_deterministic_noop_and_killed_build(tmp_path, fa20_dir, fa20_data):
    before = (fa20_dir / "fa20.npz").stat().st_mtime_ns
    fa20.build_fa20(fa20_dir)
    assert (fa20_dir / "fa20.npz").stat().st_mtime_ns == before  # complete: no-op
    out = tmp_path / "ds"
    out.mkdir()
    (out / "classes.json").write_text("{}")  # a build killed before its npz
    leftover = out / f"fa20.npz.tmp-{dead_pid()}"
    leftover.write_bytes(b"partial")
    assert not fa20.is_complete(out)
    fa20.build_fa20(out)
    assert fa20.is_complete(out) and not leftover.exists()
    again = fa20.load_fa20(out)
    assert again.content_sha256 == fa20_data.content_sha256
    assert np.array_equal(again.val_x, fa20_data.val_x)


def test_contact_sheet(tmp_path, fa20_dir):
    from PIL import Image
    png = fa20.contact_sheet(fa20_dir, tmp_path / "sheet.png", per_class=5)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.height > 600 and im.width > 300
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_os_system():
    data = pickle.dumps(_Evil(), protocol=4)
    assert b"system" in data
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        fa20.load_numpy_pickle(data)
    with pytest.raises(pickle.UnpicklingError, match="builtins"):
        fa20.load_numpy_pickle(pickle.dumps(len, protocol=4))
    arr = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert np.array_equal(fa20.load_numpy_pickle(pickle.dumps(arr, protocol=4)), arr)


def test_missing_sources_raise_kiterror(tmp_path):
    with pytest.raises(KitError, match="dataset-fashion-mnist"):
        fa20.load_fashion(tmp_path)


# ---------------------------------------------------------------- splits

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [20, 1000])
def test_random_split_matches_authors_procedure(seed, k):
    state = np.random.get_state()
    try:
        np.random.seed([seed])
        ref = sorted(np.random.choice(np.arange(k), k // 2, replace=False).tolist())
        np.random.seed(12345)
        marker = np.random.get_state()[1].copy()
        half_a, half_b = random_split(k, seed)
        assert np.array_equal(np.random.get_state()[1], marker)  # global generator untouched
    finally:
        np.random.set_state(state)
    assert half_a == ref
    assert half_b == sorted(set(range(k)) - set(ref))


def test_random_split_properties():
    for k in (7, 20, 1000):
        a, b = random_split(k, 5)
        assert (a, b) == random_split(k, 5)
        assert a == sorted(a) and b == sorted(b) and not set(a) & set(b)
        assert sorted(a + b) == list(range(k)) and len(a) == k // 2
    assert random_split(20, 0) != random_split(20, 1)


@pytest.mark.parametrize("bad", [-1, 1.0, "0", True, None, 2**32])
def test_bad_seed_is_kiterror(bad):
    with pytest.raises(KitError, match="seed"):
        random_split(20, bad)


def test_split_json_and_idxmap(tmp_path):
    s = make_random_split(20, 0)
    assert s.name == "random0" and s.seed == 0 and set(s.halves) == {"A", "B"}
    m = s.idxmap("A")
    assert list(m.values()) == list(range(10)) and list(m) == sorted(m)
    assert idxmap([9, 3, 5]) == {3: 0, 5: 1, 9: 2}
    assert Split.from_json(s.to_json()) == s
    write_split_json(tmp_path / "split.json", s, {"note": "x"})
    assert read_split_json(tmp_path / "split.json") == s
    with pytest.raises(ValueError, match="partition"):
        Split(name="bad", halves={"A": [0, 1], "B": [1, 2]}, num_classes=3)


def test_apply_split_to_list_small():
    lines = ["a.jpg 3", "b.jpg 0", "", "c d.jpg 5", "e.jpg 1"]
    assert apply_split_to_list(lines, [5, 3]) == "a.jpg 0\nc d.jpg 1\n"
    with pytest.raises(TypeError):
        apply_split_to_list("a.jpg 3\n", [3])
    with pytest.raises(ValueError, match="line 1"):
        apply_split_to_list(["nolabel"], [3])


@pytest.mark.skipif(not VAL_TXT.is_file(), reason=f"authors' reference data absent ({VAL_TXT}); CI has ../shared")
def test_imagenet_seed0_split_matches_authors_files():
    half_a, half_b = random_split(1000, 0)
    md5 = {h: hashlib.md5(apply_split_to_list(VAL_TXT, labels).encode()).hexdigest()
           for h, labels in (("A", half_a), ("B", half_b))}
    assert md5 == {"A": "2f10009e20d77eb7007cf70674958b94", "B": "cce39b383d681345c873faf2c0c28d33"}


# ---------------------------------------------------------------- LMDB + mean

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
    assert read_datum_lmdb(path)[0].shape[0] == 37 and first["sha256"] == hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()
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


# ---------------------------------------------------------------- prepare

def test_prepare_split_manifest_and_contents(split0, fa20_data):
    split = make_random_split(20, 0)
    assert split0.name == "random0"
    man = read_manifest(split0)
    assert man["dataset"] == "fa20" and Split.from_dict(man["split"]) == split
    assert man["dataset_content_sha256"] == fa20_data.content_sha256
    expect = {"split.json"} | {f"data/{h}_{p}_lmdb" for h in "AB" for p in ("train", "val")} \
        | {f"data/{h}_mean.binaryproto" for h in "AB"}
    assert set(man["files"]) == expect
    for rel, entry in man["files"].items():
        target = split0 / rel / "data.mdb" if rel.endswith("_lmdb") else split0 / rel
        assert entry["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
        if rel.endswith("_lmdb"):
            n = 800 if entry["phase"] == "train" else 200
            assert entry["records"] == 10 * n and entry["label_counts"] == {str(i): n for i in range(10)}
            assert (entry["label_min"], entry["label_max"]) == (0, 9)
            assert (entry["channels"], entry["height"], entry["width"]) == (1, 28, 28)
    seeds = [man["files"][f"data/{h}_{p}_lmdb"]["shuffle_seed"] for h in "AB" for p in ("train", "val")]
    assert len(set(seeds)) == 4
    sj = json.loads((split0 / "split.json").read_text())
    assert sj["class_names"]["A"] == [fa20_data.class_names[c] for c in split.halves["A"]]
    assert sj["idxmap"]["B"] == {str(c): i for i, c in enumerate(split.halves["B"])}
    assert not list(split0.rglob("*.tmp-*"))


def test_prepare_split_lmdb_holds_the_half_relabelled(split0, fa20_data):
    half_b = make_random_split(20, 0).halves["B"]
    x, y = read_datum_lmdb(split0 / "data" / "B_val_lmdb")
    assert x.shape == (2000, 1, 28, 28)
    for new, orig in enumerate(half_b):
        ours = sorted(img.tobytes() for img in x[y == new, 0])
        theirs = sorted(img.tobytes() for img in fa20_data.val_x[fa20_data.val_y == orig])
        assert ours == theirs
    assert len(set(y[:50].tolist())) > 3  # shuffled, not grouped by label
    tx, _ = read_datum_lmdb(split0 / "data" / "B_train_lmdb")
    mean = read_mean(split0 / "data" / "B_mean.binaryproto")
    assert np.abs(mean - tx.astype(np.float64).mean(axis=0)).max() < 1e-4


def test_prepare_split_is_noop_when_complete(split0, caplog):
    before = (split0 / "manifest.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="data_prep.prepare"):
        assert prepare_split(split0.parents[1], "fa20", 0) == split0
    assert (split0 / "manifest.json").stat().st_mtime_ns == before
    assert "nothing to do" in caplog.text


def test_prepare_rebuilds_unfinished_split(tmp_path, fa20_dir):
    work = _work_with_dataset(tmp_path, fa20_dir)
    sdir = prepare_split(work, "fa20", 1)
    sha = read_manifest(sdir)["files"]["data/A_train_lmdb"]["sha256"]
    (sdir / "manifest.json").unlink()  # as if killed before the manifest
    shutil.rmtree(sdir / "data" / "B_val_lmdb")
    leftover = sdir / "data" / f"B_val_lmdb.tmp-{dead_pid()}"
    leftover.mkdir()
    assert prepare_split(work, "fa20", 1) == sdir
    man = read_manifest(sdir)
    assert man["files"]["data/A_train_lmdb"]["sha256"] == sha  # deterministic rebuild
    assert is_complete_lmdb(sdir / "data" / "B_val_lmdb") and not leftover.exists()
    man["dataset_content_sha256"] = "0" * 64
    (sdir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(KitError, match="different build"):
        prepare_split(work, "fa20", 1)
    prepare_split(work, "fa20", 1, force=True)
    assert read_manifest(sdir)["dataset_content_sha256"] != "0" * 64


def test_prepare_whole(tmp_path, fa20_dir, fa20_data):
    work = _work_with_dataset(tmp_path, fa20_dir)
    sdir = prepare_whole(work, "fa20")
    assert sdir == work / "fa20" / "all"
    man = read_manifest(sdir)
    assert man["split"]["halves"] == {"all": list(range(20))}
    assert set(man["files"]) == {"split.json", "data/all_train_lmdb", "data/all_val_lmdb", "data/all_mean.binaryproto"}
    entry = man["files"]["data/all_val_lmdb"]
    assert entry["records"] == 4000 and (entry["label_min"], entry["label_max"]) == (0, 19)
    _, y = read_datum_lmdb(sdir / "data" / "all_val_lmdb")
    assert np.bincount(y).tolist() == [200] * 20


def test_natman_split_of_fa20_kinds():
    split = natman_split(fa20.KINDS)
    assert split.name == "natman" and split.seed is None
    assert split.halves == {"A": tuple(range(10, 20)), "B": tuple(range(10))}  # A natural (animals), as the authors
    with pytest.raises(ValueError, match="natural"):
        natman_split(["natural", "plastic"])
    with pytest.raises(ValueError, match="both kinds"):
        natman_split(["natural"] * 4)


def test_prepare_natman(tmp_path, fa20_dir, fa20_data):
    work = _work_with_dataset(tmp_path, fa20_dir)
    sdir = prepare_natman(work, "fa20")
    assert sdir == work / "fa20" / "natman" and prepare_for(work, "fa20", "natman") == sdir
    man = read_manifest(sdir)
    assert man["class_names"]["A"] == list(fa20.ANIMAL_NAMES) and man["class_names"]["B"] == list(fa20.FASHION_NAMES)
    assert json.loads((sdir / "split.json").read_text())["kinds"] == {"A": ["natural"] * 10, "B": ["man-made"] * 10}
    seeds = {man["files"][f"data/{h}_{p}_lmdb"]["shuffle_seed"] for h in "AB" for p in ("train", "val")}
    whole = read_manifest(prepare_whole(work, "fa20"))["files"]
    random0 = read_manifest(prepare_split(work, "fa20", 0))["files"]
    others = {entry["shuffle_seed"] for files in (whole, random0) for entry in files.values() if "shuffle_seed" in entry}
    assert len(seeds) == 4 and not seeds & others
    _, y = read_datum_lmdb(sdir / "data" / "A_train_lmdb")
    assert np.bincount(y).tolist() == [800] * 10
    with pytest.raises(KitError, match="protocol 'reduced' has no split"):
        prepare_for(work, "fa20", "reduced")


def test_prepare_bad_inputs(tmp_path):
    with pytest.raises(KitError, match="unknown dataset") as err:
        prepare_split(tmp_path, "imagenet", 0)
    assert "fa20" in err.value.fix
    with pytest.raises(KitError, match="seed"):
        prepare_split(tmp_path, "fa20", -1)
    assert not (tmp_path / "fa20").exists()
