"""The compare-original subcommand of transfer-kit: the kit's CaffeNet files against the authors' run folders.

Every difference is printed per folder and marked allowed (with the key of
its reason in generators.compare.ALLOWED) or NOT ALLOWED; the exit status is 1
when any folder has a difference that is not allowed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kitcore.errors import KitError
from runner.cli_common import subcommand


def add_parsers(sub, fmt) -> None:
    """compare-original."""
    p = subcommand(sub, "compare-original", fmt,
                   "compare the kit's prototxt with authors' run folders (exit 1 on a difference not allowed)")
    p.add_argument("run_folders", nargs="*", type=Path, metavar="RUN_FOLDER",
                   help="authors' run folder(s) named like half0A, transfer-ft0A0B_1_3, nolearn_1_3")
    p.add_argument("--list-allowed", action="store_true", help="print the allowed differences with their reasons")
    p.set_defaults(handler=_compare_original)


def _compare_original(args: argparse.Namespace) -> int:
    """Print every difference per folder; 1 when any is not in the allowed list."""
    from generators.compare import ALLOWED, compare_folder
    if args.list_allowed:
        for allowed in ALLOWED:
            print(f"{allowed.key}: {allowed.reason}")
    if not args.run_folders and not args.list_allowed:
        raise KitError("no RUN_FOLDER given",
                       "pass authors' run folders, e.g. ../shared/reference/original_runs/half0A")
    failed = 0
    for folder in args.run_folders:
        results = compare_folder(folder)
        bad = [d for d, allowed in results if allowed is None]
        for d, allowed in results:
            print(f"{folder.name}: {'allowed [' + allowed.key + ']' if allowed else 'NOT ALLOWED'}: {d}")
        print(f"{folder.name}: {len(results)} differences, {len(bad)} not allowed: {'FAIL' if bad else 'OK'}")
        failed += bool(bad)
    return 1 if failed else 0
