"""The mixed split of task distance (issue 36): natman's halves with m classes swapped, drawn with the seed.

FA-20 through data_prep.prepare (real LMDBs and compute_image_mean: m = 0 gives natman's files byte for byte),
ImageNet's lists (the reference's synsets, the kit's WordNet rule), a user's dataset with its groups file, the
protocol's names and grid, and bad input as one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from data_prep import fa20
from data_prep.folder import add_dataset, prepare_user_split
from data_prep.imagenet import prepare_imagenet
from data_prep.natman import GROUPS
from data_prep.prepare import prepare_mix, prepare_natman
from data_prep.splits import mixed_split
from kitcore import layout
from kitcore.errors import KitError
from kitcore.treatments import grid_names, parse

from conftest import ROOT
from folder_trees import pattern_tree, registry_restored  # noqa: F401  (autouse)

FILES = [f"data/{h}_{p}_lmdb/data.mdb" for h in "AB" for p in ("train", "val")] + \
    [f"data/{h}_mean.binaryproto" for h in "AB"]


def kit(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, check=False)


def test_the_protocol_row_its_names_and_its_grid():
    assert layout.split_name("mix", 3, mix=2) == "mix3m2" and layout.split_protocol("mix3m2") == ("mix", 3, None)
    assert layout.split_mix("mix3m2") == 2 and layout.split_mix("random3") is None
    assert grid_names("mix") == ["baseA", "baseB"] + [f"A{n}B{p}" for n in range(1, 8) for p in ("", "+")]
    assert parse("A3B+", "mix").source == "A"
    for bad in ("B3B", "B3A", "randfrozen1"):
        with pytest.raises(KitError, match="mix: baseA, baseB, AnB, AnB"):
            parse(bad, "mix")
    assert layout.train_command("A3B", "fa20", "mix", 3, mix=2) == \
        "make train TREATMENT=A3B DATASET=fa20 PROTOCOL=mix SEED=3 MIX=2"
    assert layout.split_command("fa20", "mix", 3, mix=2) == "make split-mix DATASET=fa20 SEED=3 MIX=2"
    with pytest.raises(KitError, match="is a share"):
        layout.split_name("mix", 0, mix="20%")


@pytest.mark.parametrize("m", range(6))
def test_fa20_halves_keep_their_size_and_take_m_of_the_other_group(m):
    split = mixed_split(fa20.KINDS, GROUPS, 1, m)
    kinds = {h: [fa20.KINDS[c] for c in cs] for h, cs in split.halves.items()}
    assert split.name == f"mix1m{m}" and [len(split.halves[h]) for h in "AB"] == [10, 10]
    assert (kinds["A"].count("natural"), kinds["A"].count("man-made")) == (10 - m, m)
    assert (kinds["B"].count("man-made"), kinds["B"].count("natural")) == (10 - m, m)


def test_the_draw_is_the_authors_seeded_one_repeatable_and_nested():
    natural = [c for c, k in enumerate(fa20.KINDS) if k == "natural"]
    manmade = [c for c, k in enumerate(fa20.KINDS) if k == "man-made"]
    rs = np.random.RandomState([2])
    to_b, to_a = set(rs.choice(natural, 3, replace=False)), set(rs.choice(manmade, 3, replace=False))
    split = mixed_split(fa20.KINDS, GROUPS, 2, 3)
    assert set(split.halves["A"]) == (set(natural) - to_b) | to_a and split.seed == 2
    assert mixed_split(fa20.KINDS, GROUPS, 2, 3) == split
    assert len({mixed_split(fa20.KINDS, GROUPS, s, 3).halves["A"] for s in range(4)}) == 4
    moved = [set(mixed_split(fa20.KINDS, GROUPS, 2, m).halves["A"]) - set(natural) for m in range(6)]
    assert all(a < b for a, b in zip(moved, moved[1:]))  # m + 1 moves m's classes and one more
    assert mixed_split(fa20.KINDS, GROUPS, 2, "30%").name == "mix2m3"
    assert mixed_split(fa20.KINDS, GROUPS, 2, "50%").name == "mix2m5"


def test_fa20_m0_is_natmans_lmdbs_byte_for_byte_and_split_json_records_the_mix(tmp_path):
    natman = prepare_natman(tmp_path / "w", "fa20")
    zero = prepare_mix(tmp_path / "w", "fa20", 3, 0)
    assert zero.name == "mix3m0"
    for rel in FILES:
        assert (zero / rel).read_bytes() == (natman / rel).read_bytes(), rel
    two = prepare_mix(tmp_path / "w", "fa20", 3, 2)
    again = prepare_mix(tmp_path / "w2", "fa20", 3, 2)
    for rel in FILES:
        assert (two / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert (two / FILES[0]).read_bytes() != (zero / FILES[0]).read_bytes()
    meta = json.loads((two / "split.json").read_text())
    assert meta["mix"]["m"] == 2 and meta["mix"]["share"] == 0.2 and meta["mix"]["groups"] == list(GROUPS)
    assert meta["mix"]["A_from_group_2"] == [c for c in meta["halves"]["A"] if fa20.KINDS[c] == "man-made"]
    assert meta["kinds"]["A"].count("man-made") == 2 and meta["kinds"]["B"].count("natural") == 2
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["files"]["data/A_train_lmdb"]["records"] == 10 * fa20.TRAIN_PER_CLASS


@pytest.fixture(scope="module")
def ref_lists(tmp_path_factory, reference_dir):
    """A LISTS folder with the reference's synsets.txt and val.txt and a train.txt of two images per class."""
    d = tmp_path_factory.mktemp("lists")
    for name in ("synsets.txt", "val.txt"):
        (d / name).symlink_to(reference_dir / "ilsvrc12" / name)
    synsets = (d / "synsets.txt").read_text().split()
    (d / "train.txt").write_text("".join(f"{w}/{w}_{j}.JPEG {c}\n" for j in range(2) for c, w in enumerate(synsets)))
    return d


