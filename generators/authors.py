"""The authors' run-folder names (yosinski/convnet_transfer) mapped to the kit's treatments.

| authors' run name              | kit protocol | kit split   | kit treatment   |
|--------------------------------|--------------|-------------|-----------------|
| `half{s}A`, `half{s}B`         | random       | random{s}   | baseA, baseB    |
| `transfer{s}X{s}Y_1_{n}`       | random       | random{s}   | XnY             |
| `transfer-ft{s}X{s}Y_1_{n}`    | random       | random{s}   | XnY+            |
| `halfnatmanA`, `halfnatmanB`   | natman       | natman      | baseA, baseB    |
| `transfernatmanXY_1_{n}`       | natman       | natman      | XnY             |
| `transfer-ftnatmanXY_1_{n}`    | natman       | natman      | XnY+ (the authors ran none) |
| `netbase`                      | whole        | all         | base            |
| `nolearn_1_{n}`                | whole        | all         | randfrozen{n}   |
| `reduced-{NNNN}`               | reduced      | reduced{k}  | base            |

In the authors' natman names A is the natural half (449 classes) and B the
man-made half (551); the paper's text swapped the letters. The kit keeps the
authors' letters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from generators.netgen import PAPER_SOLVER, PAPER_SOLVERS
from generators.treatments import ALL, Treatment, parse
from kitcore.errors import KitError

ILSVRC_CLASSES = 1000
NATMAN_CLASSES = {"A": 449, "B": 551}  # A natural, B man-made (the authors' letters)
REDUCED_PER_CLASS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 750, 1000, 1300)

_HALF = re.compile(r"^half(?P<split>[0-9]|natman)(?P<target>[AB])$")
_TRANSFER = re.compile(r"^transfer(?P<ft>-ft)?(?:(?P<s1>[0-9])(?P<x>[AB])(?P<s2>[0-9])(?P<y>[AB])"
                       r"|natman(?P<nx>[AB])(?P<ny>[AB]))_1_(?P<n>[1-7])$")
_NOLEARN = re.compile(r"^nolearn_1_(?P<n>[1-7])$")
_REDUCED = re.compile(r"^reduced-(?P<k>[0-9]{4})$")


@dataclass(frozen=True)
class AuthorsRun:
    """One authors' run name read as the kit's protocol, split folder name and treatment."""

    run_name: str
    protocol: str
    split: str
    treatment: Treatment

    @property
    def num_classes(self) -> int:
        """Class count of the target the run trains on."""
        if self.protocol == "random":
            return ILSVRC_CLASSES // 2
        if self.protocol == "natman":
            return NATMAN_CLASSES[self.treatment.target]
        return ILSVRC_CLASSES

    @property
    def solver_template(self) -> str:
        """The kit's solver template for this run (relative to the kit's root)."""
        return PAPER_SOLVERS.get(self.protocol, PAPER_SOLVER)


def _bad(name: str) -> KitError:
    return KitError(f"{name!r} is not one of the authors' run names",
                    "use a folder named like half0A, halfnatmanB, transfer0A0B_1_3, transfer-ft1B1A_1_7, "
                    "transfernatmanAB_1_2, nolearn_1_4, netbase or reduced-0010")


def parse_run_name(name: str) -> AuthorsRun:
    """Read an authors' run-folder name (e.g. 'transfer-ft0A0B_1_3') as the kit's treatment."""
    if m := _HALF.match(name):
        protocol = "natman" if m["split"] == "natman" else "random"
        split = "natman" if protocol == "natman" else f"random{m['split']}"
        return AuthorsRun(name, protocol, split, parse(f"base{m['target']}", protocol))
    if m := _TRANSFER.match(name):
        plus = "+" if m["ft"] else ""
        if m["nx"]:
            if m["nx"] == m["ny"]:
                raise _bad(name)
            return AuthorsRun(name, "natman", "natman", parse(f"{m['nx']}{m['n']}{m['ny']}{plus}", "natman"))
        if m["s1"] != m["s2"]:
            raise _bad(name)
        return AuthorsRun(name, "random", f"random{m['s1']}", parse(f"{m['x']}{m['n']}{m['y']}{plus}", "random"))
    if m := _NOLEARN.match(name):
        return AuthorsRun(name, "whole", ALL, parse(f"randfrozen{m['n']}", "whole"))
    if name == "netbase":
        return AuthorsRun(name, "whole", ALL, parse("base", "whole"))
    if (m := _REDUCED.match(name)) and int(m["k"]) in REDUCED_PER_CLASS:
        return AuthorsRun(name, "reduced", f"reduced{int(m['k'])}", parse("base", "reduced"))
    raise _bad(name)
