"""The work folder's layout and names: split folders, run folders, finished runs, fixing commands.

```
<work>/<dataset>/<split>/            split.json, manifest.json, data/ (data_prep)
<work>/<dataset>/<split>/runs/<treatment>/   one run folder (runner.train)
<work>/<dataset>/<split>/results/    tables and figures (analysis)
```
Split folder names per protocol: random -> `random<seed>`, natman -> `natman`,
whole -> `all`, reduced -> `reduced<k>`. A run is finished when its
result.json names a model that is there (and, checked, has the recorded
sha256): `is_finished` is the one answer every part of the kit uses.
The make commands here are the fixes error messages name; they carry every
variable that selects the run (dataset, protocol, seed, per-class k).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from kitcore.atomic import sha256
from kitcore.errors import KitError
from kitcore.profiles import profile

RANDOM_SPLIT = re.compile(r"random(\d+)")  # the folder name of a random split; group 1 is its seed
FIXED_SPLITS = {"natman": "natman", "whole": "all"}  # protocol -> its one split folder


def split_name(protocol: str, seed: int = 0, per_class: int | None = None) -> str:
    """The split folder a protocol's runs train on."""
    if protocol == "reduced":
        if not per_class:
            raise KitError("the reduced protocol needs k, the train images per class",
                           "pass --per-class k (PERCLASS=k), as made by make split-reduced")
        return f"reduced{per_class}"
    return FIXED_SPLITS.get(protocol, f"random{seed}")


REDUCED_SPLIT = re.compile(r"reduced([1-9]\d*)")  # the folder name of a reduced split; group 1 is k


def split_protocol(name: str) -> tuple[str, int, int | None]:
    """(protocol, seed, per_class) of a split folder name: the inverse of split_name."""
    seed = split_seed(name)
    if seed is not None:
        return "random", seed, None
    for protocol, folder in FIXED_SPLITS.items():
        if name == folder:
            return protocol, 0, None
    if m := REDUCED_SPLIT.fullmatch(name):
        return "reduced", 0, int(m.group(1))
    raise KitError(f"unknown split name {name!r}",
                   "pass random<seed>, natman, all or reduced<k>, or --protocol P --seed S --per-class K instead")


def split_seed(name: str) -> int | None:
    """The seed of a random split's folder name (`random3` -> 3), None for any other split."""
    m = RANDOM_SPLIT.fullmatch(name)
    return int(m.group(1)) if m else None


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


SPLIT_TARGETS = {"random": "split-random", "natman": "split-natural", "whole": "split-whole",
                 "reduced": "split-reduced"}


def split_command(dataset: str, protocol: str, seed: int = 0, per_class: int | None = None,
                  force: bool = False) -> str:
    """The make command that makes (force: rebuilds) the split a protocol trains on."""
    words = [f"make {SPLIT_TARGETS[protocol]}", f"DATASET={dataset}"]
    if protocol == "random":
        words.append(f"SEED={seed}")
    if protocol == "reduced":
        words.append(f"PERCLASS={per_class or 'k'}")
    extra = profile(dataset).split_args
    return " ".join(words + ([extra] if extra else []) + (["FORCE=1"] if force else []))
