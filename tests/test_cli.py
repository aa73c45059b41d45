"""The `transfer-kit` CLI: its subcommands and help, and bad input giving one line naming the problem and the fix,
exit 2."""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
import sys

import pytest

from kitcore import layout
from kitcore.layout import split_name, split_protocol
from runner import cli
from runner.cli_common import HelpFormatter, KitParser, positive_int

from conftest import ROOT

SUBCOMMANDS = {"dataset", "split-random", "split-natural", "split-whole", "split-reduced", "split-small", "split-mix",
               "split-groups", "verify", "publish-evidence", "experiment", "experiment-status", "store", "train",
               "grid", "status", "demo", "plots", "publish",
               "import-original", "figures", "table1", "findings", "filters", "compare-original"}
ANALYSIS = {"import-original", "figures", "table1", "findings", "filters"}  # options are analysis/commands.py's


def kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "; fix: " in lines[0]
    return lines[0]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


@pytest.mark.parametrize("args, problem, fix", [
    (["split-random", "--dataset", "imagenet9"], "unknown dataset 'imagenet9'", "fa20"),
    (["split-random", "--seed", "-1"], "invalid split seed -1", "non-negative integer"),
    (["train", "--treatment", "A9B"], "invalid treatment 'A9B'", "n in 1..7"),
    (["train", "--treatment", ""], "invalid treatment ''", "baseA"),
    (["dataset", "--dataset", "imagenet"], "dataset builds the embedded datasets (fa20), not imagenet",
     "make split-random DATASET=imagenet SEED=0 LISTS=dir IMAGES=dir"),
    (["demo", "--dataset", "imagenet"], "demo runs on an embedded dataset, not imagenet", "--dataset fa20"),
    (["train"], "the following arguments are required: --treatment", "see transfer-kit train --help"),
])
def test_bad_arguments(tmp_path, args, problem, fix):
    line = one_line_error(kit(*args, "--work", str(tmp_path)))
    assert problem in line and fix in line
    assert not any(tmp_path.iterdir()), "a refused command must not write anything"


@pytest.mark.parametrize("args", [
    ["train", "--treatment", "baseA", "--iters", "0"], ["train", "--treatment", "baseA", "--threads", "-1"],
    ["train", "--treatment", "baseA", "--batch", "two"], ["grid", "--jobs", "0"], ["grid", "--test-iter", "0"],
    ["demo", "--iters", "-5"], ["split-random", "--jobs", "0"],
    ["status", "--per-class", "0"], ["split-reduced", "--per-class", "0"], ["split-small", "--per-class", "-2"],
    ["verify", "--per-class", "0"], ["train", "--treatment", "baseA", "--protocol", "reduced", "--per-class", "x"],
])
def test_counts_must_be_positive(tmp_path, args):
    flag, value = args[-2:]
    line = one_line_error(kit(*args, "--work", str(tmp_path)))
    assert f"argument {flag}: must be a positive integer, got '{value}'" in line
    if flag == "--per-class":  # k has no default: leaving the flag out is an error too, so the fix never offers it
        assert "fix: pass k, the train images per class, a whole number above 0, e.g. --per-class 10" in line
        assert "leave" not in line
    else:
        assert "fix: pass a whole number above 0, or leave the flag out for its default" in line
    assert not any(tmp_path.iterdir())


