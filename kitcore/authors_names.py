"""The authors' run-folder names (yosinski/convnet_transfer `results/`) read as the kit's names, in one place.

analysis/original.py (importing the authors' logs) and generators/authors.py
(building the kit's net for one of their folders) both read names here, so the
two cannot disagree on which folder is which run.

| authors' run name             | protocol | split (kitcore.layout) | treatment       | kind           |
|-------------------------------|----------|------------------------|-----------------|----------------|
| `half{s}A`, `half{s}B`        | random   | `random{s}`            | `baseA`, `baseB`| base           |
| `transfer{s}X{s}Y_1_{n}`      | random   | `random{s}`            | `XnY`           | transfer       |
| `transfer-ft{s}X{s}Y_1_{n}`   | random   | `random{s}`            | `XnY+`          | transfer       |
| `halfnatmanA`, `halfnatmanB`  | natman   | `natman`               | `baseA`, `baseB`| base           |
| `transfernatmanXY_1_{n}`      | natman   | `natman`               | `XnY`, X != Y   | transfer       |
| `transfer-ftnatmanXY_1_{n}`   | natman   | `natman`               | `XnY+`, X != Y  | transfer       |
| `netbase`                     | whole    | `all`                  | `base`          | base           |
| `nolearn_1_{n}`               | whole    | `all`                  | `randfrozen{n}` | random-weights |
| `reduced-{NNNN}`              | reduced  | `reduced{k}`, k = int(NNNN) | `base`     | base           |

Each field ranges over the values the authors used (their 170 names,
../shared/reference/original_runs/ALL_RUNS.txt): seeds s in 0..3 (their
README), halves X, Y in A, B, layers n in 1..7, the natman transfers only
between the two halves (AB, BA: the kit's natman protocol has no selffers),
and k one of REDUCED_PER_CLASS. Fields combine freely: `transfer-ft2B2A_1_5`
and `transfer0B0B_1_3` are in the grammar though the authors ran neither, as is
`transfer-ftnatmanAB_1_3` (they fine-tuned no natman transfer). Anything else
(`reduced-0003`, `transfernatmanAA_1_1`, `half4A`, `transfer0A1B_1_3`) is
not one of their names. On split `natman` the letters are the authors': A is
the natural half (449 classes), B the man-made half (551); the paper's text
swapped them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from kitcore.errors import KitError
from kitcore.layout import AUTHORS_PER_CLASS, split_name
from kitcore.treatments import Treatment, parse

SEEDS = "0123"  # the authors' random splits
REDUCED_PER_CLASS = AUTHORS_PER_CLASS  # their reduced-{NNNN} runs

_HALF = re.compile(r"half(?:(?P<s>[0-3])|natman)(?P<y>[AB])")
_TRANSFER = re.compile(r"transfer(?P<ft>-ft)?(?:(?P<s>[0-3])(?P<x>[AB])(?P=s)(?P<y>[AB])"
                       r"|natman(?P<nx>AB|BA))_1_(?P<n>[1-7])")
_NOLEARN = re.compile(r"nolearn_1_(?P<n>[1-7])")
_REDUCED = re.compile(r"reduced-(?P<k>[0-9]{4})")


@dataclass(frozen=True)
class AuthorsName:
    """One of the authors' run names read as the kit's split folder and Treatment (kitcore.treatments)."""

    run_name: str
    split: str                    # the kit's split folder name (kitcore.layout.split_name)
    treatment: Treatment          # protocol, kind, source, target, n, finetune
    images_per_class: int | None = None  # a reduced run's k

    @property
    def protocol(self) -> str:
        """random, natman, whole or reduced."""
        return self.treatment.protocol


def _read(name: str, protocol: str, treatment: str, seed: int = 0, per_class: int | None = None) -> AuthorsName:
    return AuthorsName(name, split_name(protocol, seed, per_class), parse(treatment, protocol), per_class)


def parse_authors_name(name: str) -> AuthorsName | None:
    """The kit's reading of one of the authors' run names; None when it is not one of theirs."""
    if m := _HALF.fullmatch(name):
        return _read(name, "random" if m["s"] else "natman", f"base{m['y']}", int(m["s"] or 0))
    if m := _TRANSFER.fullmatch(name):
        x, y = m["nx"] if m["nx"] else (m["x"], m["y"])
        return _read(name, "natman" if m["nx"] else "random", f"{x}{m['n']}{y}{'+' * bool(m['ft'])}",
                     int(m["s"] or 0))
    if m := _NOLEARN.fullmatch(name):
        return _read(name, "whole", f"randfrozen{m['n']}")
    if name == "netbase":
        return _read(name, "whole", "base")
    if (m := _REDUCED.fullmatch(name)) and int(m["k"]) in REDUCED_PER_CLASS:
        return _read(name, "reduced", "base", per_class=int(m["k"]))
    return None


def read_authors_name(name: str) -> AuthorsName:
    """Like parse_authors_name, but a name that is not one of the authors' is a KitError."""
    parsed = parse_authors_name(name)
    if parsed is None:
        raise KitError(f"{name!r} is not one of the authors' run names",
                       "use a folder named like half0A, halfnatmanB, transfer0A0B_1_3, transfer-ft1B1A_1_7, "
                       "transfernatmanAB_1_2, nolearn_1_4, netbase or reduced-0010 (seeds 0-3, n 1-7, "
                       f"k in {', '.join(map(str, REDUCED_PER_CLASS))})")
    return parsed
