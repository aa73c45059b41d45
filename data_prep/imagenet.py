"""ImageNet (ILSVRC2012) per-split data: lists -> split -> (with IMAGES) LMDBs + means + manifest.

The ImageNet counterpart of `prepare.py` (which owns the embedded FA-20):
ImageNet is not built by the kit but read from the user's LISTS and IMAGES
folders, so it has its own entry point, `prepare_imagenet`. Layout:
```
work/imagenet/dataset/        train_lmdb, val_lmdb (keyed by path), bad_images.txt, dataset.json
work/imagenet/<split>/        split.json, lists/{half}_{train,val}.txt          (always)
    data/{half}_{train,val}_lmdb, data/{half}_mean.binaryproto, manifest.json  (with IMAGES)
```
`<split>` is `random<s>`, `natman` (A natural, B man-made), `mix<s>m<m>`
(natman's halves, m classes swapped), `reduced<k>` or `all` (see
`image_lists`). The LMDBs, means and manifest of a split come from the whole
set by `store_splits.prepare_split_db`, as a user's folder dataset's do.
"""
from __future__ import annotations

import logging
from pathlib import Path

from data_prep import image_store
from data_prep.image_lists import DATASET, ImageLists, load_lists, make_split, write_split_lists
from data_prep.splits import Split, mix_record
from data_prep.store_splits import prepare_split_db
from kitcore import layout

log = logging.getLogger(__name__)


def imagenet_split_dir(work: Path, name: str) -> Path:
    """Return <work>/imagenet/<name> (kitcore.layout)."""
    return layout.split_dir(work, DATASET, name)


def _kinds(lists: ImageLists, split: Split) -> tuple[dict[str, list[str]] | None, dict | None]:
    """Per-half class kinds (natural / man-made) of the natman and mixed splits, else None; and the mixed
    split's `mix` facts of split.json (data_prep.splits.mix_record), else None."""
    protocol = layout.split_protocol(split.name)[0]
    if protocol not in ("natman", "mix"):
        return None, None
    from data_prep.natman import GROUPS, kinds_of
    kinds = kinds_of(lists.synsets)
    return ({h: [kinds[c] for c in cs] for h, cs in split.halves.items()},
            {"mix": mix_record(split, kinds, GROUPS)} if protocol == "mix" else None)


def prepare_imagenet(work: Path, lists_dir: Path, protocol: str, seed: int | None = None,
                     per_class: int | None = None, images: Path | None = None, jobs: int = 1,
                     force: bool = False, encoded: bool = False, mix=None) -> Path:
    """Write the split of `protocol` (random, natman, whole, reduced, small, mix: MIX=m or P%) of LISTS; with
    `images` also its LMDBs and means.

    `encoded`: the whole set (and so every half) holds encoded JPEG Datums, as
    `convert_imageset --encoded` (needs Caffe built with OpenCV to use)."""
    layout.split_name(protocol, seed=seed, per_class=per_class, mix=0 if protocol == "mix" else None)
    if protocol == "mix":  # bad arguments fail before any file is read
        layout.parse_mix(mix)
    if encoded and images is not None:
        from kitcore.caffe_env import require_opencv
        require_opencv("encoded Datums (ENCODED=1) for compute_image_mean and Caffe's Data layer")
    lists = load_lists(lists_dir)
    split = make_split(protocol, lists, seed=seed, per_class=per_class, mix=mix)
    sdir = imagenet_split_dir(work, split.name)
    kinds, facts = _kinds(lists, split)
    write_split_lists(sdir, lists, split, per_class=per_class, kinds=kinds, force=force, facts=facts)
    if images is None:
        log.info("lists of %s written to %s; pass IMAGES (--images) to build its LMDBs and means",
                 split.name, sdir / "lists")
        return sdir
    wdir = image_store.build_whole_set(work, lists, images, jobs=jobs, encoded=encoded, reencode=force)
    prepare_split_db(sdir, wdir, force=force)
    return sdir
