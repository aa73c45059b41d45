"""The work folder's layout and names: split folders, run folders, finished runs, fixing commands.

```
<work>/<dataset>/<split>/            split.json, manifest.json, data/ (data_prep)
<work>/<dataset>/<split>/runs/<treatment>/   one run folder (runner.train)
<work>/<dataset>/<split>/runs/<treatment>.r<r>/   its replicate r >= 1 (another solver seed)
<work>/<dataset>/<split>/results/    tables and figures (analysis)
```
The protocol table, PROTOCOLS, says how a protocol's split folder is
named (random -> `random<seed>`, natman -> `natman`, whole -> `all`, reduced ->
`reduced<k>`, small -> `small<seed>k<k>`, mix -> `mix<seed>m<m>`), which halves keep only their first
k train images per class (`cut`), read back (split_protocol) and made (its make target); the
dataset's store is `<work>/<dataset>/dataset` (dataset_dir). A run is finished when its
result.json names a model that is there (and, checked, has the recorded
sha256): `is_finished` is the one answer every part of the kit uses.
A run's replicate number r (`repeat`, make REPEAT=r) only names its folder
(`run_name`: r = 0 is the treatment's name, as before replicates existed);
the seed it trains with is generators.runfiles'.
The make commands here are the fixes error messages name; they carry every
variable that selects the run (dataset, protocol, seed, per-class k, replicate)
and, after those (and FORCE=1), the settings of the command they repeat: ITERS,
MODE=gpu and WORK (a work folder other than the kit's `work`).
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from kitcore.atomic import sha256
from kitcore.errors import KitError
from kitcore.profiles import KIT, check_seed, profile


@dataclass(frozen=True)
class Protocol:
    """One row of the protocol table: how its split folder is named, what picks one, the target making it."""

    name: str            # random, natman, whole, reduced, small, mix
    folder: str          # the split folder's name; `{seed}`, `{per_class}`, `{mix}` stand for its variables
    variables: tuple[str, ...]  # of "seed", "per_class", "mix", in folder order (none: the protocol has one split)
    target: str          # the make target that makes its split
    cut: tuple[str, ...] = ()  # the halves whose train set keeps its first k images per class ("*": every half)


PROTOCOLS = {p.name: p for p in (
    Protocol("random", "random{seed}", ("seed",), "split-random"),
    Protocol("natman", "natman", (), "split-natural"),
    Protocol("whole", "all", (), "split-whole"),
    Protocol("reduced", "reduced{per_class}", ("per_class",), "split-reduced", cut=("*",)),
    Protocol("small", "small{seed}k{per_class}", ("seed", "per_class"), "split-small", cut=("B",)),
    Protocol("mix", "mix{seed}m{mix}", ("seed", "mix"), "split-mix"),
)}
_VARIABLE = {"seed": r"(?P<seed>0|[1-9]\d*)", "per_class": r"(?P<per_class>[1-9]\d*)",
             "mix": r"(?P<mix>0|[1-9]\d*)"}  # a folder name's variables
_SHARE = re.compile(r"(?P<p>\d+(?:\.\d+)?)%")  # MIX=P%: a mixed split's share of A's classes from group 2
DATASET_STORE = "dataset"  # <work>/<dataset>/dataset: a dataset's whole-set store (its LMDBs, list, profile)
REPEAT_MARK = ".r"  # runs/<treatment>.r<r>: replicate r >= 1 of a treatment
_REPLICATE = re.compile(r"(?P<treatment>.+)\.r(?P<repeat>[1-9]\d*)")  # a replicate's run folder name
AUTHORS_PER_CLASS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 750, 1000, 1300)  # the authors' reduced-volume k


def protocol_spec(protocol: str) -> Protocol:
    """The table's row of a protocol."""
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise KitError(f"unknown protocol {protocol!r}", f"use one of: {', '.join(PROTOCOLS)}") from None


