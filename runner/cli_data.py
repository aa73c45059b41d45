"""The data subcommands of transfer-kit: dataset, split-random, split-natural, split-whole, split-reduced,
split-small, split-mix, split-groups.

An embedded dataset (its profile's `embedded`: FA-20) is built by the kit and
its splits come from data_prep.prepare; a user's dataset (`dataset --dataset
NAME --images DIR`: one folder per class) is decoded once into its whole-set
store and its splits are derived from it (data_prep.folder), the dissimilar
split from a groups file (split-groups); ImageNet has its splits made from
Caffe's lists (--lists) and, with --images, its LMDBs and means
(data_prep.imagenet).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kitcore.errors import KitError
from kitcore.layout import PROTOCOLS as TABLE
from kitcore.layout import split_command
from kitcore.profiles import PROFILES, profile
from runner.cli_common import add_common, dataset_flags, dataset_names, per_class_count, positive_int, subcommand

PROTOCOLS = {p.target: p.name for p in TABLE.values()} | {"split-groups": "natman"}  # make target -> protocol


def _list_options(p: argparse.ArgumentParser, lists_only: bool = False) -> None:
    """Options of datasets that are not embedded (lists_only: the command defaults to one, ImageNet)."""
    if lists_only:
        p.set_defaults(dataset=dataset_names(embedded=False)[0])
        p.add_argument("--force", action="store_true",
                       help="rewrite changed lists; rebuild the split's LMDBs and means")
    p.add_argument("--lists", type=Path, default=None,
                   help="imagenet: folder with Caffe's synsets.txt, train.txt, val.txt (FILE LABEL per line) "
                        "(default: none; needed by a dataset that is not embedded)")
    p.add_argument("--images", type=Path, default=None,
                   help="imagenet: ILSVRC2012 folder (train/<wnid>/*.JPEG, val/*.JPEG); builds LMDBs and means "
                        "(default: none, the lists only)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="imagenet: processes decoding images (first build only)")
    p.add_argument("--encoded", action="store_true",
                   help="imagenet: store JPEG Datums as convert_imageset --encoded (about 8x less disk; "
                        "needs Caffe built with OpenCV: make caffe CAFFE_OPENCV=1)")


def add_parsers(sub, fmt) -> None:
    """dataset and the split-* commands."""
    p = subcommand(sub, "dataset", fmt, "build the embedded dataset and its contact sheet, or add your own images "
                   "(--dataset NAME --images DIR: DIR/train/<class>/*, DIR/val/<class>/*, or DIR/<class>/*)")
    add_common(p, seed=False)
    p.add_argument("--images", type=Path, default=None,
                   help="your dataset: a folder with one subfolder per class (default: none, the embedded dataset)")
    p.add_argument("--net", choices=("small", "caffenet"), default=None,
                   help="your dataset's net: small (the CPU-scale net at the images' size) or caffenet (the "
                        "paper's, 256x256 colour stored, 227 crop) (default: small for images of 64 px or less)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="your dataset without train/ and val/: the seeded share of each class held out as val")
    p.add_argument("--jobs", type=positive_int, default=1, help="your dataset: processes decoding images")
    p.add_argument("--force", action="store_true", help="your dataset: decode the images again")
    p.set_defaults(handler=_dataset)
    p = subcommand(sub, "split-random", fmt, "random A/B class split with LMDBs and means")
    add_common(p)
    p.add_argument("--force", action="store_true", help="rebuild the split's LMDBs and means")
    _list_options(p)
    p.set_defaults(handler=_split)
    p = subcommand(sub, "split-natural", fmt,
                   "natural (A) / man-made (B) split (ImageNet: from WordNet, LMDBs and means with --images; "
                   "fa20: animals / Fashion-MNIST)")
    add_common(p, seed=False)
    _list_options(p, lists_only=True)
    p.set_defaults(handler=_split)
    p = subcommand(sub, "split-whole", fmt,
                   "all classes as one half 'all' (the 1000-class base and random frozen weights; "
                   "ImageNet: LMDBs and means with --images)")
    add_common(p, seed=False)
    _list_options(p, lists_only=True)
    p.set_defaults(handler=_split)
    p = subcommand(sub, "split-reduced", fmt,
                   "ImageNet: all classes, the first k train images of each; LMDBs and means with --images")
    add_common(p, seed=False)
    p.add_argument("--per-class", type=per_class_count, default=None,
                   help="train images per class, k (the authors used 1 2 5 10 25 50 100 250 500 750 1000 1300) "
                        "(default: none; required)")
    _list_options(p, lists_only=True)
    p.set_defaults(handler=_split)
    p = subcommand(sub, "split-small", fmt,
                   "a small target: random split SEED's halves, half B's train set cut to its first k images per "
                   "class (A, and both val sets, as the random split's)")
    add_common(p)
    p.add_argument("--per-class", type=per_class_count, default=None,
                   help="train images per class of half B, k (default: none; required)")
    p.add_argument("--force", action="store_true", help="rebuild the split's LMDBs and means")
    _list_options(p)
    p.set_defaults(handler=_split)
    p = subcommand(sub, "split-mix", fmt,
                   "task distance: natman's halves with m classes swapped between them, drawn with SEED (fa20, "
                   "ImageNet from its lists, your dataset from its GROUPS); m = 0 is natman's split")
    add_common(p)
    p.add_argument("--mix", default=None,
                   help="m, the classes half A takes from group 2 and gives B (FA-20: 0..5), or P%%, a share of A's "
                        "classes from 0%% to 50%% (default: none; required)")
    p.add_argument("--groups", type=Path, default=None,
                   help="your dataset's CSV of class,group lines, as split-groups (default: none; fa20 and ImageNet "
                        "use natural / man-made)")
    p.add_argument("--force", action="store_true", help="rebuild the split's LMDBs and means")
    _list_options(p)
    p.set_defaults(handler=_split)
    p = subcommand(sub, "split-groups", fmt, "your dataset's dissimilar split: two groups of classes from a CSV "
                   "of class,group lines (the first group in sorted order is A), as the paper's natural/man-made")
    add_common(p, seed=False)
    p.add_argument("--groups", type=Path, required=True, help="CSV file, one class,group line per class (required)")
    p.add_argument("--force", action="store_true", help="rebuild the split's LMDBs and means")
    p.set_defaults(handler=_split)


def _list_options_given(args: argparse.Namespace) -> str:
    """'--lists/--images are' or '--encoded is': the options of datasets that are not embedded, given."""
    return "--lists/--images are" if args.lists or args.images else "--encoded is"


def _dataset(args: argparse.Namespace) -> int:
    """Build an embedded dataset and its contact sheet, or add a user's class-per-folder images."""
    if args.images is not None:
        from data_prep.folder import add_dataset
        out = add_dataset(args.work, args.dataset, args.images, net=args.net, val_fraction=args.val_fraction,
                          jobs=args.jobs, force=args.force)
        print(f"{args.dataset} in {out}; next: make split-random DATASET={args.dataset} SEED=0")
        return 0
    if not profile(args.dataset).embedded:
        raise KitError(f"dataset builds the embedded datasets ({', '.join(dataset_names(embedded=True))}), "
                       f"not {args.dataset}", f"{args.dataset}'s splits come from its lists: "
                       f"{split_command(args.dataset, 'random', work=args.work)}")
    from data_prep.fa20 import contact_sheet
    from data_prep.prepare import dataset_dir, dataset_spec
    out = dataset_spec(args.dataset).build(dataset_dir(args.work, args.dataset))
    sheet = contact_sheet(out, out / "contact_sheet.png")
    print(f"{args.dataset} in {out}; contact sheet {sheet}")
    return 0