def test_imagenet_lists_mix_the_wordnet_halves(tmp_path, ref_lists, reference_dir):
    natman = prepare_imagenet(tmp_path, ref_lists, "natman")
    zero = prepare_imagenet(tmp_path, ref_lists, "mix", seed=0, mix=0)
    for name in ("A_train.txt", "A_val.txt", "B_train.txt", "B_val.txt"):
        assert (zero / "lists" / name).read_bytes() == (natman / "lists" / name).read_bytes(), name
    sdir = prepare_imagenet(tmp_path, ref_lists, "mix", seed=1, mix="25%")
    assert sdir.name == "mix1m112"  # 25% of the 449 natural classes
    meta = json.loads((sdir / "split.json").read_text())
    nat = {int(x) for x in (reference_dir / "ilsvrc12" / "half_nat_idx.txt").read_text().split()}
    a = set(meta["halves"]["A"])
    assert (len(a), len(meta["halves"]["B"]), len(a & nat), len(a - nat)) == (449, 551, 337, 112)
    assert meta["kinds"]["A"].count("man-made") == 112 and meta["kinds"]["B"].count("natural") == 112
    assert sorted(meta["mix"]["A_from_group_2"]) == sorted(a - nat) and meta["mix"]["group_sizes"] == [449, 551]
    assert len((sdir / "lists" / "A_train.txt").read_text().splitlines()) == 2 * 449
    with pytest.raises(KitError, match="out of range for a half A of 449 classes"):
        prepare_imagenet(tmp_path, ref_lists, "mix", seed=1, mix=225)


