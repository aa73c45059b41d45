"""FA-20 exported as a class-per-folder PNG tree and added as a user dataset gives FA-20's own splits.

The whole embedded dataset (20 classes, 16,000 train and 4,000 val 28x28 grey
images) is written with cv2.imwrite to `train/<NN_name>/<i>.png` and
`val/...` (folder names sort in FA-20's label order), added with
`data_prep.folder.add_dataset` (NET unset: small, 1x28x28) and split; every
LMDB holds exactly the records of the kit's FA-20 split of the same name
(`data_prep.prepare`): the same multiset of (label, pixels) per half and
phase, the same classes per half, the same means. Real OpenCV, lmdb and
compute_image_mean; the decode counter wraps the real decoder.
"""
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import pytest

from data_prep import fa20, image_store
from data_prep.folder import add_dataset, prepare_user_split
from data_prep.lmdb_io import read_datum_lmdb, read_mean
from data_prep.prepare import prepare_natman, prepare_small, prepare_split, prepare_whole
from data_prep.verify import verify_split
from kitcore.profiles import PROFILE_FILE, load_user_profiles, profile

from folder_trees import registry_restored  # noqa: F401  (autouse)

NAME = "fa20png"


def folder_name(label: int, name: str) -> str:
    """The class folder of FA-20 label `label`: NN_name ('/' in T-shirt/top becomes '_')."""
    return f"{label:02d}_{name.replace('/', '_')}"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """FA-20 built, exported as PNGs, added as a user dataset (decodes counted), and its reference splits."""
    root = tmp_path_factory.mktemp("fa20png")
    ddir = fa20.build_fa20(root / "ref" / "fa20" / "dataset")
    data = fa20.load_fa20(ddir)
    names = [folder_name(i, n) for i, n in enumerate(data.class_names)]
    assert names == sorted(names)
    for phase, (xs, ys) in {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y)}.items():
        for n in names:
            (root / "png" / phase / n).mkdir(parents=True)
        for i, (img, label) in enumerate(zip(xs, ys)):
            assert cv2.imwrite(str(root / "png" / phase / names[label] / f"{i:05d}.png"), img)  # FA-20's order
    calls = []
    real = image_store.decode_resize
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(image_store, "decode_resize",
                   lambda path, size=256, channels=3: calls.append(Path(path)) or real(path, size, channels))
        wdir = add_dataset(root / "work", NAME, root / "png")
        decoded = len(calls)
        groups = root / "groups.csv"
        groups.write_text("".join(f"{n},{'1-natural' if k == 'natural' else '2-man-made'}\n"
                                  for n, k in zip(names, data.kinds)))
        user = {"random0": prepare_user_split(root / "work", NAME, "random", seed=0),
                "all": prepare_user_split(root / "work", NAME, "whole"),
                "natman": prepare_user_split(root / "work", NAME, "natman", groups=groups),
                "small0k5": prepare_user_split(root / "work", NAME, "small", seed=0, per_class=5)}
        assert add_dataset(root / "work", NAME, root / "png") == wdir  # a finished store is reused
        split_decodes = len(calls) - decoded
    ref = {"random0": prepare_split(root / "ref", "fa20", 0), "all": prepare_whole(root / "ref", "fa20"),
           "natman": prepare_natman(root / "ref", "fa20"), "small0k5": prepare_small(root / "ref", "fa20", 0, 5)}
    return {"root": root, "data": data, "names": names, "wdir": wdir, "user": user, "ref": ref,
            "decoded": decoded, "split_decodes": split_decodes}


def test_every_image_decoded_once_into_the_store(exported):
    assert exported["decoded"] == 20 * fa20.PER_CLASS and exported["split_decodes"] == 0
    meta = json.loads((exported["wdir"] / "dataset.json").read_text())
    assert meta["shape"] == [1, 28, 28] and meta["net"] == "small" and meta["layout"] == "train/val"
    assert "image of none of the 20 classes is above 64 px" in meta["probe"]["net_rule"]
    assert meta["class_names"] == exported["names"] and meta["bad_images"]["count"] == 0
    assert meta["class_counts"]["train"] == {n: fa20.TRAIN_PER_CLASS for n in exported["names"]}
    assert meta["class_counts"]["val"] == {n: fa20.VAL_PER_CLASS for n in exported["names"]}
    assert meta["probe"]["sizes"] == {"28x28": 20 * fa20.PER_CLASS} and meta["probe"]["grey"] == 20 * fa20.PER_CLASS


