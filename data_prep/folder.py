"""Your own images: a class-per-folder tree -> a whole-set store and profile -> the kit's splits.

`add_dataset(work, NAME, DIR)` reads the tree (`folder_tree`: DIR/train/<class>
and DIR/val/<class>, or DIR/<class> with a seeded held-out val share), decodes
every image once into `<work>/NAME/dataset/` with ImageNet's code
(`image_store.decode_phase`): `train_lmdb`, `val_lmdb` keyed `<class>/<file>`,
`train.txt` and `val.txt` (`KEY LABEL` lines of the stored images, the lists
every split is cut from), `bad_images.txt` (files OpenCV cannot decode, left
out of the LMDBs and the lists), `profile.json` (the dataset's `kitcore.profiles`
record, class names in its `extra`) and `dataset.json` (written last: class
names and counts, the store's shape, the tree's fingerprint). A finished store
of the same tree is reused; another tree under the same name needs `force`.

NET and the stored shape:
- NET unset: `small` when the first decodable train image of every class is
  at most 64 px on its longer side, else `caffenet`;
- `small`: every image is probed (decoded, see `folder_tree`): stored at the
  most common (height, width) of the tree, 1 channel (IMREAD_GRAYSCALE) when
  every image is grey, else 3 (IMREAD_COLOR); the probe reads each image a
  second time, cheap at these sizes;
- `caffenet`: 3 x 256 x 256 (IMREAD_COLOR), as ImageNet; no probe.

`prepare_user_split(work, NAME, protocol)` writes `<work>/NAME/<split>/` as
ImageNet's splits (`image_lists.write_split_lists`,
`store_splits.prepare_split_db`): split.json, lists/, data/{half}_{train,val}_lmdb
relabelled 0..K-1 per half, data/{half}_mean.binaryproto, manifest.json last.
Protocols: random (the authors' K//2 classes to A), whole (`all`), reduced
(the first k train images of each class), natman from a groups CSV
(`read_groups`), mix (natman's halves with m classes swapped, from the same CSV).
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from data_prep import folder_tree, image_store
from data_prep.image_lists import ImageLists, make_split, read_image_list, write_split_lists
from data_prep.splits import Split, mix_record, mixed_split
from data_prep.store_splits import prepare_split_db
from kitcore import layout
from kitcore.atomic import remove_path, sha256, write_json, write_text
from kitcore.errors import KitError
from kitcore.profiles import NETS, PROFILE_FILE, PROFILES, check_seed, load_user_profiles, profile, user_profile

log = logging.getLogger(__name__)

CAFFENET_SHAPE = (3, image_store.SIZE, image_store.SIZE)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_name(name: str, net: str | None) -> None:
    """Refuse a dataset name that is not a plain folder name or is the kit's own, and an unknown NET."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise KitError(f"invalid dataset name {name!r}",
                       "use letters, digits, '_', '.' and '-', starting with a letter or digit, e.g. DATASET=flowers")
    if name in PROFILES and not PROFILES[name].user:
        raise KitError(f"dataset name {name!r} is the kit's own", "choose another DATASET name")
    if net is not None and net not in NETS:
        raise KitError(f"unknown NET {net!r}", f"use one of: {', '.join(NETS)}")


def _fix_force(name: str, images: Path) -> str:
    """The fix of a store that another tree or NET made."""
    return (f"pass FORCE=1 (--force) to decode {images} into it again, or choose another DATASET name "
            f"than {name}")


def _reuse(wdir: Path, name: str, tree: folder_tree.Tree, net: str | None) -> bool:
    """Whether the finished store in `wdir` is this tree's (with NET unset or the same); KitError if another's."""
    meta = image_store.read_whole_meta(wdir)
    if meta is None or not (wdir / PROFILE_FILE).is_file():
        return False
    if meta.get("tree_sha256") != tree.sha256:
        raise KitError(f"dataset {name} in {wdir} was built from another tree ({meta.get('images')}, "
                       f"{meta.get('layout')}) than {tree.root}", _fix_force(name, tree.root))
    if net is not None and meta.get("net") != net:
        raise KitError(f"dataset {name} in {wdir} was built with NET={meta.get('net')}, this command asks for "
                       f"NET={net}", _fix_force(name, tree.root))
    log.info("dataset %s in %s already built from %s: no image is decoded again", name, wdir, tree.root)
    return True


