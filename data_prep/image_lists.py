"""Image lists in Caffe's format: read them, build the kit's splits, write per-half lists.

ImageNet's are Caffe's ILSVRC2012 auxiliary lists; a user's folder dataset
writes its own in the same format (`folder`).

Input, a folder LISTS as Caffe's `data/ilsvrc12/get_ilsvrc_aux.sh` gives it:
`synsets.txt` (one WordNet id per line; label i = line i), `train.txt` and
`val.txt` (`FILE LABEL` per line; train paths relative to the image folder's
`train/`, e.g. `n01440764/n01440764_10026.JPEG`, val paths relative to `val/`).

Output, for split NAME, under `<work>/imagenet/NAME/`: `split.json` and
`lists/{half}_{train,val}.txt` in the authors' format: the lines of the half's
classes in input order, relabelled 0..K-1 in ascending original label
(`splits.apply_split_to_list`), `FILE NEWLABEL\n`. Splits:
- `random<s>`: the authors' A/B halves for seed s (`splits.make_random_split`);
- `natman`: A natural (449), B man-made (551), from WordNet (`natman`);
- `reduced<k>`: one half `all` (every class, labels unchanged) whose train
  list keeps the first k lines of each class in list order (the authors used
  k = 1, 2, 5, ..., 1300); val unchanged;
- `mix<s>m<m>`: natman's halves with m classes swapped between them, drawn
  with seed s (`splits.mixed_split`); m = 0: natman's lists;
- `small<s>k<k>`: random<s>'s halves, B's train list cut to the first k lines
  of each class in list order (A and the val lists as random<s>'s);
- `all`: every class, every image (the 1000-class base net).
Which halves a protocol cuts is kitcore.layout's `cut_halves`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from data_prep.splits import Split, apply_split_to_list, make_random_split, mixed_split, whole_split
from kitcore.atomic import sha256, write_json, write_text
from kitcore.errors import KitError
from kitcore.layout import cut_halves, protocol_spec, split_name, split_protocol

log = logging.getLogger(__name__)

DATASET = "imagenet"
PHASES = ("train", "val")
LIST_FILES = ("synsets.txt", "train.txt", "val.txt")
_WNID = re.compile(r"^n\d{8}$")
FIX_LISTS = ("LISTS must be a folder with synsets.txt, train.txt and val.txt as Caffe's "
             "data/ilsvrc12/get_ilsvrc_aux.sh gives them (FILE LABEL per line)")


@dataclass(frozen=True, eq=False)
class ImageLists:
    """Parsed LISTS: synset ids in label order, (path, label) per phase, sha256 of each input file."""

    folder: Path
    synsets: tuple[str, ...]
    entries: dict[str, list[tuple[str, int]]]
    sha256: dict[str, str]

    @property
    def num_classes(self) -> int:
        """Number of classes (lines of synsets.txt)."""
        return len(self.synsets)


def _read_lines(path: Path) -> list[str]:
    """Return the non-empty lines of a list file, or raise KitError if it is missing."""
    if not path.is_file():
        raise KitError(f"list file {path} is missing", FIX_LISTS)
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise KitError(f"{path} is not a text file ({exc.reason})", FIX_LISTS) from exc
    return [ln.rstrip("\r\n") for ln in text.splitlines()]


def read_synsets(path: Path) -> tuple[str, ...]:
    """Read synsets.txt: one unique WordNet id `n########` per line (label = line number - 1)."""
    out = []
    for num, line in enumerate(_read_lines(Path(path)), 1):
        wnid = line.split()[0] if line.strip() else ""
        if not _WNID.match(wnid):
            raise KitError(f"{path} line {num}: expected a WordNet id like n01440764, got {line!r}", FIX_LISTS)
        out.append(wnid)
    if len(set(out)) != len(out) or len(out) < 2:
        raise KitError(f"{path} must list at least 2 distinct synsets, got {len(out)} ({len(set(out))} distinct)",
                       FIX_LISTS)
    return tuple(out)


def read_image_list(path: Path, num_classes: int) -> list[tuple[str, int]]:
    """Read a `FILE LABEL` list, checking every label is in 0..num_classes-1 and no file repeats."""
    out, seen = [], set()
    for num, line in enumerate(_read_lines(Path(path)), 1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise KitError(f"{path} line {num}: expected 'FILE LABEL', got {line!r}", FIX_LISTS)
        label = int(parts[1])
        if label >= num_classes:
            raise KitError(f"{path} line {num}: label {label} is outside synsets.txt's 0..{num_classes - 1}",
                           FIX_LISTS)
        if parts[0] in seen:
            raise KitError(f"{path} line {num}: {parts[0]} is listed twice", FIX_LISTS)
        seen.add(parts[0])
        out.append((parts[0], label))
    if not out:
        raise KitError(f"{path} lists no images", FIX_LISTS)
    return out


def load_lists(folder: Path) -> ImageLists:
    """Read and check LISTS/{synsets,train,val}.txt."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KitError(f"LISTS folder {folder} does not exist", FIX_LISTS)
    synsets = read_synsets(folder / "synsets.txt")
    entries = {p: read_image_list(folder / f"{p}.txt", len(synsets)) for p in PHASES}
    digests = {name: sha256(folder / name) for name in LIST_FILES}
    log.info("read %s: %d classes, %d train and %d val images", folder, len(synsets),
             len(entries["train"]), len(entries["val"]))
    return ImageLists(folder=folder, synsets=synsets, entries=entries, sha256=digests)


