"""WordNet 3.0 parsing (Debian wordnet-base) and the natural/man-made rule against the authors' 449/551 lists."""
from pathlib import Path

import pytest

from data_prep import natman
from data_prep.natman import MANMADE, NATURAL, kind_of, natural_manmade_split
from data_prep.wordnet import DATA_NOUN, load_wordnet, parse_data_noun
from kitcore.errors import KitError

ARTIFACT = "n00021939"

TINY = """\
  1 This software and database is being provided to you, the LICENSEE, by
  2 Princeton University under the following license.
00001740 03 n 01 entity 0 000 | that which is perceived
00021939 03 n 02 artifact 0 artefact 0 002 @ 00001740 n 0000 ~ 02690373 n 0000 | a man-made object
02690373 06 n 01 airliner 0 001 @ 00021939 n 0000 | an airplane that carries passengers
09000001 15 n 01 Big_Ben 0 002 @i 02690373 n 0000 + 01000000 v 0101 | an instance, for the test
"""


def _reference(reference_dir: Path):
    il = reference_dir / "ilsvrc12"
    synsets = il.joinpath("synsets.txt").read_text().split()
    nat = [int(x) for x in il.joinpath("half_nat_idx.txt").read_text().split()]
    man = [int(x) for x in il.joinpath("half_man_idx.txt").read_text().split()]
    return synsets, nat, man


def test_parse_tiny_data_noun():
    wn = parse_data_noun(TINY.splitlines(True))
    assert set(wn.hypernyms) == {"n00001740", "n00021939", "n02690373", "n09000001"}
    assert wn.hypernyms["n02690373"] == ("n00021939",)
    assert wn.hypernyms["n09000001"] == ("n02690373",), "@i (instance hypernym) counts; '+' (verb) does not"
    assert wn.words["n00021939"] == ("artifact", "artefact")
    assert wn.ancestors("n09000001") == {"n09000001", "n02690373", "n00021939", "n00001740"}
    assert wn.path_to_root("n02690373") == ["n02690373", "n00021939", "n00001740"]


@pytest.mark.parametrize("text, problem", [
    ("00001740 03 n 01 entity 0 001 @ 0000 | cut short\n", "line 1 is not a WordNet noun data line"),
    ("00001740 03 n 01 entity 0 001 @ 00009999 n 0000 | dangling\n", "are not synsets in the file"),
    ("  1 only a licence header\n", "holds no noun synsets"),
])
def test_parse_rejects_bad_data(text, problem):
    with pytest.raises(KitError, match=problem) as err:
        parse_data_noun(text.splitlines(True), source="x")
    assert "wordnet-base" in err.value.fix


def test_missing_wordnet_is_a_one_line_error(tmp_path):
    with pytest.raises(KitError, match="is missing") as err:
        load_wordnet(tmp_path / "data.noun")
    assert "apt-get install" in err.value.fix and "\n" not in str(err.value)


def test_real_wordnet_3_0():
    wn = load_wordnet(DATA_NOUN)
    assert len(wn.hypernyms) == 82115  # WordNet 3.0 has 82,115 noun synsets
    assert wn.name(ARTIFACT) == "artifact"
    assert ARTIFACT in wn.ancestors("n02690373")  # airliner
    assert wn.name("n07711569") == "mashed_potato" and ARTIFACT not in wn.ancestors("n07711569")
    with pytest.raises(KitError, match="not a noun synset"):
        wn.ancestors("n99999999")


def test_natman_reproduces_the_authors_split_class_for_class(reference_dir):
    synsets, nat, man = _reference(reference_dir)
    wn = load_wordnet()
    split = natural_manmade_split(wn, synsets)
    assert split.name == "natman" and split.num_classes == 1000
    wrong = [(i, synsets[i], wn.name(synsets[i]), natman.reason_of(wn, synsets[i]))
             for i in range(1000) if (i in nat) != (i in split.halves["A"])]
    assert not wrong, f"classes that disagree with the authors: {wrong}"
    assert list(split.halves["A"]) == sorted(nat) and len(nat) == 449, "A is the natural half (authors' naming)"
    assert list(split.halves["B"]) == sorted(man) and len(man) == 551
    assert sum(ARTIFACT in wn.ancestors(synsets[i]) for i in man) == 522
    assert not any(ARTIFACT in wn.ancestors(synsets[i]) for i in nat)


def test_every_rule_entry_is_needed(reference_dir, monkeypatch):
    """Dropping any root or exception breaks the agreement: the rule has no dead entries."""
    synsets, nat, _man = _reference(reference_dir)
    wn = load_wordnet()
    for table in ("MANMADE_ROOTS", "NATURAL_EXCEPTIONS"):
        full = getattr(natman, table)
        for wnid in full:
            monkeypatch.setattr(natman, table, {k: v for k, v in full.items() if k != wnid})
            got = natural_manmade_split(wn, synsets).halves["A"]
            assert list(got) != sorted(nat), f"{table} entry {wnid} ({wn.name(wnid)}) changes nothing"
        monkeypatch.setattr(natman, table, full)


def test_kind_of_examples():
    wn = load_wordnet()
    assert kind_of(wn, "n01440764") == NATURAL      # tench
    assert kind_of(wn, "n02690373") == MANMADE      # airliner (artifact)
    assert kind_of(wn, "n07873807") == MANMADE      # pizza (food, nutrient)
    assert kind_of(wn, "n07802026") == NATURAL      # feed: the exception
    assert kind_of(wn, "n07742313") == NATURAL      # Granny Smith: produce stays natural
    assert kind_of(wn, "n06794110") == MANMADE      # street sign (communication)