def _split(args: argparse.Namespace) -> int:
    """split-random/-natural/-whole/-reduced: the split, its LMDBs and means."""
    dataset = profile(args.dataset)
    protocol = PROTOCOLS[args.command]
    if protocol not in dataset.protocols:
        having = [n for n, p in PROFILES.items() if protocol in p.protocols]
        raise KitError(f"{args.command} is for ImageNet only, got --dataset {args.dataset} (no {protocol} split)",
                       f"pass {dataset_flags(having)}")
    if dataset.user:
        return _user_split(args, protocol)
    if args.command == "split-mix" and args.groups is not None:
        raise KitError(f"GROUPS (--groups) is for your own datasets; {args.dataset}'s groups are natural and "
                       "man-made", "leave GROUPS out")
    if args.command == "split-groups":
        raise KitError(f"split-groups is for your own datasets, not {args.dataset}",
                       f"use {split_command(args.dataset, 'natman', work=args.work)} for its natural/man-made split")
    if dataset.embedded:
        if args.lists or args.images or args.encoded:
            listed = " or ".join(f"--dataset {n}" for n in dataset_names(embedded=False))
            raise KitError(f"{_list_options_given(args)} for {listed}, not {args.dataset}",
                           f"pass {dataset_flags(dataset_names(embedded=False))}, or leave them out")
        from data_prep.prepare import prepare_for
        sdir = prepare_for(args.work, args.dataset, protocol, getattr(args, "seed", 0), force=args.force,
                           per_class=getattr(args, "per_class", None), mix=getattr(args, "mix", None))
        print(f"split ready: {sdir}")
        return 0
    if args.lists is None:
        raise KitError(f"{args.command} of {args.dataset} needs the list folder",
                       "pass --lists DIR (LISTS=DIR) holding Caffe's synsets.txt, train.txt, val.txt")
    from data_prep.imagenet import prepare_imagenet
    sdir = prepare_imagenet(args.work, args.lists, protocol, seed=getattr(args, "seed", None),
                            per_class=getattr(args, "per_class", None), mix=getattr(args, "mix", None),
                            images=args.images, jobs=args.jobs,
                            force=args.force, encoded=args.encoded)
    print(f"split ready: {sdir}" + ("" if args.images else " (lists only; --images DIR builds LMDBs and means)"))
    return 0


def _user_split(args: argparse.Namespace, protocol: str) -> int:
    """A split of a user's dataset, derived from its whole-set store (data_prep.folder)."""
    if args.command == "split-natural":
        raise KitError(f"{args.dataset} has no natural/man-made rule",
                       f"give its two groups of classes: make split-groups DATASET={args.dataset} GROUPS=file.csv")
    if getattr(args, "lists", None) or getattr(args, "images", None) or getattr(args, "encoded", False):
        raise KitError(f"--lists/--images/--encoded are not options of {args.dataset}'s splits",
                       "leave them out: its images were added by make dataset")
    from data_prep.folder import prepare_user_split
    sdir = prepare_user_split(args.work, args.dataset, protocol, seed=getattr(args, "seed", 0) or 0,
                              per_class=getattr(args, "per_class", None), groups=getattr(args, "groups", None),
                              force=args.force, mix=getattr(args, "mix", None))
    print(f"split ready: {sdir}")
    return 0
