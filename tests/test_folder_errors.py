"""Bad input to a user dataset: each a one-line KitError naming the folder, file or class, and its fix.

Trees are written with real OpenCV; a killed build (dataset.json absent) is
rebuilt, never reused; another tree under the same name needs force.
"""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import image_store
from data_prep.folder import add_dataset, prepare_user_split
from kitcore.errors import KitError

from folder_trees import pattern_tree, records, registry_restored  # noqa: F401  (registry_restored: autouse)

CLASSES = ["ant", "bee", "cat", "dog"]


def one_line(exc_info, *needles: str) -> str:
    """The error's text, checked to be one line holding every needle and a fix."""
    msg = str(exc_info.value)
    assert "\n" not in msg and "; fix: " in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def add(tmp_path: Path, images: Path, **kw) -> Path:
    """add_dataset into tmp_path/work under the name 'mine'."""
    return add_dataset(tmp_path / "work", "mine", images, **kw)


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    """A 4-class dataset from one tree, added once: the work folder."""
    root = tmp_path_factory.mktemp("added")
    add_dataset(root / "work", "mine", pattern_tree(root / "img", CLASSES, per_class=5))
    return root / "work"


def test_missing_images_folder_and_a_file_instead(tmp_path):
    with pytest.raises(KitError) as err:
        add(tmp_path, tmp_path / "nope")
    one_line(err, f"image folder {tmp_path / 'nope'} does not exist", "DIR/<class>/<image>")
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(KitError) as err:
        add(tmp_path, tmp_path / "f.png")
    one_line(err, "is not a folder")
    assert not (tmp_path / "work").exists()


def test_empty_class_folder(tmp_path):
    tree = pattern_tree(tmp_path / "img", CLASSES[:3])
    (tree / "dog").mkdir()
    (tree / "dog" / ".hidden.png").write_bytes(b"x")  # hidden files are not images
    with pytest.raises(KitError) as err:
        add(tmp_path, tree)
    one_line(err, f"class folder {tree / 'dog'} holds no images")


def test_val_class_not_in_train_and_half_a_layout(tmp_path):
    pattern_tree(tmp_path / "img" / "train", CLASSES)
    pattern_tree(tmp_path / "img" / "val", CLASSES + ["eel"])
    with pytest.raises(KitError) as err:
        add(tmp_path, tmp_path / "img")
    one_line(err, "class 'eel' is in", "but not in", str(tmp_path / "img" / "train" / "eel"))
    pattern_tree(tmp_path / "half" / "train", CLASSES)
    with pytest.raises(KitError) as err:
        add(tmp_path, tmp_path / "half")
    one_line(err, "has train/ but no val/")
    (tmp_path / "half" / "val").mkdir()
    with pytest.raises(KitError) as err:
        add(tmp_path, tmp_path / "half")
    one_line(err, "gives no val images")


def test_fewer_than_four_classes(tmp_path):
    tree = pattern_tree(tmp_path / "img", CLASSES[:3])
    (tree / "notes.txt").write_text("a file beside the class folders is ignored\n")
    with pytest.raises(KitError) as err:
        add(tmp_path, tree)
    one_line(err, "has 3 class folders (ant, bee, cat); the kit needs at least 4")


def test_class_names_that_collide_after_case_folding(tmp_path):
    tree = pattern_tree(tmp_path / "img", CLASSES + ["Cat"])
    with pytest.raises(KitError) as err:
        add(tmp_path, tree)
    one_line(err, "'Cat' and 'cat'", "differ only in case")
    pattern_tree(tmp_path / "two" / "train", CLASSES)
    pattern_tree(tmp_path / "two" / "val", ["ANT"] + CLASSES[1:])
    with pytest.raises(KitError) as err:
        add(tmp_path, tmp_path / "two")
    one_line(err, "'ANT' and 'ant'")


def test_undecodable_files_are_left_out_and_a_class_of_them_is_an_error(tmp_path):
    tree = pattern_tree(tmp_path / "img", CLASSES, per_class=5)
    (tree / "ant" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    wdir = add(tmp_path, tree)
    bad = (wdir / "bad_images.txt").read_text().splitlines()
    assert len(bad) == 1 and bad[0].endswith("ant/bad.jpg undecodable")
    keys = [k for ph in ("train", "val") for k, _, _ in records(wdir / f"{ph}_lmdb")]
    assert len(keys) == 20 and "ant/bad.jpg" not in keys
    for j in range(5):
        (tree / "dog" / f"{j}.png").write_bytes(b"no png")
    with pytest.raises(KitError) as err:
        add(tmp_path, tree, force=True)
    one_line(err, "class 'dog': none of its train images could be decoded", str(tree / "dog"))
    assert not (wdir / "dataset.json").exists() and not (wdir / "profile.json").exists()


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.2, True])
def test_invalid_val_fraction(tmp_path, fraction):
    with pytest.raises(KitError) as err:
        add(tmp_path, pattern_tree(tmp_path / "img", CLASSES), val_fraction=fraction)
    one_line(err, f"invalid val fraction {fraction!r}", "--val-fraction")