def first_per_class(entries: list[tuple[str, int]], per_class: int) -> list[tuple[str, int]]:
    """Keep the first `per_class` entries of each label, in list order."""
    taken: dict[int, int] = {}
    out = []
    for path, label in entries:
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            out.append((path, label))
    return out


def uncut_per_class(lists: ImageLists, split: Split, half: str) -> list[int]:
    """[fewest, most] train images of a class of `half` before any cut (what a split's full k is)."""
    counts: dict[int, int] = {}
    labels = set(split.halves[half])
    for _path, label in lists.entries["train"]:
        if label in labels:
            counts[label] = counts.get(label, 0) + 1
    return [min(counts.values(), default=0), max(counts.values(), default=0)]


def make_split(protocol: str, lists: ImageLists, seed: int | None = None, per_class: int | None = None,
               mix=None) -> Split:
    """Return the Split of a protocol (random, natman, whole, reduced, small, mix) for these lists (see the module
    docstring; mix: MIX=m or a share P%, resolved against the natural half)."""
    if protocol == "mix":
        from data_prep.natman import GROUPS, kinds_of
        return mixed_split(kinds_of(lists.synsets), GROUPS, seed, mix)
    name = split_name(protocol, seed, per_class)
    if protocol == "random":
        return make_random_split(lists.num_classes, seed)
    if protocol == "small":
        random = make_random_split(lists.num_classes, seed)
        return Split(name=name, halves=random.halves, num_classes=random.num_classes, seed=random.seed)
    if protocol == "natman":
        from data_prep.natman import natural_manmade_split
        from data_prep.wordnet import load_wordnet
        return natural_manmade_split(load_wordnet(), lists.synsets)
    whole = whole_split(lists.num_classes)
    return Split(name=name, halves=whole.halves, num_classes=whole.num_classes)


def half_lists(lists: ImageLists, split: Split, per_class: int | None = None) -> dict[str, str]:
    """Return {'<half>_<phase>.txt': text} in the authors' format (with per_class, the train lists of the halves
    the split's protocol cuts keep their first per_class lines of each class)."""
    out = {}
    cut = cut_halves(split_protocol(split.name)[0], split.halves) if per_class is not None else []
    for half, labels in split.halves.items():
        for phase in PHASES:
            entries = lists.entries[phase]
            if phase == "train" and half in cut:
                entries = first_per_class(entries, per_class)
            out[f"{half}_{phase}.txt"] = apply_split_to_list([f"{p} {lab}" for p, lab in entries], labels)
    return out


def write_split_lists(sdir: Path, lists: ImageLists, split: Split, per_class: int | None = None,
                      kinds: dict[str, list[str]] | None = None, force: bool = False,
                      dataset: str = DATASET, facts: dict | None = None) -> dict:
    """Write `sdir`/split.json and `sdir`/lists/*.txt atomically; return split.json's content (`dataset`:
    ImageNet, or a user's folder dataset whose lists name its class folders as `synsets`; `facts`: more keys,
    a mixed split's `mix`)."""
    sdir = Path(sdir)
    protocol = split_protocol(split.name)[0]
    per_class = per_class if "per_class" in protocol_spec(protocol).variables else None  # k of reduced, small
    texts = half_lists(lists, split, per_class)
    old = {name: (sdir / "lists" / name) for name in texts}
    changed = [n for n, p in old.items() if p.is_file() and p.read_text() != texts[n]]
    if changed and (sdir / "manifest.json").is_file() and not force:
        raise KitError(f"{sdir} was prepared from other lists ({', '.join(changed)} would change)",
                       "pass --force (FORCE=1) to rewrite the lists and rebuild the split's LMDBs")
    for name, text in texts.items():
        write_text(sdir / "lists" / name, text)
    cut = cut_halves(protocol, split.halves) if per_class is not None else []
    meta = {**split.to_dict(), "dataset": dataset, "per_class": per_class,
            **({"cut_halves": cut, "uncut_per_class": {h: uncut_per_class(lists, split, h) for h in cut}}
               if cut else {}),
            "class_names": {h: [lists.synsets[c] for c in cs] for h, cs in split.halves.items()},
            "idxmap": {h: {str(o): n for o, n in split.idxmap(h).items()} for h in split.halves},
            "source_lists_sha256": lists.sha256,
            "lists": {f"lists/{n}": {"lines": t.count("\n"), "sha256": sha256(sdir / "lists" / n)}
                      for n, t in texts.items()}}
    if kinds is not None:
        meta["kinds"] = kinds
    meta.update(facts or {})
    write_json(sdir / "split.json", meta, sort_keys=False)
    log.info("wrote split %s: %s", split.name, ", ".join(f"{n} ({t.count(chr(10))} lines)" for n, t in texts.items()))
    return meta
