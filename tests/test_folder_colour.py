"""A colour user dataset from one folder tree: held-out val, mixed formats and channels, every protocol's split.

Tiles of scikit-image's photographs (one photograph per class, JPEG, PNG, BMP
and TIFF, colour and grey, two sizes, one undecodable file) added with
`add_dataset(val_fraction=0.25)`, then the random, whole, reduced and natman
(groups file) splits, each checked record by record against an independent
decode and with `verify_split(full=True)`. Also NET=caffenet, the default for
larger images. Real OpenCV, lmdb and compute_image_mean.
"""
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import image_store
from data_prep.folder import add_dataset, prepare_user_split
from data_prep.folder_tree import read_tree
from data_prep.verify import verify_split
from kitcore.errors import KitError

from folder_trees import (
    BROKEN,
    PER_CLASS,
    PHOTOS,
    TILE,
    pattern_tree,
    photo_tree,
    records,
    registry_restored,  # noqa: F401  (autouse)
)

NAME = "tiles"
PROTOCOLS = [("random", {"seed": 0}), ("whole", {}), ("reduced", {"per_class": 2}), ("natman", {})]
GROUPS = {"astronaut": "earth", "chelsea": "earth", "coffee": "earth", "rocket": "space", "hubble_deep_field": "space"}


def expected_pixels(path: Path, hw: tuple[int, int]) -> np.ndarray:
    """The stored pixels, computed here: imread colour (BGR), bilinear resize to hw, C x H x W."""
    return cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), hw[::-1],
                      interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """The photo-tile tree added (decodes counted) and its four splits."""
    root = tmp_path_factory.mktemp("tiles")
    good = photo_tree(root / "photos")
    calls = []
    real = image_store.decode_resize
    groups = root / "groups.csv"
    groups.write_text("class,group\n" + "".join(f"{c},{g}\n" for c, g in GROUPS.items()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(image_store, "decode_resize",
                   lambda path, size=256, channels=3: calls.append(Path(path)) or real(path, size, channels))
        wdir = add_dataset(root / "work", NAME, root / "photos", val_fraction=0.25, seed=3)
        decoded = len(calls)
        sdirs = {p: prepare_user_split(root / "work", NAME, p, groups=groups if p == "natman" else None, **kw)
                 for p, kw in PROTOCOLS}
    return {"root": root, "good": good, "wdir": wdir, "sdirs": sdirs, "decoded": decoded,
            "split_decodes": len(calls) - decoded, "meta": json.loads((wdir / "dataset.json").read_text())}


def test_store_shape_counts_and_bad_file(tiles):
    meta, wdir = tiles["meta"], tiles["wdir"]
    assert tiles["decoded"] == len(PHOTOS) * PER_CLASS + 1 and tiles["split_decodes"] == 0
    assert meta["class_names"] == sorted(PHOTOS) and meta["layout"] == "class folders"
    assert (meta["net"], meta["shape"], meta["val_fraction"], meta["seed"]) == ("small", [3, TILE, TILE], 0.25, 3)
    assert meta["probe"]["sizes"] == {f"{TILE}x{TILE}": 45, "36x48": 15} and meta["probe"]["grey"] == 20
    bad = (wdir / "bad_images.txt").read_text().splitlines()
    assert len(bad) == 1 and bad[0].endswith(f"/{PHOTOS[0]}/{BROKEN} undecodable")
    listed = {ph: (wdir / f"{ph}.txt").read_text() for ph in ("train", "val")}
    assert all(BROKEN not in text for text in listed.values())
    for c in PHOTOS:  # 3 of 12 held out (astronaut: 3 of 13, its broken file among them or not)
        n_val = meta["class_counts"]["val"][c]
        assert n_val + meta["class_counts"]["train"][c] == PER_CLASS and n_val in (2, 3)
    assert sum(meta["class_counts"]["val"].values()) == meta["lmdbs"]["val"]["records"]


def test_held_out_val_is_seeded_per_class(tiles):
    one, again = (read_tree(tiles["root"] / "photos", 0.25, 3) for _ in range(2))
    other = read_tree(tiles["root"] / "photos", 0.25, 4)
    assert one.entries == again.entries and one.sha256 == again.sha256
    assert one.entries["val"] != other.entries["val"] and one.sha256 != other.sha256
    for phase in ("train", "val"):
        keys = [k for k, _ in one.entries[phase]]
        assert keys == sorted(keys)
    val = {k for k, _ in one.entries["val"]}
    assert val.isdisjoint(k for k, _ in one.entries["train"])
    assert Counter(k.split("/")[0] for k in val) == {c: 3 for c in PHOTOS}
    with pytest.raises(KitError, match="was built from another tree") as err:
        add_dataset(tiles["root"] / "work", NAME, tiles["root"] / "photos", val_fraction=0.25, seed=4)
    assert "\n" not in str(err.value) and "FORCE=1" in str(err.value)


def test_store_pixels_are_an_independent_decode(tiles):
    wdir, photos = tiles["wdir"], tiles["root"] / "photos"
    for phase in ("train", "val"):
        got = records(wdir / f"{phase}_lmdb")
        assert len(got) == tiles["meta"]["lmdbs"][phase]["records"]
        for key, label, pixels in got:
            assert sorted(PHOTOS)[label] == key.split("/")[0]
            assert np.array_equal(pixels, expected_pixels(photos / key, (TILE, TILE))), key


@pytest.mark.parametrize("protocol", [p for p, _ in PROTOCOLS])
def test_each_protocols_split_is_relabelled_and_verifies(tiles, protocol):
    sdir, wdir = tiles["sdirs"][protocol], tiles["wdir"]
    man = json.loads((sdir / "manifest.json").read_text())
    meta = json.loads((sdir / "split.json").read_text())
    assert sdir.name == {"random": "random0", "whole": "all", "reduced": "reduced2", "natman": "natman"}[protocol]
    whole = {ph: {k: lab for k, lab, _ in records(wdir / f"{ph}_lmdb")} for ph in ("train", "val")}
    halves = man["split"]["halves"]
    assert sorted(c for cs in halves.values() for c in cs) == list(range(len(PHOTOS)))
    for half, labels in halves.items():
        names = meta["class_names"][half]
        assert names == [sorted(PHOTOS)[i] for i in labels]
        for phase in ("train", "val"):
            rel = f"data/{half}_{phase}_lmdb"
            got = records(sdir / rel)
            keys = [k[9:] for k, _, _ in got]
            want = [k for k, lab in whole[phase].items() if lab in labels]
            if protocol == "reduced" and phase == "train":
                want = [k for c in names for k in sorted(k for k in want if k.startswith(c + "/"))[:2]]
            assert sorted(keys) == sorted(want)
            assert all(names[lab] == k.split("/")[0] for k, (_, lab, _) in zip(keys, got))
            entry = man["files"][rel]
            assert (entry["half"], entry["phase"], entry["records"]) == (half, phase, len(want))
            assert entry["label_min"] == 0 and entry["label_max"] == len(labels) - 1
            assert (entry["channels"], entry["height"], entry["width"]) == (3, TILE, TILE)
        assert (sdir / "data" / f"{half}_mean.binaryproto").is_file()
    lines = verify_split(sdir, full=True)
    assert len(lines) == len(man["files"]) and all(ln.startswith("ok ") for ln in lines)
    if protocol == "random":
        assert [len(halves[h]) for h in ("A", "B")] == [len(PHOTOS) // 2, len(PHOTOS) - len(PHOTOS) // 2]
    if protocol == "natman":
        assert meta["halves"]["A"] == [i for i, c in enumerate(sorted(PHOTOS)) if GROUPS[c] == "earth"]
        assert meta["kinds"]["B"] == ["space", "space"]


def test_larger_images_default_to_caffenet_and_small_takes_their_size(tmp_path):
    tree = pattern_tree(tmp_path / "big", ["a", "b", "c", "d"], per_class=3, size=(80, 100))
    cv2.imwrite(str(tree / "b" / "3.png"), np.full((70, 90), 200, np.uint8))  # one grey file, another size
    wdir = add_dataset(tmp_path / "work", "big", tree)
    meta = json.loads((wdir / "dataset.json").read_text())
    assert (meta["net"], meta["shape"]) == ("caffenet", [3, 256, 256])
    assert "of 4 of the 4 classes is above 64 px" in meta["probe"]["net_rule"]
    grey = [p for k, _, p in records(wdir / "train_lmdb") + records(wdir / "val_lmdb") if k == "b/3.png"]
    assert len(grey) == 1 and grey[0].shape == (3, 256, 256) and (grey[0] == 200).all()
    sdir = prepare_user_split(tmp_path / "work", "big", "whole")
    assert len(verify_split(sdir, full=True)) == 4  # split.json, two LMDBs, the mean
    with pytest.raises(KitError, match="was built with NET=caffenet, this command asks for NET=small"):
        add_dataset(tmp_path / "work", "big", tree, net="small")
    add_dataset(tmp_path / "work", "big", tree, net="small", force=True)
    meta = json.loads((wdir / "dataset.json").read_text())
    assert (meta["net"], meta["shape"]) == ("small", [3, 80, 100])  # the most common size, colour
    got = records(wdir / "train_lmdb") + records(wdir / "val_lmdb")
    assert {p.shape for _, _, p in got} == {(3, 80, 100)} and len(got) == 13
    assert json.loads((wdir / "profile.json").read_text())["image_shape"] == [3, 80, 100]


def test_three_identical_channels_count_as_grey(tmp_path):
    tree = pattern_tree(tmp_path / "g", ["a", "b", "c", "d"], per_class=3, grey=True)
    img = cv2.imread(str(tree / "a" / "0.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(tree / "a" / "0.png"), cv2.merge([img, img, img]))
    wdir = add_dataset(tmp_path / "work", "grey", tree, net="small")
    meta = json.loads((wdir / "dataset.json").read_text())
    assert meta["shape"] == [1, 20, 24] and meta["probe"]["grey"] == 12
    stored = [p for k, _, p in records(wdir / "train_lmdb") + records(wdir / "val_lmdb") if k == "a/0.png"]
    assert len(stored) == 1 and np.array_equal(stored[0], img[None])


def test_parallel_decode_gives_the_same_store(tiles, tmp_path):
    wdir = add_dataset(tmp_path / "work", NAME, tiles["root"] / "photos", val_fraction=0.25, seed=3, jobs=2)
    two = json.loads((wdir / "dataset.json").read_text())
    assert two["lmdbs"] == tiles["meta"]["lmdbs"] and two["probe"] == tiles["meta"]["probe"]
    assert (wdir / "bad_images.txt").read_text() == (tiles["wdir"] / "bad_images.txt").read_text()