def test_bad_names_net_and_file_names(tmp_path):
    tree = pattern_tree(tmp_path / "img", CLASSES)
    for name, needle in [("../up", "invalid dataset name '../up'"), ("", "invalid dataset name ''"),
                         ("fa20", "'fa20' is the kit's own"), ("imagenet", "'imagenet' is the kit's own")]:
        with pytest.raises(KitError) as err:
            add_dataset(tmp_path / "work", name, tree)
        one_line(err, needle)
    with pytest.raises(KitError) as err:
        add(tmp_path, tree, net="resnet")
    one_line(err, "unknown NET 'resnet'", "small, caffenet")
    cv2.imwrite(str(tree / "bee" / "x.png "), np.zeros((4, 4), np.uint8))
    with pytest.raises(KitError) as err:
        add(tmp_path, tree)
    one_line(err, "bee/x.png ", "starts or ends with a space")


def test_a_killed_build_is_rebuilt_and_a_finished_one_reused(tmp_path, monkeypatch):
    tree = pattern_tree(tmp_path / "img", CLASSES)
    calls = []
    real = image_store.decode_resize
    monkeypatch.setattr(image_store, "decode_resize",
                        lambda path, size=256, channels=3: calls.append(path) or real(path, size, channels))
    wdir = add(tmp_path, tree)
    assert len(calls) == 12
    add(tmp_path, tree)
    assert len(calls) == 12  # finished: reused
    (wdir / "dataset.json").unlink()  # as if killed before its last write
    with pytest.raises(KitError) as err:
        prepare_user_split(tmp_path / "work", "mine", "whole")
    one_line(err, "dataset 'mine' has not been added", "make dataset DATASET=mine IMAGES=DIR")
    add(tmp_path, tree)
    assert len(calls) == 24 and (wdir / "dataset.json").is_file()


def test_another_tree_under_the_same_name_needs_force(tmp_path):
    wdir = add(tmp_path, pattern_tree(tmp_path / "one", CLASSES))
    other = pattern_tree(tmp_path / "two", CLASSES + ["eel"])
    with pytest.raises(KitError) as err:
        add(tmp_path, other)
    one_line(err, "dataset mine", "was built from another tree", str(other), "FORCE=1")
    add(tmp_path, other, force=True)
    assert json.loads((wdir / "dataset.json").read_text())["class_names"] == CLASSES + ["eel"]


def test_split_arguments(added):
    for kw, needle in [({"protocol": "natman"}, "needs groups file"),
                       ({"protocol": "random", "groups": Path("g.csv")}, "takes no groups file"),
                       ({"protocol": "reduced"}, "the reduced protocol needs k"),
                       ({"protocol": "random", "seed": -1}, "invalid split seed -1"),
                       ({"protocol": "bogus"}, "protocol 'bogus' has no split of mine")]:
        with pytest.raises(KitError) as err:
            prepare_user_split(added, "mine", **kw)
        one_line(err, needle)
    with pytest.raises(KitError) as err:
        prepare_user_split(added, "other", "whole")
    one_line(err, "dataset 'other' has not been added")


@pytest.mark.parametrize("text,needle", [
    ("ant,x\nbee,x\ncat,y\nemu,y\ndog,y\n", "line 4: 'emu' is not a class of mine"),
    ("ant,x\nbee,x\ncat,y\n", "gives no group to 1 classes of mine (e.g. 'dog')"),
    ("ant,x\nbee,y\ncat,z\ndog,z\n", "names 3 groups (x, y, z); the split needs exactly 2"),
    ("ant,x\nant,y\nbee,x\ncat,y\ndog,y\n", "line 2: class 'ant' is listed twice"),
    ("ant,x\nbee,y\ncat,y\ndog,y\n", "group 'x' has fewer than 2 classes"),
    ("ant,x,extra\n", "line 1: expected class,group"),
])
def test_groups_file_errors(added, tmp_path, text, needle):
    (tmp_path / "g.csv").write_text(text)
    with pytest.raises(KitError) as err:
        prepare_user_split(added, "mine", "natman", groups=tmp_path / "g.csv")
    one_line(err, needle, str(tmp_path / "g.csv"))


def test_groups_file_with_header_and_blank_lines(added, tmp_path):
    (tmp_path / "g.csv").write_text("Class,Group\n\nbee, wings\ndog,legs\nant,wings\n cat ,legs\n")
    sdir = prepare_user_split(added, "mine", "natman", groups=tmp_path / "g.csv")
    meta = json.loads((sdir / "split.json").read_text())
    assert meta["halves"] == {"A": [2, 3], "B": [0, 1]} and meta["kinds"] == {"A": ["legs"] * 2, "B": ["wings"] * 2}
    with pytest.raises(KitError) as err:
        prepare_user_split(added, "mine", "natman", groups=tmp_path / "missing.csv")
    one_line(err, "groups file", "does not exist")


def test_a_half_without_val_images(tmp_path):
    pattern_tree(tmp_path / "img" / "train", CLASSES)
    pattern_tree(tmp_path / "img" / "val", CLASSES[:2])  # cat and dog have no val images: allowed, warned
    add(tmp_path, tmp_path / "img")
    (tmp_path / "g.csv").write_text("ant,x\nbee,x\ncat,y\ndog,y\n")
    with pytest.raises(KitError) as err:
        prepare_user_split(tmp_path / "work", "mine", "natman", groups=tmp_path / "g.csv")
    one_line(err, "half B of split natman of mine has no val images (its classes: cat, dog)")
    assert (prepare_user_split(tmp_path / "work", "mine", "whole") / "manifest.json").is_file()
