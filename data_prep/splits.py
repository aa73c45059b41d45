"""Class splits: the authors' random A/B halves, natural/man-made, mixed halves, and the whole-dataset "split".

The authors' procedure (yosinski/convnet_transfer, seeds 0..3):
`np.random.seed([seed])`, then `np.random.choice(arange(K), K//2,
replace=False)`, sorted, is half A; half B is the rest, sorted. Here a private
`np.random.RandomState([seed])` gives the identical stream without touching
numpy's global generator. Within a half, a class's new label is its position
in the sorted half (ascending original label), as in the authors' relabelled
`files.txt` lists.

A mixed split `mix<s>m<m>` (task distance as a curve) starts from two groups
of classes (natural / man-made: A and B of `natman`): half A takes group 1's
classes but m of them, which it gives to B for m of group 2's, so both halves
keep their size. Which classes move is drawn as the authors draw a random
split: `RandomState([s])`, then `choice(group 1, m, replace=False)` (to B) and
`choice(group 2, m, replace=False)` (to A). A draw without replacement is a
prefix of one permutation, so a seed's m + 1 moves those of m and one more.
m = 0 is natman's halves; m = |A| // 2 makes A half and half. MIX=P% asks
for the share P of A's classes instead (m = round(P |A| / 100)).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kitcore.atomic import write_json
from kitcore.errors import KitError
from kitcore.layout import parse_mix, split_name
from kitcore.profiles import check_seed  # noqa: F401  (the seeds rule lives with the profiles; re-exported)


def random_split(num_classes: int, seed: int) -> tuple[list[int], list[int]]:
    """Return the authors' random halves (A, B) of range(num_classes) for `seed`, each sorted."""
    seed = check_seed(seed)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    rs = np.random.RandomState([seed])
    chosen = rs.choice(np.arange(num_classes), num_classes // 2, replace=False)
    half_a = sorted(int(c) for c in chosen)
    taken = set(half_a)
    half_b = [c for c in range(num_classes) if c not in taken]
    return half_a, half_b


def idxmap(half_labels: Iterable[int]) -> dict[int, int]:
    """Map original label -> new label (position in the sorted half)."""
    return {int(orig): new for new, orig in enumerate(sorted(int(x) for x in half_labels))}


@dataclass(frozen=True)
class Split:
    """A named partition of a dataset's classes into halves (e.g. A/B, or one half 'all')."""

    name: str
    halves: Mapping[str, tuple[int, ...]]
    num_classes: int
    seed: int | None = None

    def __post_init__(self):
        """Normalise halves to sorted tuples and check they partition range(num_classes)."""
        halves = {str(k): tuple(sorted(int(c) for c in v)) for k, v in self.halves.items()}
        object.__setattr__(self, "halves", halves)
        seen = [c for v in halves.values() for c in v]
        if not halves or sorted(seen) != list(range(self.num_classes)):
            raise ValueError(f"split {self.name}: halves {halves} do not partition range({self.num_classes})")

    def idxmap(self, half: str) -> dict[int, int]:
        """Map original label -> new label within `half`."""
        return idxmap(self.halves[half])

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"name": self.name, "num_classes": self.num_classes, "seed": self.seed,
                "halves": {k: list(v) for k, v in self.halves.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Split:
        """Build from `to_dict` output (extra keys are ignored)."""
        return cls(name=d["name"], halves=d["halves"], num_classes=int(d["num_classes"]), seed=d.get("seed"))

    def to_json(self) -> str:
        """Return the split as JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Split:
        """Parse JSON text written by `to_json` (or a split.json with extra keys)."""
        return cls.from_dict(json.loads(text))


def make_random_split(num_classes: int, seed: int) -> Split:
    """Return the authors' random A/B split as a Split named 'random<seed>'."""
    half_a, half_b = random_split(num_classes, seed)
    return Split(name=split_name("random", int(seed)), halves={"A": half_a, "B": half_b}, num_classes=num_classes,
                 seed=int(seed))


def whole_split(num_classes: int) -> Split:
    """Return the one-half split 'all' holding every class (labels unchanged)."""
    return Split(name=split_name("whole"), halves={"all": list(range(num_classes))}, num_classes=num_classes)


def natman_split(kinds: Iterable[str]) -> Split:
    """Return the natural (A) / man-made (B) split 'natman' from each class's kind.

    A is the natural half, as in the authors' files (the paper's text swaps the
    letters); ImageNet's kinds come from WordNet (data_prep.natman), FA-20's
    from its sources (Fashion-MNIST man-made, Animal-MNIST natural).
    """
    kinds = list(kinds)
    unknown = sorted({k for k in kinds} - {"natural", "man-made"})
    if unknown:
        raise ValueError(f"class kinds must be 'natural' or 'man-made', got {unknown}")
    halves = {"A": [c for c, k in enumerate(kinds) if k == "natural"],
              "B": [c for c, k in enumerate(kinds) if k == "man-made"]}
    if not halves["A"] or not halves["B"]:
        raise ValueError("a natural/man-made split needs classes of both kinds")
    return Split(name=split_name("natman"), halves=halves, num_classes=len(kinds))


def mix_classes(group_1: int, group_2: int, mix) -> int:
    """m of MIX (a count, or a share P% of A's `group_1` classes) for groups of these sizes; KitError when the
    groups are not two, m is out of range or group 2 is too small for it."""
    m = parse_mix(mix)
    if not group_1 or not group_2:
        raise KitError(f"the classes fall in one group only ({group_1} and {group_2} classes): a mixed split "
                       "needs two", "use a dataset whose classes are of two groups (GROUPS=file.csv of class,group "
                       "lines for your own; ImageNet: natural and man-made synsets)")
    top = group_1 // 2
    if isinstance(m, float):  # a share: the nearest count, 50% the largest m
        m = min(int(m * group_1 / 100 + 0.5), top)
    if m > top:
        raise KitError(f"mix m = {m} is out of range for a half A of {group_1} classes",
                       f"pass MIX=0..{top} (MIX={top}: A half and half), or a share MIX=P% with P from 0 to 50")
    if m > group_2:
        raise KitError(f"group 2 has {group_2} classes, too few to give A m = {m}",
                       f"pass MIX={group_2} or less, or put more classes in group 2")
    return m


def mixed_split(kinds: Sequence[str], groups: tuple[str, str], seed: int, mix) -> Split:
    """The mixed split mix<seed>m<m> of classes whose group is `kinds[label]`: A = group groups[0] with m of
    its classes swapped for m of group groups[1] (drawn with the seed, see the module docstring), B the rest."""
    seed = check_seed(seed)
    one = [c for c, k in enumerate(kinds) if k == groups[0]]
    two = [c for c, k in enumerate(kinds) if k == groups[1]]
    if len(one) + len(two) != len(kinds):
        others = sorted(set(kinds) - set(groups))
        raise KitError(f"classes of a third group {others[0]!r} beside {groups[0]!r} and {groups[1]!r}",
                       "give every class one of two groups")
    m = mix_classes(len(one), len(two), mix)
    rs = np.random.RandomState([seed])
    to_b = {int(c) for c in rs.choice(np.array(one), m, replace=False)} if m else set()
    to_a = {int(c) for c in rs.choice(np.array(two), m, replace=False)} if m else set()
    halves = {"A": [c for c in one if c not in to_b] + sorted(to_a),
              "B": [c for c in two if c not in to_a] + sorted(to_b)}
    return Split(name=split_name("mix", seed, mix=m), halves=halves, num_classes=len(kinds), seed=seed)


def mix_record(split: Split, kinds: Sequence[str], groups: tuple[str, str]) -> dict[str, Any]:
    """split.json's `mix` of a mixed split: m, A's share from group 2, the groups and their sizes, and the
    classes each half holds of the other half's group."""
    a_from_2 = [c for c in split.halves["A"] if kinds[c] == groups[1]]
    b_from_1 = [c for c in split.halves["B"] if kinds[c] == groups[0]]
    return {"m": len(a_from_2), "share": len(a_from_2) / len(split.halves["A"]), "seed": split.seed,
            "groups": list(groups), "group_sizes": [sum(k == g for k in kinds) for g in groups],
            "A_from_group_2": a_from_2, "B_from_group_1": b_from_1}


def write_split_json(path: Path, split: Split, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `split` (plus optional extra keys) as JSON to `path` atomically."""
    return write_json(Path(path), {**split.to_dict(), **(extra or {})}, sort_keys=False)


def read_split_json(path: Path) -> Split:
    """Read a Split from a split.json file."""
    return Split.from_json(Path(path).read_text())


def apply_split_to_list(lines_or_path: os.PathLike | Iterable[str], half_labels: Iterable[int]) -> str:
    """Keep `FILENAME LABEL` lines whose label is in the half, in order, relabelled; return the text."""
    if isinstance(lines_or_path, str):
        raise TypeError("pass a pathlib.Path for a file, or a list of lines (a bare str is ambiguous)")
    if isinstance(lines_or_path, os.PathLike):
        lines: Iterable[str] = Path(lines_or_path).read_text().splitlines()
    else:
        lines = lines_or_path
    mapping = idxmap(half_labels)
    out = []
    for num, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"line {num}: expected 'FILENAME LABEL', got {line!r}")
        new = mapping.get(int(parts[1]))
        if new is not None:
            out.append(f"{parts[0]} {new}\n")
    return "".join(out)