def check_per_class(per_class, protocol: str = "reduced") -> int:
    """Return a valid images-per-class count (a positive int), else raise KitError."""
    if per_class is None:
        raise KitError(f"the {protocol} protocol needs k, the train images per class",
                       f"pass --per-class k (PERCLASS=k), as made by make {protocol_spec(protocol).target}")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise KitError(f"invalid images per class {per_class!r}",
                       f"pass a positive integer, e.g. PERCLASS=10 (the authors used {AUTHORS_PER_CLASS})")
    return per_class


def parse_mix(mix) -> int | float:
    """m of MIX=m (the classes each half of a mixed split takes from the other group: an int >= 0, or its
    digits), or the share p of MIX=P% (0 <= p <= 50, in percent, a float); else KitError."""
    if mix is None:
        raise KitError("the mix protocol needs m, the classes half A takes from group 2 (and B from group 1)",
                       "pass --mix m (MIX=m, e.g. MIX=1; FA-20: 0..5) or a share of A's classes, MIX=P% (0..50%)")
    text = str(mix).strip()
    if isinstance(mix, bool) or not (isinstance(mix, int) or text.isdigit() or _SHARE.fullmatch(text)):
        raise KitError(f"invalid mix {mix!r}", "pass MIX=m, the classes moved (a whole number >= 0, e.g. MIX=2), "
                       "or MIX=P%, a share of A's classes from 0% to 50%")
    if m := _SHARE.fullmatch(text):
        share = float(m["p"])
        if share > 50:
            raise KitError(f"mix {text} is more than half of A's classes",
                           "pass a share from 0% to 50% (50%: both halves equally mixed)")
        return share
    if int(text) < 0:
        raise KitError(f"invalid mix {mix!r}", "pass a whole number of classes >= 0, e.g. MIX=2")
    return int(text)


def check_mix(mix) -> int:
    """Return m, the classes moved, of a mixed split's folder (mix<seed>m<m>), else KitError (a share P% is
    resolved by make split-mix only, which names the folder)."""
    m = parse_mix(mix)
    if isinstance(m, float):
        raise KitError(f"mix {mix} is a share; a split's runs name its folder's m",
                       "pass MIX=m, the classes moved, as in the folder make split-mix wrote (mix<seed>m<m>)")
    return m


def cut_halves(protocol: str, halves) -> list[str]:
    """The halves (of `halves`) whose train set a protocol cuts to its first k images per class."""
    cut = protocol_spec(protocol).cut
    return [h for h in halves if "*" in cut or h in cut]


def split_name(protocol: str, seed: int | None = 0, per_class: int | None = None, mix: int | None = None) -> str:
    """The split folder a protocol's runs train on (random: its seed's; reduced: its k's; small: both; mix: its
    seed's and m's)."""
    spec = protocol_spec(protocol)
    values = {}
    if "seed" in spec.variables:
        values["seed"] = check_seed(seed)
    if "per_class" in spec.variables:
        values["per_class"] = check_per_class(per_class, protocol)
    if "mix" in spec.variables:
        values["mix"] = check_mix(mix)
    return spec.folder.format(**values)


def split_protocol(name: str) -> tuple[str, int, int | None]:
    """(protocol, seed, per_class) of a split folder name: the inverse of split_name."""
    for spec in PROTOCOLS.values():
        pattern = re.escape(spec.folder)
        for variable in spec.variables:
            pattern = pattern.replace(re.escape("{" + variable + "}"), _VARIABLE[variable])
        if m := re.fullmatch(pattern, name):
            values = m.groupdict()
            per_class = values.get("per_class")
            return spec.name, int(values.get("seed") or 0), None if per_class is None else int(per_class)
    raise KitError(f"unknown split name {name!r}",
                   "pass random<seed>, natman, all, reduced<k>, small<seed>k<k> or mix<seed>m<m>, "
                   "or --protocol P --seed S --per-class K (--mix M) instead")


def split_mix(name: str) -> int | None:
    """m of a mixed split's folder name (`mix2m3` -> 3), None for any other split."""
    m = re.fullmatch(r"mix(?:0|[1-9]\d*)m" + _VARIABLE["mix"], name)
    return int(m["mix"]) if m else None


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