def test_profile_json_is_the_user_profile(exported):
    record = json.loads((exported["wdir"] / PROFILE_FILE).read_text())
    assert record["name"] == NAME and record["image_shape"] == [1, 28, 28]
    assert record["net_template"] == "prototxt/fa20_caffenet.prototxt"
    assert record["extra"]["class_names"] == exported["names"] and record["extra"]["val_fraction"] is None
    assert record["extra"]["source"] == str((exported["root"] / "png").resolve())
    assert NAME in load_user_profiles(exported["root"] / "work")
    assert profile(NAME).image_shape == (1, 28, 28) and profile(NAME).extra["net"] == "small"


def _multiset(path: Path) -> Counter:
    """Counter of (label, pixel bytes) of an LMDB's records."""
    images, labels = read_datum_lmdb(path)
    return Counter((int(lab), img.tobytes()) for img, lab in zip(images, labels))


@pytest.mark.parametrize("split", ["random0", "all", "natman", "small0k5"])
def test_split_lmdbs_equal_the_embedded_fa20s(exported, split):
    sdir, rdir = exported["user"][split], exported["ref"][split]
    assert sdir == exported["root"] / "work" / NAME / split
    mine, theirs = (json.loads((d / "manifest.json").read_text()) for d in (sdir, rdir))
    assert mine["split"]["halves"] == theirs["split"]["halves"]
    to_fa20 = dict(zip(exported["names"], exported["data"].class_names))
    meta = json.loads((sdir / "split.json").read_text())
    assert {h: [to_fa20[n] for n in ns] for h, ns in meta["class_names"].items()} == \
        json.loads((rdir / "split.json").read_text())["class_names"]
    assert meta["dataset"] == NAME and mine["dataset"] == NAME
    lmdbs = [rel for rel in theirs["files"] if rel.endswith("_lmdb")]
    assert sorted(rel for rel in mine["files"] if rel.endswith("_lmdb")) == sorted(lmdbs)
    for rel in lmdbs:
        a, b = mine["files"][rel], theirs["files"][rel]
        assert (a["half"], a["phase"], a["records"]) == (b["half"], b["phase"], b["records"])
        assert (a["label_min"], a["label_max"], a["skipped_bad"]) == (b["label_min"], b["label_max"], 0)
        assert (a["channels"], a["height"], a["width"]) == (1, 28, 28)
        assert _multiset(sdir / rel) == _multiset(rdir / rel), rel
    for half in mine["split"]["halves"]:
        rel = f"data/{half}_mean.binaryproto"
        assert (read_mean(sdir / rel) == read_mean(rdir / rel)).all()
    assert len(verify_split(sdir, full=True)) == len(mine["files"])


def test_natman_from_groups_file(exported):
    meta = json.loads((exported["user"]["natman"] / "split.json").read_text())
    assert meta["kinds"] == {"A": ["1-natural"] * 10, "B": ["2-man-made"] * 10}
    assert meta["halves"] == {"A": list(range(10, 20)), "B": list(range(10))}


def test_rerun_is_a_noop_and_a_moved_source_still_splits(exported, tmp_path):
    work, png = tmp_path / "work", exported["root"] / "png"
    shutil.copytree(exported["root"] / "work" / NAME / "dataset", work / NAME / "dataset")
    png.rename(tmp_path / "moved")
    try:
        sdir = prepare_user_split(work, NAME, "random", seed=1)  # the store alone is enough: no image is read
    finally:
        (tmp_path / "moved").rename(png)
    man = json.loads((sdir / "manifest.json").read_text())
    assert man["split"]["seed"] == 1 and man["files"]["data/A_train_lmdb"]["records"] == 10 * fa20.TRAIN_PER_CLASS
    mtime = (sdir / "data" / "A_train_lmdb" / "data.mdb").stat().st_mtime_ns
    prepare_user_split(work, NAME, "random", seed=1)
    assert (sdir / "data" / "A_train_lmdb" / "data.mdb").stat().st_mtime_ns == mtime
