"""Tests of data_prep.splits: the authors' random split procedure, split.json, label lists."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from data_prep.splits import (
    Split,
    apply_split_to_list,
    idxmap,
    make_random_split,
    random_split,
    read_split_json,
    write_split_json,
)
from kitcore.errors import KitError

VAL_TXT = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ilsvrc12" / "val.txt"


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
