"""Treatment names of the paper (baseA, A3B, B5B+, randfrozen3, ...) parsed into a small value.

A treatment says which half a net is trained on (the target), and for a transfer
which base net the first n weight layers come from (the source) and whether
they stay frozen (`AnB`) or are fine-tuned (`AnB+`). The registry lists every
valid name of a protocol; a bad name is an error that lists them.

Protocols (the split a protocol trains on is chosen by the runner):

| protocol | split folder      | names                                                  |
|----------|-------------------|--------------------------------------------------------|
| random   | random{s}         | baseA, baseB, XnY, XnY+ (X, Y in A, B; n in 1..7)       |
| natman   | natman            | baseA, baseB, AnB, BnA, AnB+, BnA+ (A natural, B man-made) |
| whole    | all               | base (all classes), randfrozen{n} (n in 1..7)          |
| reduced  | reduced{k}        | base (all classes, k training images per class)        |
| small    | small{s}k{k}      | baseA (all of A), baseB, BnB, BnB+, AnB, AnB+ (B: its first k train images per class) |
| mix      | mix{s}m{m}        | baseA, baseB, AnB, AnB+ (A: group 1 but m classes of group 2; B the rest) |

`baseA2x`, `baseB2x` (random protocol; EXTRA_NAMES, outside every grid unit)
are the base nets trained for twice the solver's iterations, its schedule
stretched as `--iters` stretches it: as long as a transfer's base and the
transfer together (the reviewer's control for "longer training").
`randfrozen{n}` is the authors' `nolearn_1_{n}`: the first n layers stay at
their random (seeded filler) initialisation and are frozen; the net trains on
all classes. kitcore/authors_names.py reads every authors' run name as one of these.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from kitcore.errors import KitError
from kitcore.layout import PROTOCOLS as TABLE
from kitcore.layout import protocol_spec

NUM_WEIGHT_LAYERS = 8
HALVES = ("A", "B")
ALL = "all"  # the one 'half' of the whole-dataset and reduced splits
PROTOCOLS = tuple(TABLE)  # kitcore.layout's protocol table: random, natman, whole, reduced, small, mix

_BASE = re.compile(r"^base(?P<target>[AB])$")
_BASE2X = re.compile(r"^base(?P<target>[AB])2x$")
EXTRA_NAMES = ("baseA2x", "baseB2x")  # random protocol, outside every grid unit: a base trained twice as long
_TRANSFER = re.compile(r"^(?P<source>[AB])(?P<n>[1-7])(?P<target>[AB])(?P<plus>\+?)$")
_RANDFROZEN = re.compile(r"^randfrozen(?P<n>[1-7])$")


@dataclass(frozen=True)
class Treatment:
    """One treatment: a base net, n layers of base `source` moved to `target`, or n random frozen layers."""

    name: str
    target: str
    source: str | None = None
    n: int = 0
    finetune: bool = False
    random_weights: bool = False
    protocol: str = "random"
    budget: int = 1  # times the solver's iterations: baseB2x trains as long as a transfer's base and itself together

    @property
    def kind(self) -> str:
        """'base', 'transfer' or 'random-weights'."""
        if self.random_weights:
            return "random-weights"
        return "base" if self.source is None else "transfer"

    @property
    def selffer(self) -> bool:
        """True when the layers come from the target's own base net (BnB, AnA)."""
        return self.source == self.target

    @property
    def base_name(self) -> str | None:
        """Name of the base treatment whose model this one starts from."""
        return None if self.source is None else f"base{self.source}"

    def frozen(self, layer_index: int) -> bool:
        """True when weight layer `layer_index` (1-based) is kept fixed during training."""
        return layer_index <= self.n and not self.finetune

    def copied(self, layer_index: int) -> bool:
        """True when weight layer `layer_index` (1-based) starts from the base model."""
        return self.kind == "transfer" and layer_index <= self.n

    def as_dict(self) -> dict:
        """The fields a run records in run.json."""
        return {"treatment": self.name, "kind": self.kind, "source": self.source,
                "target": self.target, "n": self.n, "finetune": self.finetune,
                "protocol": self.protocol, "budget": self.budget}


def _transfers(pairs: list[tuple[str, str]]) -> list[str]:
    names = []
    for n in range(1, NUM_WEIGHT_LAYERS):
        for plus in ("", "+"):
            names += [f"{src}{n}{dst}{plus}" for src, dst in pairs]
    return names


