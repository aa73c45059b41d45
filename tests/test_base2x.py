"""baseB2x: the base net trained for twice the solver's iterations (its schedule stretched as --iters stretches
it), outside every grid unit, never the baseline; published with a split's runs beyond its grid."""
from __future__ import annotations

import pytest

from analysis.rules import baseline, group_of, pooled_groups
from generators.runfiles import run_files
from kitcore.errors import KitError
from kitcore.profiles import profile
from kitcore.treatments import EXTRA_NAMES, grid_names, parse, valid_names
from runner.train import RunSpec, budget


def test_the_name_and_its_budget():
    t = parse("baseB2x")
    assert (t.kind, t.target, t.budget, t.source, t.n) == ("base", "B", 2, None, 0)
    assert parse("baseB").budget == 1 and t.as_dict()["budget"] == 2
    assert set(EXTRA_NAMES) == {"baseA2x", "baseB2x"}
    assert not set(EXTRA_NAMES) & set(grid_names("random")) and not set(EXTRA_NAMES) & set(valid_names("random"))
    for protocol in ("natman", "small", "whole"):
        with pytest.raises(KitError, match="invalid treatment 'baseB2x'"):
            parse("baseB2x", protocol)


def test_its_solver_is_the_schedule_stretched_twice():
    fa20 = profile("fa20")
    base, long = (run_files(fa20, parse(n), 10, 0, "d", val_records=2000).solver for n in ("baseB", "baseB2x"))
    assert long.max_iter == 2 * base.max_iter and long.stepsize == 2 * base.stepsize
    assert long.test_interval == 2 * base.test_interval and long.random_seed == base.random_seed
    assert long.base_lr == base.base_lr and long.gamma == base.gamma
    short = run_files(fa20, parse("baseB2x"), 10, 0, "d", val_records=2000, iters=300).solver
    assert short.max_iter == 600  # twice what --iters asks for: the transfers' total at that budget
    spec = RunSpec(work="w", dataset="fa20", seed=0, treatment=parse("baseB2x"))
    assert budget(spec) == 2 * base.max_iter


def test_it_is_never_the_baseline():
    rows = [{"split": "random0", "kind": "base", "target": "B", "n": 0, "score": 0.90, "treatment": "baseB",
             "budget": 1},
            {"split": "random0", "kind": "base", "target": "B", "n": 0, "score": 0.95, "treatment": "baseB2x",
             "budget": 2}]
    assert [group_of(r) for r in rows] == ["base", "base2x"]
    assert baseline(rows)[0] == pytest.approx(0.90) and pooled_groups(rows)["base2x"] == {0: [0.95]}


def test_the_small_target_reads_a_full_split_with_its_base2x():
    """The small target's points at the full k come from the random splits, whose records hold baseB2x too."""
    from test_small import ROWS

    from analysis.small import points
    extra = [{**r, "treatment": "baseB2x", "budget": 2, "score": 0.99} for r in ROWS
             if r["split"] == "random0" and r["kind"] == "base" and r["target"] == "B"]
    assert extra
    full = [p for p in points(ROWS + extra, 800) if p["k"] == 800]
    assert [p["baseB"] for p in full] == [p["baseB"] for p in points(ROWS, 800) if p["k"] == 800]


def test_the_controls_and_figure3_never_read_base2x():
    """Control (b) and Figure 3's normalisation are baseB's: a baseB2x beside it changes neither."""
    from test_small import ROWS

    from analysis.findings import seed_controls
    from analysis.rules import base_means
    rows = [r for r in ROWS if r["split"] == "random0"]
    extra = [{**r, "treatment": "baseB2x", "budget": 2, "score": 0.99} for r in rows
             if r["kind"] == "base" and r["target"] == "B"]
    assert seed_controls(rows + extra) == pytest.approx(seed_controls(rows), nan_ok=True)
    assert base_means(rows + extra) == base_means(rows)
