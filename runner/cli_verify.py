"""The verify and publish-evidence subcommands of transfer-kit: check a split's files, and a build's runs.

publish-evidence (runner.evidence): published runs trained again on this
build; where each ended in its record's model, its record is published as
evidence that the two builds train the same nets (kitcore.builds).

The split is named by the run variables (--protocol, --seed, --per-class, as
`make train` takes them) or by its folder name (--split random0, natman, all,
reduced5). data_prep.verify.verify_split checks the files its manifest.json
lists (--full: every record; else the fast checks, which read a sample of each
large LMDB); a problem is a one-line error whose fix is the make command that
rebuilds the split (FORCE=1).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kitcore.errors import KitError
from kitcore.layout import split_command, split_dir, split_mix, split_name, split_protocol
from kitcore.profiles import profile
from runner.cli_common import per_class_count, subcommand


def add_parsers(sub, fmt) -> None:
    """verify."""
    p = subcommand(sub, "verify", fmt, "check a prepared split's LMDBs, means and split.json against its manifest.json")
    p.add_argument("--work", type=Path, default=Path("work"), help="work folder for data and runs")
    p.add_argument("--dataset", default="fa20", help="dataset of the split (fa20, imagenet, ...)")
    p.add_argument("--protocol", default=None,
                   help="protocol whose split to check (random, natman, whole, reduced) (default: random)")
    p.add_argument("--seed", type=int, default=None, help="random split seed (default: 0)")
    p.add_argument("--per-class", type=per_class_count, default=None,
                   help="protocol reduced: k of split reduced{k} (default: none; the reduced protocol needs it)")
    p.add_argument("--mix", type=int, default=None, help="protocol mix: m of split mix{seed}m{m} (default: none)")
    p.add_argument("--split", default=None,
                   help="the split's folder name instead of --protocol/--seed/--per-class, e.g. random0, natman, "
                        "all, reduced5 (default: none)")
    p.add_argument("--full", action="store_true",
                   help="check every record of every LMDB (default: off, the fast checks: a sample of each large LMDB)")
    p.set_defaults(handler=_verify)
    p = subcommand(sub, "publish-evidence", fmt,
                   "publish retrained published runs that ended in their records' models: evidence that this build "
                   "trains the same nets as theirs")
    p.add_argument("--work", type=Path, default=Path("work"), help="work folder the runs were trained again in")
    p.add_argument("--dataset", default="fa20", help="dataset of the runs")
    p.add_argument("--records", type=Path, default=None, help="records root (default: results/DATASET of the kit)")
    p.add_argument("--runs", required=True,
                   help="comma-separated split/treatment pairs, e.g. small0k5/baseB,random0/baseB (required)")
    p.set_defaults(handler=_evidence)


def _evidence(args: argparse.Namespace) -> int:
    """Publish each named run as evidence; print one line per run."""
    from kitcore.profiles import KIT
    from runner.evidence import publish_evidence
    records = args.records if args.records is not None else KIT / "results" / args.dataset
    for pair in filter(None, (x.strip() for x in args.runs.split(","))):
        split, _, treatment = pair.partition("/")
        if not treatment:
            raise KitError(f"--runs entry {pair!r} is not split/treatment", "write e.g. small0k5/baseB")
        print(publish_evidence(args.work, args.dataset, records, split, treatment))
    return 0


def _selection(args: argparse.Namespace) -> tuple[str, int, int | None, int | None]:
    """(protocol, seed, per_class, mix) from --split, or from --protocol/--seed/--per-class/--mix."""
    if args.split is None:
        return args.protocol or "random", 0 if args.seed is None else args.seed, args.per_class, args.mix
    if args.protocol is not None or args.seed is not None or args.per_class is not None or args.mix is not None:
        raise KitError(f"--split {args.split} names the split already",
                       "pass either --split NAME or --protocol/--seed/--per-class/--mix, not both")
    return (*split_protocol(args.split), split_mix(args.split))


def _verify(args: argparse.Namespace) -> int:
    """Check one split; print each line verify_split returns and a final OK line."""
    protocol, seed, per_class, mix = _selection(args)
    dataset = profile(args.dataset)
    dataset.check_protocol(protocol)
    dataset.check_seed(seed)
    name = split_name(protocol, seed, per_class, mix)
    sdir = split_dir(args.work, args.dataset, name)
    if not sdir.is_dir():
        raise KitError(f"split {name} of {args.dataset} is not prepared (no folder {sdir})",
                       split_command(args.dataset, protocol, seed, per_class, work=args.work, mix=mix))
    from data_prep.verify import verify_split
    fix = split_command(args.dataset, protocol, seed, per_class, force=True, work=args.work, mix=mix)
    lines = verify_split(sdir, full=args.full, fix=fix)
    for line in lines:
        print(line)
    print(f"OK: split {name} of {args.dataset}: {len(lines)} files match manifest.json "
          f"({'full: every record' if args.full else 'fast checks'}) in {sdir}")
    return 0
