"""The authors' run-name grammar (kitcore/authors_names.py) and its two readers: analysis and generators."""
from __future__ import annotations

from collections import Counter

import pytest

from analysis.original import parse_run_name as analysis_name
from generators.authors import parse_run_name as generators_name
from kitcore.authors_names import REDUCED_PER_CLASS, parse_authors_name, read_authors_name
from kitcore.errors import KitError
from kitcore.treatments import valid_names

# name: (protocol, split, treatment, kind, source, target, n, finetune), written out by hand from the
# authors' README grammar (../shared/reference/README.md) and what the two readers gave before
EXPECTED = {
    "half0A": ("random", "random0", "baseA", "base", None, "A", 0, False),
    "half3B": ("random", "random3", "baseB", "base", None, "B", 0, False),
    "halfnatmanA": ("natman", "natman", "baseA", "base", None, "A", 0, False),
    "halfnatmanB": ("natman", "natman", "baseB", "base", None, "B", 0, False),
    "transfer0A0A_1_3": ("random", "random0", "A3A", "transfer", "A", "A", 3, False),
    "transfer2B2A_1_7": ("random", "random2", "B7A", "transfer", "B", "A", 7, False),
    "transfer-ft0A0B_1_3": ("random", "random0", "A3B+", "transfer", "A", "B", 3, True),
    "transfer-ft1B1A_1_1": ("random", "random1", "B1A+", "transfer", "B", "A", 1, True),
    "transfer-ft2B2A_1_5": ("random", "random2", "B5A+", "transfer", "B", "A", 5, True),  # not run, in the grammar
    "transfer0B0B_1_4": ("random", "random0", "B4B", "transfer", "B", "B", 4, False),  # not run, in the grammar
    "transfernatmanAB_1_3": ("natman", "natman", "A3B", "transfer", "A", "B", 3, False),
    "transfernatmanBA_1_7": ("natman", "natman", "B7A", "transfer", "B", "A", 7, False),
    "transfer-ftnatmanAB_1_2": ("natman", "natman", "A2B+", "transfer", "A", "B", 2, True),
    "netbase": ("whole", "all", "base", "base", None, "all", 0, False),
    "nolearn_1_3": ("whole", "all", "randfrozen3", "random-weights", None, "all", 3, False),
    "reduced-0001": ("reduced", "reduced1", "base", "base", None, "all", 0, False),
    "reduced-0025": ("reduced", "reduced25", "base", "base", None, "all", 0, False),
    "reduced-1300": ("reduced", "reduced1300", "base", "base", None, "all", 0, False),
}
REFUSED = [
    "reduced-0003", "reduced-0000", "reduced-1400", "reduced-25", "reduced-00025",  # k the authors never used
    "transfernatmanAA_1_1", "transfernatmanBB_1_7", "transfer-ftnatmanAA_1_3",  # natman has no selffers
    "half4A", "transfer4A4B_1_3", "transfer-ft9A9B_1_1",  # seeds 0..3 only
    "half0C", "half4", "halfnatman", "halfnatmanC", "transfer0A1B_1_3", "transfer0A0B_1_8", "transfer0A0B_1_0",
    "transfer0A0B_2_3", "transfer-ft0A0B1_3", "transfer_ft0A0B_1_3", "transfernatmanAC_1_1", "nolearn_1_0",
    "nolearn_1_8", "nolearn_2_3", "netbase2", "Netbase", "half0A.bak", "half0A ", " half0A", "results", "",
]


def _generators_view(name: str) -> tuple:
    run = generators_name(name)
    t = run.treatment
    return run.protocol, run.split, t.name, t.kind, t.source, t.target, t.n, t.finetune


def _analysis_view(name: str) -> tuple:
    meta = analysis_name(name)
    return meta["split"], meta["treatment"], meta["kind"], meta["source"], meta["target"], meta["n"], meta["finetune"]


@pytest.fixture(scope="module")
def all_runs(reference_dir) -> list[str]:
    """The names of the authors' 170 run folders."""
    names = (reference_dir / "original_runs" / "ALL_RUNS.txt").read_text().split()
    assert len(names) == len(set(names)) == 170
    return names


def test_every_authors_name_parses_and_both_readers_agree(all_runs):
    for name in all_runs:
        read = read_authors_name(name)
        t = read.treatment
        gen = _generators_view(name)
        assert gen == (read.protocol, read.split, t.name, t.kind, t.source, t.target, t.n, t.finetune), name
        assert _analysis_view(name) == gen[1:], name
        assert analysis_name(name)["original_run"] == name and analysis_name(name)["dataset"] == "imagenet"
        assert t.name in valid_names(read.protocol) and t.protocol == read.protocol, name
    reads = [read_authors_name(n) for n in all_runs]
    assert len({(r.split, r.treatment.name) for r in reads}) == 170  # no two folders are the same kit run
    # 4 seeds x (2 bases + 3 frozen pairs x 7) + 2 seeds x 3 fine-tuned pairs x 7; natman 2 + 2 x 7; 1 + 7; 12
    assert Counter(r.protocol for r in reads) == {"random": 4 * 23 + 42, "natman": 16, "whole": 8, "reduced": 12}
    assert sorted({r.images_per_class for r in reads} - {None}) == list(REDUCED_PER_CLASS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_name_maps_as_before(name):
    expected = EXPECTED[name]
    assert _generators_view(name) == expected
    assert _analysis_view(name) == expected[1:]
    meta = analysis_name(name)
    assert meta.get("images_per_class") == (int(name[-4:]) if name.startswith("reduced") else None)
    assert generators_name(name).run_name == name


def test_class_counts_and_solvers():
    assert [generators_name(n).num_classes for n in ("half1A", "halfnatmanA", "transfernatmanAB_1_2",
                                                       "transfernatmanBA_1_2", "netbase", "reduced-0010")] \
        == [500, 449, 551, 449, 1000, 1000]
    assert generators_name("reduced-0010").solver_template == "solvers/caffenet_reduced_solver.prototxt"
    assert generators_name("nolearn_1_1").solver_template == "solvers/caffenet_solver.prototxt"


@pytest.mark.parametrize("name", REFUSED)
def test_names_that_are_not_the_authors_are_refused_by_both(name):
    assert parse_authors_name(name) is None
    assert analysis_name(name) is None
    with pytest.raises(KitError, match="not one of the authors' run names"):
        generators_name(name)


def test_a_refused_folder_is_left_out_of_the_import(tmp_path, caplog):
    from analysis.original import find_runs
    for name in ("reduced-0003", "transfernatmanAA_1_1", "reduced-0010"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.o1").write_text("")
    assert [meta["original_run"] for _, meta in find_runs(tmp_path)] == ["reduced-0010"]
    assert "2 folder(s) not in the authors' run-name grammar" in caplog.text
