"""The one decision treatment -> run files: train_val net, solver and (for some kinds) init model.

`run_files` is what `transfer-kit train` writes into a run folder, what
compare-original compares with the authors' files, and what the paper-protocol
test trains: one function, so the three cannot drift apart. The dataset's
profile (kitcore.profiles) supplies the templates, the classifier width rule,
the test policy and the half whose mean a transfer reads; netgen.make_treatment
decides freezing and renaming; `make_init` writes the init model (surgery) of
the kinds in STARTS_FROM_INIT.

A run whose target half keeps only its first k train images per class (the
small protocol's runs on B, kitcore.layout's `cut`) trains for the iterations
that solvers/small_iters.toml gives its solver template and k (`cut_iters`):
the row of the smallest k listed at or above it, the template's own schedule
above them all, rescaled as `--iters` rescales it.

The solver's random_seed (and the surgery's fillers') is `solver_seed`: the
split seed + 1 for a treatment's run r = 0, + REPEAT_SEED_STEP * r more for
its replicate r (kitcore.layout's `<treatment>.r<r>`): while split seeds stay
below REPEAT_SEED_STEP (the paper's are 0..3), no two (seed, r) share a seed.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from generators import netgen
from generators.surgery import random_init, transplant
from kitcore.errors import KitError
from kitcore.layout import check_per_class, check_repeat, cut_halves
from kitcore.profiles import KIT, Profile
from kitcore.treatments import Treatment

STARTS_FROM_INIT = ("transfer", "random-weights")  # kinds whose run starts from init.caffemodel
REPEAT_SEED_STEP = 1000  # replicate r trains with seed + 1 + 1000 * r (r = 0: seed + 1, as before replicates)
CUT_SCHEDULE = KIT / "solvers" / "small_iters.toml"  # iterations per k of the runs on a half cut to k per class


@dataclass(frozen=True)
class RunFiles:
    """A run's generated messages, the solver's random seed (the surgery's too) and the treatment's kind."""

    net: object      # caffe_pb2.NetParameter (train_val)
    solver: object   # caffe_pb2.SolverParameter
    seed: int
    kind: str = "base"

    @property
    def starts_from_init(self) -> bool:
        """Whether the run starts from init.caffemodel."""
        return self.kind in STARTS_FROM_INIT


def data_spec(profile: Profile, t: Treatment, data_root: str) -> netgen.DataSpec:
    """The target half's LMDBs and the mean file the profile assigns, under `data_root`."""
    mean_half = profile.mean_half(t.source, t.target)
    root = data_root.rstrip("/") + "/" if data_root else ""
    return netgen.DataSpec(train_source=f"{root}{t.target}_train_lmdb", val_source=f"{root}{t.target}_val_lmdb",
                           mean_file=f"{root}{mean_half}_mean.binaryproto")


def read_schedule(path: Path = CUT_SCHEDULE) -> dict[str, dict[int, int]]:
    """solver template file name -> {k: iterations} of the runs on a half cut to k train images per class."""
    try:
        table = tomllib.loads(Path(path).read_text())
        return {solver: {int(k): int(v) for k, v in rows.items()} for solver, rows in table.items()}
    except (OSError, tomllib.TOMLDecodeError, ValueError, AttributeError) as exc:
        raise KitError(f"{path} is not a table of solver -> k = iterations ({exc})",
                       "restore it from git: git checkout solvers/small_iters.toml") from exc


def cut_iters(profile: Profile, t: Treatment, per_class: int | None) -> int | None:
    """The iterations of a run whose target half its protocol cuts to `per_class` train images per class
    (None: not such a run, or no row below the template's own schedule; see the module docstring)."""
    if not cut_halves(t.protocol, [t.target]):
        return None
    k = check_per_class(per_class, t.protocol)
    rows = read_schedule().get(profile.solver_template(t.protocol).name, {})
    above = [listed for listed in rows if listed >= k]
    return rows[min(above)] if above else None


def solver_seed(seed: int, repeat: int = 0) -> int:
    """The solver's (and the surgery's) random seed of replicate `repeat` of a run on split seed `seed`."""
    return seed + 1 + REPEAT_SEED_STEP * check_repeat(repeat)


def _whole_val_test_iter(net, val_records: int | None) -> int:
    """Test batches covering `val_records` once, at the TEST Data layer's batch size."""
    if not val_records:
        raise ValueError("the profile tests on the whole val set: pass val_records")
    batch = netgen.phase_net(net, "TEST").layer[0].data_param.batch_size
    return -(-val_records // batch)


def run_files(profile: Profile, t: Treatment, num_classes: int, seed: int, data_root: str, *,
              iters: int | None = None, batch: int | None = None, test_iter: int | None = None,
              val_records: int | None = None, snapshot: int | None = None, per_class: int | None = None,
              repeat: int = 0) -> RunFiles:
    """The train_val net and solver of treatment `t` on a split with `num_classes` target classes.

    seed: the split seed; the solver (and the surgery's fillers) use solver_seed(seed, repeat): seed + 1 for
    r = 0, seed + 1 + 1000 * r for replicate r.
    iters rescales the solver's schedule (default: cut_iters of `per_class`, the
    split's k, for a run on a cut half); batch replaces the template's train and
    val batch; test_iter replaces the profile's test policy; val_records (the
    target's val LMDB size) is needed when the profile tests on the whole val set.
    """
    net = netgen.make_treatment(netgen.load_net(profile.net_template_path()), t, data_spec(profile, t, data_root),
                                num_classes, batch_train=batch, batch_val=batch, exact_classes=profile.exact_classes)
    if test_iter is None and profile.whole_val_test:
        test_iter = _whole_val_test_iter(net, val_records)
    iters = iters or cut_iters(profile, t, per_class)
    template = netgen.load_solver(profile.solver_template(t.protocol))
    if t.budget != 1:  # baseB2x: the schedule (or the one --iters asked for) stretched by the budget
        iters = t.budget * (iters or template.max_iter)
    random_seed = solver_seed(seed, repeat)
    solver = netgen.make_solver(template, "train_val.prototxt",
                                random_seed=random_seed, iters=iters, test_iter=test_iter, snapshot=snapshot)
    return RunFiles(net=net, solver=solver, seed=random_seed, kind=t.kind)


def crop_size(net) -> int:
    """The crop of the net's TEST Data layer (0: none)."""
    return netgen.phase_net(net, "TEST").layer[0].transform_param.crop_size


def make_init(profile: Profile, files: RunFiles, t: Treatment, out: Path,
              base: tuple[object, Path] | None = None) -> list[str]:
    """Write init.caffemodel for `t` to `out`: the base's first n layers (base = (its net, its model)),
    or for random weights the seeded fillers; return the surgery's audit lines."""
    shape = profile.input_shape(crop_size(files.net))
    if base is not None:
        return transplant(base[0], base[1], files.net, t, out, shape, seed=files.seed)
    return random_init(files.net, t, out, shape, seed=files.seed)
