"""Tests of data_prep: FA-20 and per-split preparation (class splits: test_splits.py; LMDBs, means: test_lmdb_io.py).

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

import numpy as np
import pytest

from data_prep import fa20
from data_prep.lmdb_io import is_complete_lmdb, read_datum_lmdb, read_mean
from data_prep.prepare import prepare_for, prepare_natman, prepare_small, prepare_split, prepare_whole, read_manifest
from data_prep.splits import Split, make_random_split, natman_split
from kitcore.errors import KitError


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
        ours = np.concatenate([fa20_data.train_x[fa20_data.train_y == label],
                               fa20_data.val_x[fa20_data.val_y == label]])
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


def test_full_disk_while_building_fa20_then_rerun_finishes(small_disk, fa20_data):
    """The dataset store on a 4 MiB file system (its npz is 6.8 MB): the one-line error names fa20.npz and the
    room left, the store is not complete and holds no leftover; with room, the same build finishes, the same."""
    mnt = small_disk("4m")
    with pytest.raises(KitError) as exc:
        fa20.build_fa20(mnt / "dataset")
    assert str(exc.value).startswith(f"disk full while writing {mnt / 'dataset' / 'fa20.npz'} (")
    assert " KiB free; No space left on device" in exc.value.problem and "rerun the same command" in exc.value.fix
    assert not fa20.is_complete(mnt / "dataset") and sorted(p.name for p in (mnt / "dataset").iterdir()) == [
        "classes.json"]
    small_disk.resize(mnt, "16m")
    fa20.build_fa20(mnt / "dataset")
    assert fa20.load_fa20(mnt / "dataset").content_sha256 == fa20_data.content_sha256


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


# ---------------------------------------------------------------- per-split preparation

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
    others = {entry["shuffle_seed"] for files in (whole, random0) for entry in files.values()
              if "shuffle_seed" in entry}
    assert len(seeds) == 4 and not seeds & others
    _, y = read_datum_lmdb(sdir / "data" / "A_train_lmdb")
    assert np.bincount(y).tolist() == [800] * 10
    with pytest.raises(KitError, match="protocol 'reduced' has no split"):
        prepare_for(work, "fa20", "reduced")


def test_prepare_small_cuts_only_b_train(tmp_path, split0, fa20_dir, fa20_data):
    """small0k5: random0's A and val LMDBs byte for byte; B's train the first 5 images of each class."""
    work = _work_with_dataset(tmp_path, fa20_dir)
    sdir = prepare_small(work, "fa20", 0, 5)
    assert sdir == work / "fa20" / "small0k5" and prepare_for(work, "fa20", "small", 0, per_class=5) == sdir
    man, full = read_manifest(sdir), read_manifest(split0)
    for rel in ("data/A_train_lmdb", "data/A_val_lmdb", "data/B_val_lmdb", "data/A_mean.binaryproto"):
        assert man["files"][rel]["sha256"] == full["files"][rel]["sha256"], rel
    entry = man["files"]["data/B_train_lmdb"]
    assert entry["records"] == 50 and entry["label_counts"] == {str(i): 5 for i in range(10)}
    x, y = read_datum_lmdb(sdir / "data" / "B_train_lmdb")
    for new, orig in enumerate(make_random_split(20, 0).halves["B"]):
        first = fa20_data.train_x[fa20_data.train_y == orig][:5]
        assert sorted(img.tobytes() for img in x[y == new, 0]) == sorted(img.tobytes() for img in first)
    sj = json.loads((sdir / "split.json").read_text())
    assert sj["per_class"] == 5 and sj["cut_halves"] == ["B"] and sj["seed"] == 0
    assert sj["uncut_per_class"] == {"B": [800, 800]}
    assert "per_class" not in json.loads((split0 / "split.json").read_text())
    with pytest.raises(KitError, match="fewer than k = 801.*PERCLASS=800 or less"):
        prepare_small(work, "fa20", 0, 801)
    with pytest.raises(KitError, match="small protocol needs k"):
        prepare_for(work, "fa20", "small", 0)


def test_prepare_bad_inputs(tmp_path):
    with pytest.raises(KitError, match="the kit does not build 'imagenet'.*Caffe's list files") as err:
        prepare_split(tmp_path, "imagenet", 0)
    assert err.value.fix == "use one of: fa20"
    with pytest.raises(KitError, match="unknown dataset 'cifar'"):
        prepare_split(tmp_path, "cifar", 0)
    with pytest.raises(KitError, match="seed"):
        prepare_split(tmp_path, "fa20", -1)
    assert not (tmp_path / "fa20").exists()
