"""The natural / man-made class split of ILSVRC2012, derived from WordNet 3.0.

The paper (Sections 3 and 4.2) splits the 1000 classes into 551 man-made and
449 natural ones and its text calls the man-made half A. The authors' own run
names (`halfnatmanA`, `transfernatmanAB_1_n`) and published index lists call
the **natural half A** and the man-made half B. The kit follows the authors'
files: in split `natman`, A = natural (449), B = man-made (551).

The rule. A class is man-made when its synset, or any synset above it along
every hypernym path (`@` and `@i`), is one of `MANMADE_ROOTS`, and none of
them is one of `NATURAL_EXCEPTIONS`; every other class is natural. `artifact`
alone gives 522 of the 551. The other 29 are things people make that WordNet
files outside `artifact`. Each entry below names the classes it decides; each
is needed (tests/test_wordnet.py checks all 1000 classes against the authors'
lists, ../shared/reference/ilsvrc12/half_{nat,man}_idx.txt, and that dropping
any one entry breaks the agreement):
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from data_prep.splits import Split
from data_prep.wordnet import WordNet, load_wordnet
from kitcore.layout import split_name

log = logging.getLogger(__name__)

NATURAL, MANMADE = "natural", "man-made"
HALF_OF_KIND = {NATURAL: "A", MANMADE: "B"}  # the authors' letters (the paper's text swapped them)
GROUPS = (NATURAL, MANMADE)  # a mixed split's groups 1 and 2 (data_prep.splits.mixed_split): natman's A and B

MANMADE_ROOTS: dict[str, str] = {
    "n00021939": "artifact: every man-made object WordNet knows as such (522 classes)",
    "n00033020": "communication: signs and signals are made by people (street sign, traffic light: 2)",
    "n00021265": "food, nutrient: prepared dishes, sauces, dough, bread, drinks, the menu (25 classes; "
                 "bread and mashed potato reach it through 'starches')",
    "n14974264": "paper: a manufactured material (toilet tissue: 1)",
    "n09229709": "bubble: ImageNet's pictures are soap bubbles; WordNet files it under 'shape' (1)",
}
NATURAL_EXCEPTIONS: dict[str, str] = {
    "n07802026": "feed, provender: fodder as harvested, sits under 'food, nutrient' (hay, 1)",
}
__doc__ += "".join(f"\n- `{k}` {v}" for k, v in MANMADE_ROOTS.items())
__doc__ += "\n\nand natural although below a man-made root:" + "".join(
    f"\n- `{k}` {v}" for k, v in NATURAL_EXCEPTIONS.items())


def kind_of(wn: WordNet, wnid: str) -> str:
    """Return 'man-made' or 'natural' for one synset by the rule in this module's docstring."""
    above = wn.ancestors(wnid)
    if above.isdisjoint(MANMADE_ROOTS) or not above.isdisjoint(NATURAL_EXCEPTIONS):
        return NATURAL
    return MANMADE


def reason_of(wn: WordNet, wnid: str) -> str:
    """Return which roots or exceptions decided `wnid`'s kind (for reports)."""
    above = wn.ancestors(wnid)
    hits = [f"{wn.name(r)} ({r})" for r in (*MANMADE_ROOTS, *NATURAL_EXCEPTIONS) if r in above]
    return ", ".join(hits) or "no man-made root above it"


def kinds_of(synsets: Sequence[str]) -> list[str]:
    """The kind of each synset (label = position) by the rule, from the kit's WordNet 3.0."""
    wn = load_wordnet()
    return [kind_of(wn, s) for s in synsets]


def natural_manmade_split(wn: WordNet, synsets: Sequence[str]) -> Split:
    """Return split 'natman' of `synsets` (label = position): A natural, B man-made."""
    kinds = [kind_of(wn, s) for s in synsets]
    halves = {HALF_OF_KIND[NATURAL]: [i for i, k in enumerate(kinds) if k == NATURAL],
              HALF_OF_KIND[MANMADE]: [i for i, k in enumerate(kinds) if k == MANMADE]}
    log.info("natural/man-made split: %d natural (A), %d man-made (B)", len(halves["A"]), len(halves["B"]))
    return Split(name=split_name("natman"), halves=halves, num_classes=len(synsets))