def valid_names(protocol: str = "random") -> list[str]:
    """Every treatment name of `protocol`, bases first, then by n, frozen before fine-tuned."""
    protocol_spec(protocol)  # an unknown protocol gets the protocol table's error
    if protocol == "random":
        return [f"base{h}" for h in HALVES] + _transfers([(s, d) for s in HALVES for d in HALVES])
    if protocol == "natman":
        return [f"base{h}" for h in HALVES] + _transfers([("A", "B"), ("B", "A")])
    if protocol == "whole":
        return ["base"] + [f"randfrozen{n}" for n in range(1, NUM_WEIGHT_LAYERS)]
    if protocol == "reduced":
        return ["base"]
    if protocol == "small":
        return figure2_names()
    if protocol == "mix":
        return [f"base{h}" for h in HALVES] + _transfers([("A", "B")])
    raise KitError(f"protocol {protocol!r} has no treatments yet", "add its names to kitcore.treatments.valid_names")


def figure2_names() -> list[str]:
    """The 30 runs of the paper's Figure 2: baseA, baseB, then BnB, BnB+, AnB, AnB+ for n = 1..7."""
    names = [f"base{h}" for h in HALVES]
    for n in range(1, NUM_WEIGHT_LAYERS):
        names += [f"B{n}B", f"B{n}B+", f"A{n}B", f"A{n}B+"]
    return names


def grid_names(protocol: str) -> list[str]:
    """The runs of one split's grid in the paper's experiment (a unit of `make demo` and of the published records):
    random and small: Figure 2's 30; natman: the bases and the frozen AnB, BnA of Figure 3; whole: base and
    randfrozen1..7; mix: its 16, baseA, baseB, AnB and AnB+ for n = 1..7."""
    if protocol in ("random", "small"):
        return figure2_names()
    if protocol == "natman":
        return [f"base{h}" for h in HALVES] + [f"{s}{n}{d}" for n in range(1, NUM_WEIGHT_LAYERS)
                                                for s, d in (("A", "B"), ("B", "A"))]
    return valid_names(protocol)


def _match(name: str, protocol: str) -> Treatment | None:
    if protocol in ("whole", "reduced") and name == "base":
        return Treatment(name=name, target=ALL, protocol=protocol)
    if protocol == "whole" and (m := _RANDFROZEN.match(name)):
        return Treatment(name=name, target=ALL, n=int(m["n"]), random_weights=True, protocol=protocol)
    if protocol not in ("random", "natman", "small", "mix"):
        return None
    if m := _BASE.match(name):
        return Treatment(name=name, target=m["target"], protocol=protocol)
    if protocol == "random" and (m := _BASE2X.match(name)):
        return Treatment(name=name, target=m["target"], protocol=protocol, budget=2)
    if m := _TRANSFER.match(name):
        if ((protocol == "natman" and m["source"] == m["target"]) or (protocol == "small" and m["target"] != "B")
                or (protocol == "mix" and (m["source"], m["target"]) != ("A", "B"))):
            return None
        return Treatment(name=name, target=m["target"], source=m["source"], n=int(m["n"]),
                         finetune=m["plus"] == "+", protocol=protocol)
    return None


def parse(name: str, protocol: str = "random") -> Treatment:
    """Parse a treatment name such as 'baseA', 'A3B', 'B5B+' or 'randfrozen3'; raise KitError listing valid names."""
    names = valid_names(protocol)
    t = _match(name or "", protocol)
    if t is not None:
        return t
    shown = ", ".join(names[:6])
    raise KitError(f"invalid treatment {name!r} for protocol {protocol}",
                   f"use one of {len(names)} names, e.g. {shown}{', ...' if len(names) > 6 else ''} "
                   f"(random: baseA, baseB, baseA2x, baseB2x or XnY / XnY+ with X, Y in A, B and n in 1..7; "
                   f"whole: base, randfrozen1..7; reduced: base; small: baseA, baseB, XnB, XnB+; "
                   f"mix: baseA, baseB, AnB, AnB+)")


def in_dependency_order(treatments: list[Treatment]) -> list[Treatment]:
    """Sort so that every base comes before the transfers that start from it."""
    return sorted(treatments, key=lambda t: (t.kind == "transfer", t.n, t.finetune, t.name))