def _shape(tree: folder_tree.Tree, net: str | None, jobs: int) -> tuple[str, tuple[int, int, int], dict]:
    """(NET, stored (C, H, W), what the probe found) by the rules of the module docstring."""
    found: dict = {}
    if net is None:
        samples = folder_tree.first_decodable(tree)
        net = folder_tree.default_net(samples)
        over = sum(max(h, w) > folder_tree.SMALL_MAX_SIDE for h, w, _g in samples.values())
        found["net_rule"] = (f"default: the first decodable train image of {over or 'none'} of the {len(samples)} "
                             f"classes is above {folder_tree.SMALL_MAX_SIDE} px on its longer side")
        log.info("NET=%s (%s)", net, found["net_rule"])
    if net == "caffenet":
        return net, CAFFENET_SHAPE, found
    sizes, grey, good = folder_tree.probe_all(tree, jobs)
    h, w = folder_tree.most_common_size(sizes)
    channels = 1 if grey == good else 3
    found.update(sizes={f"{a}x{b}": n for (a, b), n in sizes.most_common(10)}, grey=grey, decodable=good)
    if max(h, w) > folder_tree.SMALL_MAX_SIDE:
        log.warning("NET=small at %dx%d: the CPU-scale net is meant for images of %d px or less", h, w,
                    folder_tree.SMALL_MAX_SIDE)
    resized = good - sizes[(h, w)]
    log.info("stored shape %dx%dx%d (%d of %d images grey; %d resized)", channels, h, w, grey, good, resized)
    return net, (channels, h, w), found


def add_dataset(work: Path, name: str, images: Path, net: str | None = None, val_fraction: float = 0.2,
                seed: int = 0, jobs: int = 1, force: bool = False) -> Path:
    """Decode the class-per-folder tree IMAGES once into <work>/<name>/dataset (see the module docstring)."""
    _check_name(name, net)
    tree = folder_tree.read_tree(images, val_fraction, seed)
    wdir = layout.dataset_dir(work, name)
    if not force and _reuse(wdir, name, tree, net):
        return wdir
    remove_path(wdir / "dataset.json")  # from here on the store is unfinished
    remove_path(wdir / PROFILE_FILE)
    net, (c, h, w), found = _shape(tree, net, jobs)
    bad: list[tuple[str, str, str]] = []
    info, counts, k = {}, {}, len(tree.classes)
    for phase in folder_tree.PHASES:
        info[phase], per_label = image_store.decode_phase(wdir, phase, tree.items(phase), k, tree.roots[phase],
                                                          bad, jobs=jobs, size=(h, w), channels=c)
        counts[phase] = {tree.classes[i]: int(n) for i, n in enumerate(per_label)}
        left_out = {key for ph, key, _why in bad if ph == phase}
        write_text(wdir / f"{phase}.txt", "".join(f"{key} {lab}\n" for key, lab in tree.entries[phase]
                                                  if key not in left_out))
        info[phase]["list_sha256"] = sha256(wdir / f"{phase}.txt")
    for label, cname in enumerate(tree.classes):
        if not counts["train"][cname]:
            first = next(key for key, lab in tree.entries["train"] if lab == label)  # every file is bad
            raise KitError(f"class {cname!r}: none of its train images could be decoded (e.g. "
                           f"{tree.roots['train'] / first})", "put images OpenCV reads in the class folder, "
                           "or remove the folder")
    extra = {"class_names": list(tree.classes), "source": str(tree.root), "val_fraction": tree.val_fraction}
    write_json(wdir / PROFILE_FILE, user_profile(name, net, (c, h, w), extra).record())
    image_store.finish_whole_set(wdir, bad, {
        "dataset": name, "size": [h, w], "channels": c, "shape": [c, h, w], "encoded": False, "net": net,
        "images": str(tree.root), "layout": tree.layout, "val_fraction": tree.val_fraction, "seed": tree.seed,
        "tree_sha256": tree.sha256, "class_names": list(tree.classes), "lmdbs": info, "class_counts": counts,
        "probe": found})
    log.info("dataset %s: %d classes, %d train and %d val images stored %dx%dx%d in %s (NET=%s)", name, k,
             info["train"]["records"], info["val"]["records"], c, h, w, wdir, net)
    return wdir


