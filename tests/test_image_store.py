"""ImageNet LMDBs from a synthetic ILSVRC folder: pixels, labels, decode-once, bad images, means, manifest.

Real JPEGs written with OpenCV, real lmdb, real caffe_pb2 Datums, the real
`compute_image_mean`; the decode counter wraps the real decoder (nothing mocked).
"""
import json
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

from data_prep import image_store
from data_prep.image_lists import load_lists
from data_prep.image_store import build_whole_set
from data_prep.imagenet import prepare_imagenet
from data_prep.imagenet_synth import make_synthetic_ilsvrc
from data_prep.lmdb_io import caffe_pb2, read_mean
from kitcore.errors import KitError

KINDS = [("random", {"seed": 0}), ("natman", {}), ("reduced", {"per_class": 2}), ("whole", {})]


def read_records(path: Path) -> list[tuple[str, int, np.ndarray]]:
    """(key, label, C x H x W pixels) of every Datum, in key order."""
    pb2, out = caffe_pb2(), []
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        for key, value in txn.cursor():
            d = pb2.Datum.FromString(value)
            assert not d.encoded
            out.append((key.decode(), d.label, np.frombuffer(d.data, np.uint8).reshape(d.channels, d.height, d.width)))
    env.close()
    return out


def independent_decode(path: Path) -> np.ndarray:
    """convert_imageset's pixels, computed here: imread colour (BGR), bilinear resize to 256x256, C x H x W."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return cv2.resize(img, (256, 256), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A synthetic folder (6 classes x 4 train + 2 val, one corrupt, one missing) and all four kinds of split."""
    root = tmp_path_factory.mktemp("inet")
    images, lists = make_synthetic_ilsvrc(root / "src", bad=True)
    calls = []
    real = image_store.decode_resize
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(image_store, "decode_resize", lambda path, size=256: calls.append(Path(path)) or real(path, size))
        sdirs = {}
        for kind, kw in KINDS:
            before = len(calls)
            sdirs[kind] = prepare_imagenet(root / "work", lists, kind, images=images, **kw)
            if kind != "random":
                assert len(calls) == before, f"deriving {kind} decoded images again"
        sdirs["random-again"] = prepare_imagenet(root / "work", lists, "random", seed=0, images=images)
    return {"images": images, "lists": lists, "work": root / "work", "sdirs": sdirs, "decodes": calls}


def test_every_image_decoded_exactly_once(built):
    lists = load_lists(built["lists"])
    existing = [built["images"] / ph / p for ph in ("train", "val") for p, _ in lists.entries[ph]
                if (built["images"] / ph / p).is_file()]
    assert len(existing) == 24 + 12 + 1  # + the corrupt file; the missing one is never opened
    assert sorted(built["decodes"]) == sorted(existing)
    meta = json.loads((built["work"] / "imagenet" / "dataset" / "dataset.json").read_text())
    assert meta["decoded"] == len(existing)


def test_bad_images_are_counted_and_listed(built):
    wdir = built["work"] / "imagenet" / "dataset"
    assert (wdir / "bad_images.txt").read_text() == (
        "train/n01440764/n01440764_corrupt.JPEG undecodable\ntrain/n07873807/n07873807_missing.JPEG missing\n")
    meta = json.loads((wdir / "dataset.json").read_text())
    assert meta["bad_images"]["count"] == 2
    assert meta["class_counts"]["train"] == {w: 4 for w in meta["class_counts"]["train"]}
    man = json.loads((built["sdirs"]["whole"] / "manifest.json").read_text())
    entry = man["files"]["data/all_train_lmdb"]
    assert entry["skipped_bad"] == 2 and entry["records"] == 24 and man["bad_images"]["skipped"] == 2
    assert sorted(entry["skipped_paths"]) == ["n01440764/n01440764_corrupt.JPEG", "n07873807/n07873807_missing.JPEG"]
    assert entry["class_counts"] == {w: 4 for w in man["class_names"]["all"]}