def check_repeat(repeat) -> int:
    """Return a valid replicate number (an int >= 0), else raise KitError."""
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
        raise KitError(f"invalid replicate number {repeat!r}",
                       "pass a whole number >= 0, e.g. --repeat 1 (REPEAT=1); 0 is the run as it always was")
    return repeat


def run_name(treatment: str, repeat: int = 0) -> str:
    """The run folder name of replicate `repeat` of a treatment: `A3B` (r = 0), `A3B.r2` (r = 2)."""
    r = check_repeat(repeat)
    return treatment if r == 0 else f"{treatment}{REPEAT_MARK}{r}"


def parse_run_name(name: str) -> tuple[str, int]:
    """(treatment, repeat) of a run folder name: the inverse of run_name (`A3B.r2` -> ("A3B", 2))."""
    if m := _REPLICATE.fullmatch(name):
        return m["treatment"], int(m["repeat"])
    return name, 0


def run_dir(split: Path, treatment: str, repeat: int = 0) -> Path:
    """The run folder of replicate `repeat` of a treatment in a split folder (r = 0: `runs/<treatment>`)."""
    return Path(split) / "runs" / run_name(treatment, repeat)


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


def work_setting(work: Path | str | None) -> list[str]:
    """`WORK=dir` for a make command of a work folder other than the Makefile's default (the kit's `work`):
    the folder as given when it is relative to the kit (make runs there), else its absolute path; [] for
    the default or None."""
    if work is None or Path(work).resolve() == (KIT / "work").resolve():
        return []
    work = Path(work)
    inside = not work.is_absolute() and Path.cwd().resolve() == KIT.resolve()
    return [f"WORK={shlex.quote(str(work if inside else work.resolve()))}"]


def _variable_words(protocol: str, per_class: int | None, mix: int | None) -> list[str]:
    """PERCLASS= and MIX= of a protocol whose split folder names them."""
    variables = protocol_spec(protocol).variables
    return ([f"PERCLASS={per_class or 'k'}"] if "per_class" in variables else []) + (
        [f"MIX={'m' if mix is None else mix}"] if "mix" in variables else [])


def train_command(treatment: str, dataset: str, protocol: str, seed: int, per_class: int | None = None,
                  force: bool = False, repeat: int = 0, iters: int | None = None, gpu: bool = False,
                  work: Path | str | None = None, mix: int | None = None, batch: int | None = None,
                  test_iter: int | None = None) -> str:
    """The make command that trains `treatment` (replicate `repeat`) on the same split as the run that needs it,
    with the same settings (`iters`, `gpu`, `work`, `batch`, `test_iter`: the run's, which the command repeats)."""
    words = [f"make train TREATMENT={treatment}", f"DATASET={dataset}", f"PROTOCOL={protocol}", f"SEED={seed}",
             *_variable_words(protocol, per_class, mix)]
    if check_repeat(repeat):
        words.append(f"REPEAT={repeat}")
    words += ["FORCE=1"] if force else []
    words += ([f"ITERS={iters}"] if iters else []) + (["MODE=gpu"] if gpu else [])
    words += ([f"BATCH={batch}"] if batch else []) + ([f"TEST_ITER={test_iter}"] if test_iter else [])
    return " ".join(words + work_setting(work))


def split_command(dataset: str, protocol: str, seed: int = 0, per_class: int | None = None,
                  force: bool = False, work: Path | str | None = None, mix: int | None = None) -> str:
    """The make command that makes (force: rebuilds) the split a protocol trains on (in `work`: WORK=)."""
    spec = protocol_spec(protocol)
    words = [f"make {spec.target}", f"DATASET={dataset}"]
    if "seed" in spec.variables:
        words.append(f"SEED={seed}")
    words += _variable_words(protocol, per_class, mix)
    extra = profile(dataset).split_args
    return " ".join(words + ([extra] if extra else []) + (["FORCE=1"] if force else []) + work_setting(work))
