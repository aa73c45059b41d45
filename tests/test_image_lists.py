"""ImageNet lists: the authors' random split on the real val.txt (md5s), natman, reduced, bad LISTS."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.image_lists import first_per_class, load_lists
from data_prep.imagenet import prepare_imagenet
from data_prep.imagenet_synth import make_synthetic_ilsvrc
from kitcore.errors import KitError
from runner.cli import main

from conftest import ROOT

MD5_SEED0 = {"A_val.txt": "2f10009e20d77eb7007cf70674958b94", "B_val.txt": "cce39b383d681345c873faf2c0c28d33"}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ref_lists(tmp_path_factory, reference_dir):
    """A LISTS folder with the real synsets.txt and val.txt (linked, not copied) and a small train.txt."""
    d = tmp_path_factory.mktemp("lists")
    il = reference_dir / "ilsvrc12"
    assert md5(il / "val.txt") == "b6284a7c08fba47457c2c1f6049a156e"
    for name in ("synsets.txt", "val.txt"):
        (d / name).symlink_to(il / name)
    synsets = (il / "synsets.txt").read_text().split()
    # three images per class, classes interleaved, as a list in ILSVRC's path form
    (d / "train.txt").write_text("".join(f"{w}/{w}_{j}.JPEG {c}\n" for j in range(3) for c, w in enumerate(synsets)))
    return d


def test_split_random_seed0_matches_the_authors_md5(tmp_path, ref_lists):
    assert main(["split-random", "--dataset", "imagenet", "--seed", "0", "--lists", str(ref_lists),
                 "--work", str(tmp_path)]) == 0
    sdir = tmp_path / "imagenet" / "random0"
    for name, digest in MD5_SEED0.items():
        assert md5(sdir / "lists" / name) == digest, name
    meta = json.loads((sdir / "split.json").read_text())
    assert meta["name"] == "random0" and meta["seed"] == 0 and len(meta["halves"]["A"]) == 500
    assert meta["idxmap"]["A"][str(meta["halves"]["A"][0])] == 0
    train_a = (sdir / "lists" / "A_train.txt").read_text().splitlines()
    assert len(train_a) == 1500 and train_a[0].endswith(" 0")
    assert not (sdir / "manifest.json").exists(), "without --images no LMDB is built"


def test_split_natural_names_the_natural_half_a(tmp_path, ref_lists, reference_dir):
    sdir = prepare_imagenet(tmp_path, ref_lists, "natman")
    meta = json.loads((sdir / "split.json").read_text())
    nat = [int(x) for x in (reference_dir / "ilsvrc12" / "half_nat_idx.txt").read_text().split()]
    assert sdir.name == "natman" and meta["halves"]["A"] == sorted(nat)
    assert set(meta["kinds"]["A"]) == {"natural"} and set(meta["kinds"]["B"]) == {"man-made"}
    assert len((sdir / "lists" / "A_train.txt").read_text().splitlines()) == 3 * 449
    val_b = (sdir / "lists" / "B_val.txt").read_text().splitlines()
    assert len(val_b) == 551 * 50 and {int(ln.split()[1]) for ln in val_b} == set(range(551))


def test_split_reduced_first_k_per_class_in_list_order(tmp_path):
    _images, lists = make_synthetic_ilsvrc(tmp_path / "src", train_per_class=5, val_per_class=1)
    sdir = prepare_imagenet(tmp_path / "work", lists, "reduced", per_class=2)
    assert sdir.name == "reduced2"
    train = (lists / "train.txt").read_text().splitlines()
    got = (sdir / "lists" / "all_train.txt").read_text().splitlines()
    expected, seen = [], {}
    for line in train:  # independent: the first two lines of each label, in the input's order
        label = line.split()[1]
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= 2:
            expected.append(line)
    assert got == expected and len(got) == 12 and got != train[:12]
    assert (sdir / "lists" / "all_val.txt").read_text() == (lists / "val.txt").read_text()
    assert first_per_class([("a", 0), ("b", 1), ("c", 0), ("d", 0)], 2) == [("a", 0), ("b", 1), ("c", 0)]


def test_split_small_cuts_only_b_train_list(tmp_path):
    _images, lists = make_synthetic_ilsvrc(tmp_path / "src", train_per_class=5, val_per_class=1)
    sdir = prepare_imagenet(tmp_path / "work", lists, "small", seed=1, per_class=2)
    full = prepare_imagenet(tmp_path / "work", lists, "random", seed=1)
    assert sdir.name == "small1k2"
    for name in ("A_train.txt", "A_val.txt", "B_val.txt"):
        assert (sdir / "lists" / name).read_text() == (full / "lists" / name).read_text(), name
    b_full = (full / "lists" / "B_train.txt").read_text().splitlines()
    b_small = (sdir / "lists" / "B_train.txt").read_text().splitlines()
    expected, seen = [], {}
    for line in b_full:
        label = line.split()[1]
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= 2:
            expected.append(line)
    assert b_small == expected and len(b_small) == 2 * len(seen)
    meta = json.loads((sdir / "split.json").read_text())
    assert (meta["per_class"], meta["cut_halves"], meta["uncut_per_class"]) == (2, ["B"], {"B": [5, 5]})
    assert meta["halves"] == json.loads((full / "split.json").read_text())["halves"]


def test_changed_lists_after_the_lmdbs_need_force(tmp_path):
    images, lists = make_synthetic_ilsvrc(tmp_path / "src", train_per_class=2, val_per_class=1)
    sdir = prepare_imagenet(tmp_path / "work", lists, "random", seed=1, images=images)
    before = (sdir / "manifest.json").read_text()
    text = (lists / "val.txt").read_text().splitlines(True)
    (lists / "val.txt").write_text("".join(text[:-1]))
    with pytest.raises(KitError, match="prepared from other lists"):
        prepare_imagenet(tmp_path / "work", lists, "random", seed=1)
    assert (sdir / "manifest.json").read_text() == before
    with pytest.raises(KitError, match="built from other lists"):  # the whole set does not match either
        prepare_imagenet(tmp_path / "work", lists, "random", seed=1, images=images, force=True)


@pytest.mark.parametrize("files, problem", [
    ({"train.txt": None}, "train.txt is missing"),
    ({"val.txt": "a.JPEG 0\nb.JPEG\n"}, "val.txt line 2: expected 'FILE LABEL', got 'b.JPEG'"),
    ({"val.txt": "a.JPEG 0\nb.JPEG 7\n"}, "val.txt line 2: label 7 is outside synsets.txt's 0..2"),
    ({"val.txt": "a.JPEG 0\nb.JPEG -1\n"}, "expected 'FILE LABEL'"),
    ({"val.txt": "a.JPEG 0\na.JPEG 1\n"}, "a.JPEG is listed twice"),
    ({"val.txt": ""}, "val.txt lists no images"),
    ({"synsets.txt": "n01440764\nfish\n"}, "synsets.txt line 2: expected a WordNet id"),
    ({"synsets.txt": "n01440764\nn01440764\n"}, "at least 2 distinct synsets"),
])
def test_bad_lists_are_one_line_errors(tmp_path, files, problem):
    good = {"synsets.txt": "n01440764\nn01443537\nn02690373\n", "train.txt": "n01440764/x.JPEG 0\n",
            "val.txt": "v1.JPEG 2\n"}
    for name, text in {**good, **files}.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    with pytest.raises(KitError, match=problem) as err:
        load_lists(tmp_path)
    assert "\n" not in str(err.value) and "synsets.txt, train.txt and val.txt" in err.value.fix


def kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)


@pytest.mark.parametrize("args, problem", [
    (["split-random", "--dataset", "imagenet", "--lists", "/nonexistent"], "LISTS folder /nonexistent does not exist"),
    (["split-random", "--dataset", "imagenet"], "needs the list folder"),
    (["split-natural", "--dataset", "fa20", "--lists", "x"], "--lists/--images are for --dataset imagenet"),
    (["split-reduced", "--dataset", "fa20", "--lists", "x"], "split-reduced is for ImageNet only"),
    (["split-reduced", "--lists", "x"], "the reduced protocol needs k"),
    (["split-random", "--lists", "x"], "--lists/--images are for --dataset imagenet"),
])
def test_cli_errors_are_one_line(tmp_path, args, problem):
    proc = kit(*args, "--work", str(tmp_path / "w"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and problem in lines[0] and "; fix: " in lines[0]
    assert not (tmp_path / "w").exists()


def test_make_passes_the_imagenet_variables():
    out = subprocess.run(["make", "-n", "split-reduced", "PERCLASS=5", "LISTS=/l", "IMAGES=/i", "JOBS=3",
                          "WORK=/w"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "split-reduced --work /w  --per-class '5' --lists '/l' --images '/i' --jobs 3" in out
    out = subprocess.run(["make", "-n", "split-random", "DATASET=imagenet", "SEED=2", "LISTS=/l"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "split-random --work work --dataset imagenet --seed 2" in out and "--lists '/l'" in out


def test_cli_builds_lmdbs_with_images(tmp_path):
    images, lists = make_synthetic_ilsvrc(tmp_path / "src", train_per_class=2, val_per_class=1, bad=True)
    proc = kit("split-natural", "--lists", str(lists), "--images", str(images), "--work", str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    sdir = tmp_path / "w" / "imagenet" / "natman"
    assert proc.stdout.strip() == f"split ready: {sdir}"
    assert "2 listed images are missing or undecodable" in proc.stderr
    man = json.loads((sdir / "manifest.json").read_text())
    assert set(man["files"]) == {"split.json", "data/A_mean.binaryproto", "data/B_mean.binaryproto",
                                 *(f"data/{h}_{p}_lmdb" for h in "AB" for p in ("train", "val"))}