def test_a_users_groups_file(tmp_path):
    classes = [f"c{i}" for i in range(8)]
    tree = pattern_tree(tmp_path / "tree", classes, per_class=6, grey=True)
    add_dataset(tmp_path / "w", "pat", tree, val_fraction=0.34)
    groups = tmp_path / "groups.csv"
    groups.write_text("".join(f"{c},{'g1' if i % 2 else 'g2'}\n" for i, c in enumerate(classes)))
    natman = prepare_user_split(tmp_path / "w", "pat", "natman", groups=groups)
    zero = prepare_user_split(tmp_path / "w", "pat", "mix", seed=0, mix=0, groups=groups)
    for rel in FILES:
        assert (zero / rel).read_bytes() == (natman / rel).read_bytes(), rel
    sdir = prepare_user_split(tmp_path / "w", "pat", "mix", seed=0, mix="50%", groups=groups)
    meta = json.loads((sdir / "split.json").read_text())
    assert sdir.name == "mix0m2" and meta["mix"]["groups"] == ["g1", "g2"]
    assert sorted(meta["kinds"]["A"]) == ["g1", "g1", "g2", "g2"] and sorted(meta["kinds"]["B"]) == sorted(
        meta["kinds"]["A"])
    assert json.loads((sdir / "manifest.json").read_text())["split"]["name"] == "mix0m2"
    with pytest.raises(KitError, match="needs groups file"):
        prepare_user_split(tmp_path / "w", "pat", "mix", seed=0, mix=1)
    dry = kit("experiment", "--work", tmp_path / "w", "--dataset", "pat", "--grids", "mix", "--mix", "0,2",
              "--seeds", "0,3", "--groups", groups, "--dry-run")  # make experiment GRIDS=mix: the same splits
    assert dry.returncode == 0, dry.stderr
    assert f"mix0m2         finished  transfer-kit split-mix --work {tmp_path / 'w'} --dataset pat --seed 0 --mix 2 " \
           f"--groups {groups}" in dry.stdout and "mix3m0         to run" in dry.stdout, dry.stdout
    alone = kit("experiment", "--work", tmp_path / "w", "--dataset", "pat", "--grids", "mix", "--mix", "1")
    assert alone.returncode == 2 and "the mix grid of pat needs its two groups of classes" in alone.stderr


def test_groups_must_be_two_and_big_enough():
    with pytest.raises(KitError, match="one group only"):
        mixed_split(["natural"] * 6, GROUPS, 0, 1)
    with pytest.raises(KitError, match="group 2 has 2 classes, too few to give A m = 3"):
        mixed_split(["natural"] * 6 + ["man-made"] * 2, GROUPS, 0, 3)
    with pytest.raises(KitError, match="a third group"):
        mixed_split(["natural", "man-made", "other"], GROUPS, 0, 0)


@pytest.mark.parametrize("args, problem", [
    (("--seed", "0", "--mix", "6"), "mix m = 6 is out of range for a half A of 10 classes"),
    (("--seed", "0", "--mix", "60%"), "more than half of A's classes"),
    (("--seed", "0", "--mix", "two"), "invalid mix 'two'"),
    (("--seed", "0"), "the mix protocol needs m"),
    (("--seed", "0", "--mix", "1", "--groups", "g.csv"), "GROUPS (--groups) is for your own datasets"),
    (("--seed", "-1", "--mix", "1"), "invalid split seed"),
])
def test_bad_split_mix_input_is_one_line(tmp_path, args, problem):
    proc = kit("split-mix", "--work", tmp_path / "w", *args)
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and problem in lines[0] and "; fix: " in lines[0], lines[0]
    assert not (tmp_path / "w" / "fa20").is_dir() or not list((tmp_path / "w" / "fa20").glob("mix*"))


def test_the_grid_takes_m_not_a_share(tmp_path):
    proc = kit("grid", "--work", tmp_path / "w", "--protocol", "mix", "--mix", "20%")
    assert proc.returncode == 2 and "is a share" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = kit("grid", "--work", tmp_path / "w", "--protocol", "mix")
    assert proc.returncode == 2 and "the mix protocol needs m" in proc.stderr, proc.stderr


def test_make_passes_mix_and_groups():
    def dry(*args):
        return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    out = dry("split-mix", "SEED=2", "MIX=3", "GROUPS=/g.csv", "DATASET=pat")
    assert "split-mix --work work --dataset pat --seed 2 --mix '3' --groups '/g.csv'" in out
    out = dry("grid", "PROTOCOL=mix", "SEED=2", "MIX=3")
    assert "--seed 2 --protocol mix" in out and "--mix '3'" in out
    assert "--mix '3'" in dry("train", "PROTOCOL=mix", "TREATMENT=A1B", "MIX=3")