def test_positive_int():
    assert positive_int("1") == 1 and positive_int("300") == 300
    for text in ("0", "-1", "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="must be a positive integer"):
            positive_int(text)


def test_train_before_the_split_names_the_make_command(tmp_path):
    line = one_line_error(kit("train", "--treatment", "baseB", "--seed", "2", "--work", str(tmp_path)))
    assert "split random2 of fa20 is not prepared" in line
    assert "make split-random DATASET=fa20 SEED=2" in line


def test_plots_without_runs(tmp_path):
    line = one_line_error(kit("plots", "--work", str(tmp_path)))
    assert "no runs under" in line and "make train TREATMENT=baseA" in line


def test_status_of_a_missing_work_folder(tmp_path):
    line = one_line_error(kit("status", "--work", str(tmp_path / "nowhere")))
    assert f"work folder {tmp_path / 'nowhere'} does not exist" in line and "make status WORK=DIR" in line
    assert not (tmp_path / "nowhere").exists()
    proc = kit("status", "--work", str(tmp_path), "--treatments", "baseA,baseB")
    assert proc.returncode == 0 and "2 not started" in proc.stdout, proc.stderr


def test_the_registered_subcommands_each_with_its_handler_and_help(capsys):
    parser = cli.build_parser()
    subs = subparsers(parser)
    assert set(subs) == SUBCOMMANDS
    for name, sub in subs.items():
        assert callable(sub.get_default("handler")), name
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: transfer-kit {name} "), name


def test_the_docstring_lists_each_area_and_its_subcommands():
    listed = set()
    text = re.sub(r"\n {12}", " ", cli.__doc__.split("Subcommands", 1)[1])  # an area's line may wrap
    for line in text.splitlines()[1:]:
        m = re.fullmatch(r"  \w+ +(.+) \((\w+)/(\w+)\.py\)", line)
        if not m:
            break
        names = {n.strip() for n in m.group(1).split(":")[0].split(",")}
        sub = KitParser(prog="transfer-kit").add_subparsers()
        importlib.import_module(f"{m.group(2)}.{m.group(3)}").add_parsers(sub, HelpFormatter)
        assert set(sub.choices) == names, line
        listed |= names
    assert listed == SUBCOMMANDS


def option_blocks(help_text: str) -> dict[str, str]:
    """{flag: its help, whitespace collapsed} from the options section of a --help text."""
    section = help_text.split("\noptions:\n", 1)[1]
    return {b.split()[0].rstrip(","): " ".join(b.split()) for b in re.split(r"\n(?=  -)", section)}


def test_help_shows_each_default_once():
    checked = 0
    for name, sub in subparsers(cli.build_parser()).items():
        for _flag, text in option_blocks(sub.format_help()).items():
            assert "(default: None)" not in text and "(default: False)" not in text, (name, text)
            assert text.count("default") <= 1, (name, text)
            takes_value = re.match(r"--[\w-]+ ([A-Z_]+|\{[^}]*\}) ", text)
            if name not in ANALYSIS and takes_value and "(required)" not in text:
                assert text.count("default") == 1, (name, text)
                checked += 1
    assert checked > 40
    blocks = option_blocks(subparsers(cli.build_parser())["train"].format_help())
    assert blocks["--iters"].endswith("iteration budget (default: the solver's max_iter)")
    assert blocks["--work"].endswith("(default: work)") and blocks["--gpu"].endswith("(default: off)")


def make_n(*args: str) -> list[str]:
    out = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (line,) = [ln for ln in out.splitlines() if f"transfer-kit {args[0]} " in ln]
    return shlex.split(line)[1:]


def test_make_train_forwards_protocol_mode_and_perclass():
    words = make_n("train", "TREATMENT=A3B", "PROTOCOL=natman", "MODE=gpu", "PERCLASS=5")
    args = cli.build_parser().parse_args(words)
    assert (args.treatment, args.protocol, args.gpu, args.per_class) == ("A3B", "natman", True, 5)
    args = cli.build_parser().parse_args(make_n("train", "TREATMENT=baseA"))
    assert (args.protocol, args.gpu, args.per_class, args.iters) == ("random", False, None, None)
    assert (args.batch, args.test_iter) == (None, None)


@pytest.mark.parametrize("target", ["train", "grid", "status"])
def test_make_forwards_batch_and_test_iter_as_the_commands_the_kit_prints_name_them(target):
    """BATCH= and TEST_ITER= reach train, grid and status; layout.train_command writes them back the same way."""
    words = make_n(target, "TREATMENT=baseA", "BATCH=4", "TEST_ITER=3", "ITERS=2")
    args = cli.build_parser().parse_args(words)
    assert (args.batch, args.test_iter) == (4, 3)
    cmd = layout.train_command("baseA", "fa20", "random", 0, iters=2, batch=4, test_iter=3)
    assert cmd.endswith("ITERS=2 BATCH=4 TEST_ITER=3")
    again = cli.build_parser().parse_args(make_n(*shlex.split(cmd)[1:]))
    assert (again.treatment, again.iters, again.batch, again.test_iter) == ("baseA", 2, 4, 3)


def test_make_verify_and_status_forward_the_split():
    args = cli.build_parser().parse_args(make_n("verify", "DATASET=imagenet", "PROTOCOL=reduced", "PERCLASS=5",
                                                "FULL=1", "WORK=/w"))
    assert (str(args.work), args.dataset, args.protocol, args.per_class, args.full) == ("/w", "imagenet", "reduced",
                                                                                       5, True)
    assert cli.build_parser().parse_args(make_n("verify")).full is False
    assert cli.build_parser().parse_args(make_n("status", "PROTOCOL=reduced", "PERCLASS=7")).per_class == 7


@pytest.mark.parametrize("protocol, seed, per_class", [("random", 3, None), ("natman", 0, None),
                                                       ("whole", 0, None), ("reduced", 0, 5)])
def test_split_names_round_trip(protocol, seed, per_class):
    assert split_protocol(split_name(protocol, seed, per_class)) == (protocol, seed, per_class)


@pytest.mark.parametrize("args, problem, fix", [
    ([], "split random0 of fa20 is not prepared", "fix: make split-random DATASET=fa20 SEED=0"),
    (["--split", "natman"], "split natman of fa20 is not prepared", "fix: make split-natural DATASET=fa20"),
    (["--split", "natman", "--seed", "1"], "--split natman names the split already", "not both"),
    (["--split", "reduced0"], "unknown split name 'reduced0'", "reduced<k>"),
    (["--protocol", "reduced", "--per-class", "5"], "protocol 'reduced' has no split of fa20", "random, natman"),
    (["--dataset", "imagenet", "--protocol", "reduced"], "the reduced protocol needs k", "--per-class k"),
])
def test_verify_errors(tmp_path, args, problem, fix):
    line = one_line_error(kit("verify", "--work", str(tmp_path), *args))
    assert problem in line and fix in line


def test_verify_a_prepared_split(tmp_path):
    assert kit("split-random", "--work", str(tmp_path), "--seed", "1").returncode == 0
    proc = kit("verify", "--work", str(tmp_path), "--seed", "1", "--full")
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stderr
    assert lines[-1].startswith(f"OK: split random1 of fa20: {len(lines) - 1} files match manifest.json (full")
    assert any("A_train_lmdb" in ln for ln in lines[:-1])
    mean = tmp_path / "fa20" / "random1" / "data" / "B_mean.binaryproto"
    mean.write_bytes(mean.read_bytes()[:-4] + b"\0\0\0\1")
    line = one_line_error(kit("verify", "--work", str(tmp_path), "--split", "random1"))
    assert "B_mean.binaryproto" in line and "fix: make split-random DATASET=fa20 SEED=1 FORCE=1" in line


def test_split_random_on_a_full_disk_is_one_line_then_rerun_finishes(small_disk):
    """`transfer-kit split-random` on a 12 MiB file system: the dataset (6.8 MB) fits, the split's LMDBs do not.
    One line names the LMDB and the room left (no traceback), no manifest: the split is unfinished; with room,
    the same command finishes and the split verifies."""
    mnt = small_disk("12m")
    args = ("split-random", "--work", str(mnt / "w"), "--seed", "0")
    proc = kit(*args)
    lines = [ln for ln in re.split(r"[\r\n]", proc.stderr) if ln.strip()]  # progress bars end in \r
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    sdir = mnt / "w" / "fa20" / "random0"
    assert lines[-1].startswith(f"error: disk full while writing {sdir / 'data' / 'A_train_lmdb'} (")
    assert "KiB free, about 6625 KiB needed; mdb_txn_commit: " in lines[-1] and "; fix: free space" in lines[-1]
    assert not (sdir / "manifest.json").exists() and not (sdir / "data" / "A_train_lmdb").exists()
    small_disk.resize(mnt, "32m")
    assert kit(*args).returncode == 0
    proc = kit("verify", "--work", str(mnt / "w"), "--seed", "0")
    assert proc.returncode == 0 and "OK: split random0 of fa20: 7 files match manifest.json" in proc.stdout, proc
