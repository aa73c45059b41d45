"""Class splits: the authors' random A/B halves, natural/man-made, and the whole-dataset "split".

The authors' procedure (yosinski/convnet_transfer, seeds 0..3):
`np.random.seed([seed])`, then `np.random.choice(arange(K), K//2,
replace=False)`, sorted, is half A; half B is the rest, sorted. Here a private
`np.random.RandomState([seed])` gives the identical stream without touching
numpy's global generator. Within a half, a class's new label is its position
in the sorted half (ascending original label), as in the authors' relabelled
`files.txt` lists.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kitcore.atomic import write_json
from kitcore.layout import split_name
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
