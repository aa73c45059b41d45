"""The work folder's layout and names: split folders, run folders, finished runs, fixing commands.

```
<work>/<dataset>/<split>/            split.json, manifest.json, data/ (data_prep)
<work>/<dataset>/<split>/runs/<treatment>/   one run folder (runner.train)
<work>/<dataset>/<split>/results/    tables and figures (analysis)
```
The protocol table, PROTOCOLS, says how a protocol's split folder is
named (random -> `random<seed>`, natman -> `natman`, whole -> `all`, reduced ->
`reduced<k>`), read back (split_protocol) and made (its make target); the
dataset's store is `<work>/<dataset>/dataset` (dataset_dir). A run is finished when its
result.json names a model that is there (and, checked, has the recorded
sha256): `is_finished` is the one answer every part of the kit uses.
The make commands here are the fixes error messages name; they carry every
variable that selects the run (dataset, protocol, seed, per-class k).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from kitcore.atomic import sha256
from kitcore.errors import KitError
from kitcore.profiles import check_seed, profile


@dataclass(frozen=True)
class Protocol:
    """One row of the protocol table: how its split folder is named, what picks one, the target making it."""

    name: str            # random, natman, whole, reduced
    folder: str          # the split folder's name; `{}` stands for the variable
    variable: str | None  # "seed", "per_class" or None (the protocol has one split)
    target: str          # the make target that makes its split


PROTOCOLS = {p.name: p for p in (
    Protocol("random", "random{}", "seed", "split-random"),
    Protocol("natman", "natman", None, "split-natural"),
    Protocol("whole", "all", None, "split-whole"),
    Protocol("reduced", "reduced{}", "per_class", "split-reduced"),
)}
_VARIABLE = {"seed": r"(0|[1-9]\d*)", "per_class": r"([1-9]\d*)"}  # what a folder name's `{}` may be
DATASET_STORE = "dataset"  # <work>/<dataset>/dataset: a dataset's whole-set store (its LMDBs, list, profile)
AUTHORS_PER_CLASS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 750, 1000, 1300)  # the authors' reduced-volume k


def protocol_spec(protocol: str) -> Protocol:
    """The table's row of a protocol."""
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise KitError(f"unknown protocol {protocol!r}", f"use one of: {', '.join(PROTOCOLS)}") from None


def check_per_class(per_class) -> int:
    """Return a valid images-per-class count (a positive int), else raise KitError."""
    if per_class is None:
        raise KitError("the reduced protocol needs k, the train images per class",
                       "pass --per-class k (PERCLASS=k), as made by make split-reduced")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise KitError(f"invalid images per class {per_class!r}",
                       f"pass a positive integer, e.g. PERCLASS=10 (the authors used {AUTHORS_PER_CLASS})")
    return per_class


def split_name(protocol: str, seed: int | None = 0, per_class: int | None = None) -> str:
    """The split folder a protocol's runs train on (random: its seed's; reduced: its k's)."""
    spec = protocol_spec(protocol)
    if spec.variable == "seed":
        return spec.folder.format(check_seed(seed))
    if spec.variable == "per_class":
        return spec.folder.format(check_per_class(per_class))
    return spec.folder


def split_protocol(name: str) -> tuple[str, int, int | None]:
    """(protocol, seed, per_class) of a split folder name: the inverse of split_name."""
    for spec in PROTOCOLS.values():
        head, _, tail = spec.folder.partition("{}")
        if spec.variable is None:
            if name == spec.folder:
                return spec.name, 0, None
        elif m := re.fullmatch(re.escape(head) + _VARIABLE[spec.variable] + re.escape(tail), name):
            value = int(m.group(1))
            return (spec.name, value, None) if spec.variable == "seed" else (spec.name, 0, value)
    raise KitError(f"unknown split name {name!r}",
                   "pass random<seed>, natman, all or reduced<k>, or --protocol P --seed S --per-class K instead")


def split_seed(name: str) -> int | None:
    """The seed of a random split's folder name (`random3` -> 3), None for any other split."""
    try:
        protocol, seed, _ = split_protocol(name)
    except KitError:
        return None
    return seed if protocol == "random" else None


def dataset_dir(work: Path, dataset: str) -> Path:
    """The folder of a dataset's whole-set store: <work>/<dataset>/dataset."""
    return Path(work) / dataset / DATASET_STORE


def split_dir(work: Path, dataset: str, name: str) -> Path:
    """The folder of split `name` of a known dataset."""
    profile(dataset)
    return Path(work) / dataset / name


def run_dir(split: Path, treatment: str) -> Path:
    """The run folder of a treatment in a split folder."""
    return Path(split) / "runs" / treatment


def read_result(run: Path) -> dict | None:
    """A run's result.json, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run) / "result.json").read_text())
    except (OSError, ValueError):
        return None


def is_finished(run: Path, check_model: bool = True) -> bool:
    """Whether a run is finished: result.json names a model file that is there, with the recorded
    sha256 (check_model=False skips the hash: analysis reading many ImageNet runs)."""
    result = read_result(run)
    if result is None or not result.get("model"):
        return False
    model = Path(run) / result["model"]
    if not model.is_file():
        return False
    return not check_model or sha256(model) == result.get("model_sha256")


def train_command(treatment: str, dataset: str, protocol: str, seed: int, per_class: int | None = None,
                  force: bool = False) -> str:
    """The make command that trains `treatment` on the same split as the run that needs it."""
    words = [f"make train TREATMENT={treatment}", f"DATASET={dataset}", f"PROTOCOL={protocol}", f"SEED={seed}"]
    if protocol == "reduced":
        words.append(f"PERCLASS={per_class or 'k'}")
    return " ".join(words + (["FORCE=1"] if force else []))


def split_command(dataset: str, protocol: str, seed: int = 0, per_class: int | None = None,
                  force: bool = False) -> str:
    """The make command that makes (force: rebuilds) the split a protocol trains on."""
    words = [f"make {protocol_spec(protocol).target}", f"DATASET={dataset}"]
    if protocol == "random":
        words.append(f"SEED={seed}")
    if protocol == "reduced":
        words.append(f"PERCLASS={per_class or 'k'}")
    extra = profile(dataset).split_args
    return " ".join(words + ([extra] if extra else []) + (["FORCE=1"] if force else []))
