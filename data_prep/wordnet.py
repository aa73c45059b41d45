"""WordNet 3.0 nouns, parsed from the `data.noun` file of Debian's `wordnet-base`.

Only what the kit needs: each noun synset's words and its hypernyms (pointer
symbols `@`, hypernym, and `@i`, instance hypernym), keyed by ImageNet-style
ids `n<8-digit offset>` (an ILSVRC synset id is its WordNet 3.0 noun offset).

`data.noun` lines (see wndb(5)): `offset lex_filenum ss_type w_cnt word lex_id
[word lex_id ...] p_cnt [pointer_symbol offset pos source/target ...] | gloss`,
`w_cnt` in hex, `p_cnt` in decimal; lines starting with two spaces are the
licence header. No nltk: this parser is the whole dependency.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from kitcore.errors import KitError

log = logging.getLogger(__name__)

DATA_NOUN = Path("/usr/share/wordnet/data.noun")  # Debian wordnet-base (WordNet 3.0)
HYPERNYM_POINTERS = ("@", "@i")
FIX_INSTALL = "apt-get install --no-install-recommends wordnet-base (or run: make system)"


@dataclass(frozen=True, eq=False)
class WordNet:
    """Noun synsets: words and hypernym ids per id `n%08d`."""

    words: dict[str, tuple[str, ...]]
    hypernyms: dict[str, tuple[str, ...]]
    source: str
    _closure: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def check(self, wnid: str) -> str:
        """Return `wnid` if it is a noun synset here, else raise KitError."""
        if wnid not in self.hypernyms:
            raise KitError(f"{wnid} is not a noun synset of WordNet 3.0 ({self.source})",
                           "synsets.txt must hold ILSVRC WordNet ids such as n01440764")
        return wnid

    def ancestors(self, wnid: str) -> frozenset[str]:
        """Return `wnid` and every synset above it along all hypernym paths."""
        found = self._closure.get(self.check(wnid))
        if found is None:
            found = frozenset({wnid}).union(*(self.ancestors(h) for h in self.hypernyms[wnid]))
            self._closure[wnid] = found
        return found

    def name(self, wnid: str) -> str:
        """Return the first word of a synset (underscores as in WordNet)."""
        return self.words[self.check(wnid)][0]

    def path_to_root(self, wnid: str) -> list[str]:
        """Return one path wnid -> ... -> entity, following the first hypernym each time."""
        path = [self.check(wnid)]
        while self.hypernyms[path[-1]]:
            path.append(self.hypernyms[path[-1]][0])
        return path


def parse_data_noun(lines, source: str = "data.noun") -> WordNet:
    """Parse the lines of a WordNet `data.noun` file into a WordNet."""
    words: dict[str, tuple[str, ...]] = {}
    hypernyms: dict[str, tuple[str, ...]] = {}
    for num, line in enumerate(lines, 1):
        if line.startswith("  ") or not line.strip():
            continue
        fields = line.partition(" | ")[0].split()
        try:
            wnid = f"n{int(fields[0]):08d}"
            w_cnt = int(fields[3], 16)
            names = tuple(fields[4 + 2 * i] for i in range(w_cnt))
            pos = 4 + 2 * w_cnt
            p_cnt = int(fields[pos])
            pointers = [fields[pos + 1 + 4 * i: pos + 5 + 4 * i] for i in range(p_cnt)]
            if fields[2] != "n" or any(len(p) != 4 for p in pointers):
                raise ValueError("not a noun synset line")
        except (IndexError, ValueError) as exc:
            raise KitError(f"{source} line {num} is not a WordNet noun data line ({exc})", FIX_INSTALL) from exc
        words[wnid] = names
        hypernyms[wnid] = tuple(f"n{int(off):08d}" for sym, off, p, _ in pointers
                                if sym in HYPERNYM_POINTERS and p == "n")
    if not hypernyms:
        raise KitError(f"{source} holds no noun synsets", FIX_INSTALL)
    missing = {h for hs in hypernyms.values() for h in hs} - hypernyms.keys()
    if missing:
        raise KitError(f"{source}: hypernyms {sorted(missing)[:3]} are not synsets in the file", FIX_INSTALL)
    return WordNet(words=words, hypernyms=hypernyms, source=source)


@lru_cache(maxsize=4)
def load_wordnet(path: Path = DATA_NOUN) -> WordNet:
    """Load and parse WordNet 3.0's data.noun (cached per path)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"WordNet 3.0 noun data {path} is missing", FIX_INSTALL)
    with open(path, encoding="latin-1") as fh:
        wn = parse_data_noun(fh, source=str(path))
    log.info("parsed %d noun synsets from %s", len(wn.hypernyms), path)
    return wn