def read_groups(path: Path, classes: tuple[str, ...], name: str) -> dict[str, str]:
    """{class: group} from a CSV of `class,group` lines (an optional header `class,group`); exactly two
    groups of at least 2 classes each, every class of the dataset in exactly one."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"groups file {path} does not exist", "pass a CSV file of class,group lines (--groups)")
    known, out = set(classes), {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    for num, row in enumerate(rows, 1):
        row = [f.strip() for f in row]
        if not any(row) or (num == 1 and [f.casefold() for f in row] == ["class", "group"]):
            continue
        if len(row) != 2 or not all(row):
            raise KitError(f"{path} line {num}: expected class,group, got {','.join(row)!r}",
                           "write one class,group line per class")
        cname, group = row
        if cname not in known:
            raise KitError(f"{path} line {num}: {cname!r} is not a class of {name}",
                           f"use its class folder names "
                           f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")
        if cname in out:
            raise KitError(f"{path} line {num}: class {cname!r} is listed twice", "give each class one group")
        out[cname] = group
    missing = [c for c in classes if c not in out]
    if missing:
        raise KitError(f"{path} gives no group to {len(missing)} classes of {name} (e.g. {missing[0]!r})",
                       "add a class,group line for every class")
    groups = sorted(set(out.values()))
    if len(groups) != 2:
        raise KitError(f"{path} names {len(groups)} groups ({', '.join(groups)}); the split needs exactly 2",
                       "give every class one of two groups (the first in sorted order is half A)")
    small = [g for g in groups if sum(v == g for v in out.values()) < 2]
    if small:
        raise KitError(f"{path}: group {small[0]!r} has fewer than 2 classes", "put at least 2 classes in each group")
    return out


def _store(work: Path, name: str) -> tuple[Path, dict]:
    """The finished store of a user dataset and its dataset.json; KitError if it was not added."""
    wdir = layout.dataset_dir(work, name)
    meta = image_store.read_whole_meta(wdir)
    if meta is None or not (wdir / PROFILE_FILE).is_file() or "tree_sha256" not in meta:
        raise KitError(f"dataset {name!r} has not been added to {work} (no finished {wdir})",
                       f"add its images first: make dataset DATASET={name} IMAGES=DIR")
    return wdir, meta


def prepare_user_split(work: Path, name: str, protocol: str, seed: int = 0, per_class: int | None = None,
                       groups: Path | None = None, force: bool = False, mix=None) -> Path:
    """Write the split folder of `protocol` of a user dataset (see the module docstring); return it."""
    wdir, meta = _store(work, name)
    load_user_profiles(work)
    profile(name).check_protocol(protocol)
    if (protocol in ("natman", "mix")) != (groups is not None):
        raise KitError(f"the {protocol} split of {name} {'needs' if groups is None else 'takes no'} groups file",
                       "pass GROUPS=file.csv (--groups) of class,group lines for the natman and mix splits only")
    classes = tuple(meta["class_names"])
    entries = {p: read_image_list(wdir / f"{p}.txt", len(classes)) for p in folder_tree.PHASES}
    lists = ImageLists(folder=Path(meta["images"]), synsets=classes, entries=entries,
                        sha256={f"{p}.txt": meta["lmdbs"][p]["list_sha256"] for p in folder_tree.PHASES})
    kinds, facts = None, None
    if groups is not None:
        of = read_groups(groups, classes, name)
        pair = tuple(sorted(set(of.values())))  # group 1 (natman's A) first
        split = Split(name=layout.split_name("natman"), num_classes=len(classes),
                      halves={"A": [i for i, c in enumerate(classes) if of[c] == pair[0]],
                              "B": [i for i, c in enumerate(classes) if of[c] != pair[0]]})
        if protocol == "mix":
            split = mixed_split([of[c] for c in classes], pair, check_seed(seed), mix)
            facts = {"mix": mix_record(split, [of[c] for c in classes], pair)}
        kinds = {h: [of[classes[i]] for i in cs] for h, cs in split.halves.items()}
    else:
        variables = layout.protocol_spec(protocol).variables
        seed = check_seed(seed) if "seed" in variables else None
        k = layout.check_per_class(per_class, protocol) if "per_class" in variables else None
        split = make_split(protocol, lists, seed=seed, per_class=k)
    for half, labels in split.halves.items():
        if not any(lab in labels for _key, lab in entries["val"]):
            raise KitError(f"half {half} of split {split.name} of {name} has no val images (its classes: "
                           f"{', '.join(classes[i] for i in labels)})", "add val images of these classes "
                           f"(DIR/val/<class>/) and rerun make dataset DATASET={name} FORCE=1, or choose other groups")
    sdir = layout.split_dir(work, name, split.name)
    write_split_lists(sdir, lists, split, per_class=per_class, kinds=kinds,
                      force=force, dataset=name, facts=facts)
    prepare_split_db(sdir, wdir, force=force)
    log.info("split %s of %s ready in %s", split.name, name, sdir)
    return sdir
