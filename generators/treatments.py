"""Treatment names of the paper (baseA, A3B, B5B+, ...) parsed into a small value.

A treatment says which half a net is trained on (the target), and for a transfer
which base net the first n weight layers come from (the source) and whether
they stay frozen (`AnB`) or are fine-tuned (`AnB+`). The registry lists every
valid name of a protocol; a bad name is an error that lists them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import KitError

NUM_WEIGHT_LAYERS = 8
HALVES = ("A", "B")
PROTOCOLS = ("random",)

_BASE = re.compile(r"^base(?P<target>[AB])$")
_TRANSFER = re.compile(r"^(?P<source>[AB])(?P<n>[1-7])(?P<target>[AB])(?P<plus>\+?)$")


@dataclass(frozen=True)
class Treatment:
    """One treatment: a base net, or the first n layers of base `source` moved to `target`."""

    name: str
    target: str
    source: str | None = None
    n: int = 0
    finetune: bool = False

    @property
    def kind(self) -> str:
        """'base' or 'transfer'."""
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
        """True when weight layer `layer_index` (1-based) is copied and kept fixed."""
        return layer_index <= self.n and not self.finetune

    def copied(self, layer_index: int) -> bool:
        """True when weight layer `layer_index` (1-based) starts from the base model."""
        return layer_index <= self.n

    def as_dict(self) -> dict:
        """The fields a run records in run.json."""
        return {"treatment": self.name, "kind": self.kind, "source": self.source,
                "target": self.target, "n": self.n, "finetune": self.finetune}


def valid_names(protocol: str = "random") -> list[str]:
    """Every treatment name of `protocol`, bases first, then by n, frozen before fine-tuned."""
    if protocol not in PROTOCOLS:
        raise KitError(f"unknown protocol {protocol!r}", f"use one of: {', '.join(PROTOCOLS)}")
    names = [f"base{h}" for h in HALVES]
    for n in range(1, NUM_WEIGHT_LAYERS):
        for plus in ("", "+"):
            for src in HALVES:
                for dst in HALVES:
                    names.append(f"{src}{n}{dst}{plus}")
    return names


def figure2_names() -> list[str]:
    """The 30 runs of the paper's Figure 2: baseA, baseB, then BnB, BnB+, AnB, AnB+ for n = 1..7."""
    names = [f"base{h}" for h in HALVES]
    for n in range(1, NUM_WEIGHT_LAYERS):
        names += [f"B{n}B", f"B{n}B+", f"A{n}B", f"A{n}B+"]
    return names


def parse(name: str, protocol: str = "random") -> Treatment:
    """Parse a treatment name such as 'baseA', 'A3B' or 'B5B+'; raise KitError listing valid names."""
    m = _BASE.match(name or "")
    if m:
        return Treatment(name=name, target=m["target"])
    m = _TRANSFER.match(name or "")
    if m:
        return Treatment(name=name, target=m["target"], source=m["source"],
                         n=int(m["n"]), finetune=m["plus"] == "+")
    shown = ", ".join(valid_names(protocol)[:6])
    raise KitError(f"invalid treatment {name!r}",
                   f"use baseA, baseB or XnY / XnY+ with X, Y in A, B and n in 1..7 "
                   f"(e.g. {shown}, ...; {len(valid_names(protocol))} in all)")


def in_dependency_order(treatments: list[Treatment]) -> list[Treatment]:
    """Sort so that every base comes before the transfers that start from it."""
    return sorted(treatments, key=lambda t: (t.kind != "base", t.n, t.finetune, t.name))