@pytest.mark.parametrize("kind", ["random", "natman", "reduced", "whole"])
def test_half_lmdbs_hold_the_listed_images_relabelled(built, kind):
    sdir = built["sdirs"][kind]
    man = json.loads((sdir / "manifest.json").read_text())
    bad = {"n01440764/n01440764_corrupt.JPEG", "n07873807/n07873807_missing.JPEG"}
    for half in man["split"]["halves"]:
        for phase in ("train", "val"):
            listed = [ln.rsplit(" ", 1) for ln in (sdir / "lists" / f"{half}_{phase}.txt").read_text().splitlines()]
            want = {p: int(lab) for p, lab in listed if p not in bad}
            records = read_records(sdir / "data" / f"{half}_{phase}_lmdb")
            keys = [k for k, _, _ in records]
            assert keys == sorted(keys) and [k[:9] for k in keys] == [f"{i:08d}_" for i in range(len(keys))]
            got = {k[9:]: lab for k, lab, _ in records}
            assert got == want and len(records) == len(want)
            for key, _label, pixels in records:
                assert pixels.shape == (3, 256, 256)
                assert np.array_equal(pixels, independent_decode(built["images"] / phase / key[9:]))
            entry = man["files"][f"data/{half}_{phase}_lmdb"]
            assert entry["records"] == len(want) and (entry["channels"], entry["height"]) == (3, 256)
            sample = set(entry["sample_sha256"])
            assert {keys[0], keys[-1]} <= sample <= set(keys) and len(sample) == min(32, len(keys))
            size = (sdir / "data" / f"{half}_{phase}_lmdb" / "data.mdb").stat().st_size
            assert entry["data_mdb_bytes"] == size
            assert entry["label_max"] == max(want.values()) < len(man["split"]["halves"][half])


def test_shuffled_not_grouped(built):
    labels = [lab for _, lab, _ in read_records(built["sdirs"]["whole"] / "data" / "all_train_lmdb")]
    assert labels != sorted(labels)


def test_natural_split_halves(built):
    man = json.loads((built["sdirs"]["natman"] / "manifest.json").read_text())
    assert man["class_names"] == {"A": ["n01440764", "n01443537", "n02085620"],
                                  "B": ["n02690373", "n03642806", "n07873807"]}
    entry = man["files"]["data/B_train_lmdb"]
    assert (entry["records"], entry["skipped_bad"]) == (12, 1)  # 13 listed, one of them missing


def test_means_from_compute_image_mean_match_numpy(built):
    sdir = built["sdirs"]["random"]
    for half in ("A", "B"):
        pixels = np.stack([p for _, _, p in read_records(sdir / "data" / f"{half}_train_lmdb")]).astype(np.float64)
        mean = read_mean(sdir / "data" / f"{half}_mean.binaryproto")
        assert mean.shape == (3, 256, 256)
        np.testing.assert_allclose(mean, pixels.mean(axis=0), atol=1e-3)


def test_rerun_is_a_noop_and_force_rebuilds_identically(built):
    sdir = built["sdirs"]["random"]
    assert built["sdirs"]["random-again"] == sdir
    man = json.loads((sdir / "manifest.json").read_text())
    mtime = (sdir / "data" / "A_train_lmdb" / "data.mdb").stat().st_mtime_ns
    prepare_imagenet(built["work"], built["lists"], "random", seed=0, images=built["images"])
    assert (sdir / "data" / "A_train_lmdb" / "data.mdb").stat().st_mtime_ns == mtime
    prepare_imagenet(built["work"], built["lists"], "random", seed=0, images=built["images"], force=True)
    again = json.loads((sdir / "manifest.json").read_text())
    assert [again["files"][k].get("content_sha256") for k in again["files"] if k.endswith("_lmdb")] == \
        [man["files"][k].get("content_sha256") for k in man["files"] if k.endswith("_lmdb")]


def test_parallel_decode_gives_the_same_store(built, tmp_path):
    lists = load_lists(built["lists"])
    wdir = build_whole_set(tmp_path, lists, built["images"], jobs=2)
    one = json.loads((built["work"] / "imagenet" / "dataset" / "dataset.json").read_text())
    two = json.loads((wdir / "dataset.json").read_text())
    assert two["lmdbs"] == one["lmdbs"] and two["bad_images"] == one["bad_images"]


def test_bad_image_folder(built, tmp_path):
    with pytest.raises(KitError, match="has no train/ subfolder"):
        prepare_imagenet(tmp_path, built["lists"], "random", seed=0, images=tmp_path / "nope")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(KitError, match="none of the 26 train images"):
        prepare_imagenet(tmp_path / "w", built["lists"], "random", seed=0, images=tmp_path / "empty")
    assert not (tmp_path / "w" / "imagenet" / "dataset" / "dataset.json").exists()
