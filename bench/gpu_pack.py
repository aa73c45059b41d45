"""Pack what `bench/gpu_check.sh` needs on a GPU machine that is not in the repo (run here, with the kit's venv).

    python bench/gpu_pack.py PACK [--work WORK] [--force] [--skip-debs]

PACK/ gets:
  sdist/   the pinned brocolli-caffe sdist, from build_caffe.sh's cache
  debs/    Caffe's host libraries as Debian .debs (caffe_build/host_prefix.sh download)
  fa20/    FA-20 random0's B half: train and val LMDBs (tar.xz; the check unpacks them) and the mean
  nets/    train_val.prototxt + solver.prototxt: the kit's FA-20 baseB (generators.runfiles.run_files), 100
           iterations, every loss logged (display 1), a test at 0, 50 and 100, one snapshot at the end, the
           kit's random_seed (patch 07's deterministic streams); solver_seed2.prototxt (random_seed 2: the
           dropout-mask spread); train_val_nodrop.prototxt (every Dropout's dropout_ratio 0: CPU Dropout
           draws from boost, GPU Dropout from cuRAND, so only without dropout can CPU and GPU agree);
           init.caffemodel (the baseB net's seeded initial weights, pycaffe) and init_ulp.caffemodel (every
           non-zero weight moved by one float32 ulp, random direction: the rounding-size perturbation that
           sizes the CPU-vs-GPU tolerance); paper_baseB/paper_A7B.prototxt (the paper's CaffeNet as the
           kit generates it, Data layers replaced by DummyData: 256 x 3 x 227 x 227 in TRAIN, the template's
           test batch in TEST, for `caffe time`); paper_solver.json (the paper solver's schedule).
  manifest.json  written last (to a temporary name first): every file's size and sha256, and the facts.
A complete PACK (manifest.json) is not overwritten without --force.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from kitcore import atomic
from kitcore.errors import KitError

os.environ.setdefault("GLOG_minloglevel", "2")  # pycaffe's net set-up logs
ROOT = Path(__file__).resolve().parents[1]

SDIST = "brocolli-caffe-9.0.2.tar.gz"
DATASET, SEED, HALF, TREATMENT = "fa20", 0, "B", "baseB"
ITERS, TEST_INTERVAL = 100, 50
PAPER_BATCH, PAPER_SHAPE, PAPER_CLASSES = 256, (3, 227, 227), 500
MARK = ".gpu-pack"  # written first: a folder with it and no manifest.json is an unfinished pack
CARRY_LIMIT = 64 * 2**20


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, the kit's form
        print(f"error: {message}; fix: python bench/gpu_pack.py PACK [--work WORK] [--force] [--skip-debs]",
              file=sys.stderr)
        sys.exit(2)


def _sdist() -> Path:
    """The sdist build_caffe.sh downloaded, checked against the sha256 it pins."""
    base = os.environ.get("CAFFE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
        / "transfer-kit" / "caffe"
    path = Path(base) / "sdist" / SDIST
    pinned = re.search(r"^SDIST_SHA256=([0-9a-f]{64})$", (ROOT / "caffe_build" / "build_caffe.sh").read_text(), re.M)
    if not path.is_file():
        raise KitError(f"the Caffe sdist is not at {path}", "make caffe (it downloads the sdist into that cache)")
    if pinned is None or atomic.sha256(path) != pinned.group(1):
        raise KitError(f"{path} does not have the sha256 caffe_build/build_caffe.sh pins",
                       f"delete it and run make caffe (which downloads {SDIST} again)")
    return path


def _debs(pack: Path, skip: bool) -> str:
    script = ROOT / "caffe_build" / "host_prefix.sh"
    if skip:
        return "skipped (--skip-debs): this pack serves gpu_check.sh --root ROOT only"
    if not script.is_file():
        raise KitError("caffe_build/host_prefix.sh is not there yet (TODO: its 'download DEBDIR' fetches Caffe's host "
                       "libraries as .debs)", "add caffe_build/host_prefix.sh, or pass --skip-debs for a pack used "
                       "only with gpu_check.sh --root ROOT")
    (pack / "debs").mkdir()
    proc = subprocess.run(["bash", str(script), "download", str(pack / "debs")], cwd=ROOT, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        tail = (proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise KitError(f"caffe_build/host_prefix.sh download failed ({tail})",
                       "fix the download, then rerun with --force")
    return "caffe_build/host_prefix.sh download"


def _kit(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        raise KitError(f"transfer-kit {' '.join(args)} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}",
                       "run it by hand (make dataset first if FA-20 is not built)")


def _split(work: Path, pack: Path) -> dict:
    """Pack half B of FA-20 random0 (made with split-random when the work folder has none); return its facts."""
    from data_prep.verify import verify_files
    split = work / DATASET / f"random{SEED}"
    if not (split / "manifest.json").is_file():
        _kit("split-random", "--work", str(work), "--dataset", DATASET, "--seed", str(SEED))
    manifest = json.loads((split / "manifest.json").read_text())
    files = {rel: e for rel, e in manifest["files"].items() if e.get("half") == HALF}
    verify_files(split, files, {HALF}, full=True, fix=f"make split-random DATASET={DATASET} SEED={SEED} FORCE=1")
    out = pack / "fa20"
    out.mkdir()
    for kind in ("train", "val"):
        name = f"{HALF}_{kind}_lmdb"
        with tarfile.open(out / f"{name}.tar.xz", "w:xz", preset=6) as tar:
            tar.add(split / "data" / name, arcname=name)
    shutil.copy(split / "data" / f"{HALF}_mean.binaryproto", out)
    halves = json.loads((split / "split.json").read_text())["halves"]
    return {"work": str(work), "split": split.name, "half": HALF, "classes": halves[HALF],
            "num_classes": len(halves[HALF]), "lmdbs": {rel.split("/")[-1]: {k: files[rel][k] for k in (
                "records", "data_mdb_bytes")} for rel in files if rel.endswith("_lmdb")},
            "mean_sha256": files[f"data/{HALF}_mean.binaryproto"]["sha256"]}


def _write(path: Path, message) -> None:
    from generators.netgen import to_text
    atomic.write_text(path, to_text(message))


def _init_models(net, seed: int, input_shape, out: Path) -> dict:
    """init.caffemodel (the seeded fillers) and init_ulp.caffemodel (each non-zero weight one ulp away)."""
    import numpy as np

    from generators.netgen import to_deploy, to_text
    from kitcore.caffe_env import import_caffe
    caffe = import_caffe()
    caffe.set_random_seed(seed)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(to_text(to_deploy(net, input_shape)))
    try:
        model = caffe.Net(f.name, caffe.TEST)
    finally:
        os.unlink(f.name)
    model.save(str(out / "init.caffemodel"))
    rng, moved, total = np.random.default_rng(seed), 0, 0
    for blobs in model.params.values():
        for blob in blobs:
            data = blob.data
            away = np.where(rng.random(data.shape) < 0.5, -np.inf, np.inf).astype(np.float32)
            new = np.where(data != 0, np.nextafter(data, away), data)
            moved, total = moved + int(np.count_nonzero(new != data)), total + data.size
            data[...] = new
    model.save(str(out / "init_ulp.caffemodel"))
    del model
    return {"params": total, "moved_one_ulp": moved}


def _dummy_data(net, batch: dict) -> None:
    """Replace each Data layer by DummyData of its phase's batch. Constant fillers: DummyData refills any
    other filler on the CPU at every forward (40 M gaussian draws per batch here), which `caffe time` would count."""
    from kitcore.caffe_env import pb2
    caffe_pb2 = pb2()
    for layer in net.layer:
        if layer.type != "Data":
            continue
        phase = "TRAIN" if caffe_pb2.TRAIN in {r.phase for r in layer.include} else "TEST"
        dummy = caffe_pb2.LayerParameter(name=layer.name, type="DummyData", top=list(layer.top))
        dummy.include.extend(layer.include)
        dummy.dummy_data_param.shape.add(dim=[batch[phase], *PAPER_SHAPE])
        dummy.dummy_data_param.shape.add(dim=[batch[phase]])
        dummy.dummy_data_param.data_filler.add(type="constant", value=1.0)
        dummy.dummy_data_param.data_filler.add(type="constant", value=0)  # labels: a class of the 500
        layer.CopyFrom(dummy)


def _nets(pack: Path, split: dict) -> dict:
    from generators import netgen
    from generators.runfiles import crop_size, run_files
    from kitcore.profiles import profile
    from kitcore.treatments import parse
    out = pack / "nets"
    out.mkdir()
    fa = profile(DATASET)
    files = run_files(fa, parse(TREATMENT), split["num_classes"], SEED, "../../data", iters=ITERS,
                      val_records=split["lmdbs"][f"{HALF}_val_lmdb"]["records"])
    solver = files.solver
    solver.display = 1                    # every iteration's loss in the log
    solver.test_interval = TEST_INTERVAL  # the scaled 2 would test 50 times; tests at 0, 50, 100
    solver.snapshot = 0                   # no snapshot before the end (snapshot_after_train: one at 100)
    _write(out / "train_val.prototxt", files.net)
    _write(out / "solver.prototxt", solver)
    solver.random_seed = files.seed + 1
    _write(out / "solver_seed2.prototxt", solver)
    nodrop = type(files.net)()
    nodrop.CopyFrom(files.net)
    dropouts = [layer for layer in nodrop.layer if layer.type == "Dropout"]
    for layer in dropouts:
        layer.dropout_param.dropout_ratio = 0.0
    _write(out / "train_val_nodrop.prototxt", nodrop)
    init = _init_models(files.net, files.seed, fa.input_shape(crop_size(files.net)), out)
    im = profile("imagenet")
    paper = {}
    for name in ("baseB", "A7B"):
        pf = run_files(im, parse(name), PAPER_CLASSES, SEED, "data")
        batch = {ph: netgen.phase_net(pf.net, ph).layer[0].data_param.batch_size for ph in ("TRAIN", "TEST")}
        frozen = [layer.name for layer in netgen.weight_layers(pf.net) if layer.param[0].lr_mult == 0]
        _dummy_data(pf.net, {"TRAIN": PAPER_BATCH, "TEST": batch["TEST"]})
        _write(out / f"paper_{name}.prototxt", pf.net)
        paper[name] = {"template_batch": batch, "frozen": frozen, "fc8": netgen.weight_layers(pf.net)[-1].name}
    s = pf.solver
    paper_solver = {"template": im.solvers["*"], "max_iter": s.max_iter, "test_interval": s.test_interval,
                    "test_iter": s.test_iter[0], "stepsize": s.stepsize, "base_lr": float(f"{s.base_lr:.6g}"),
                    "train_batch": paper["baseB"]["template_batch"]["TRAIN"],
                    "test_batch": paper["baseB"]["template_batch"]["TEST"], "timed_train_batch": PAPER_BATCH,
                    "classes": PAPER_CLASSES, "paper_days": 9.5, "paper_gpu": "NVIDIA Tesla K20"}
    atomic.write_json(out / "paper_solver.json", paper_solver)
    return {"fa20": {"treatment": TREATMENT, "iters": solver.max_iter, "test_interval": TEST_INTERVAL,
                     "test_iter": solver.test_iter[0], "stepsize": solver.stepsize, "random_seed": files.seed,
                     "dropout_layers": [layer.name for layer in dropouts], **init},
            "paper": paper, "paper_solver": paper_solver}


def _git_commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _prepare(pack: Path, force: bool) -> None:
    """Refuse to overwrite a complete pack (or a folder that is not a pack); clear an unfinished one."""
    if (pack / "manifest.json").exists() and not force:
        raise KitError(f"{pack} is a complete GPU pack (it has manifest.json)",
                       "pass --force to rebuild it, or choose another PACK")
    if pack.exists() and any(pack.iterdir()) and not (pack / MARK).exists():
        raise KitError(f"{pack} exists and is not a GPU pack (no {MARK})", "choose an empty or new PACK folder")
    if pack.exists():
        shutil.rmtree(pack)
    pack.mkdir(parents=True)
    (pack / MARK).write_text("made by bench/gpu_pack.py; complete once manifest.json is there\n")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def make_pack(pack: Path, work: Path, force: bool = False, skip_debs: bool = False) -> dict:
    """Build PACK; return its manifest."""
    t0 = time.monotonic()
    _prepare(pack, force)
    sdist = _sdist()
    (pack / "sdist").mkdir()
    shutil.copy(sdist, pack / "sdist" / SDIST)
    debs = _debs(pack, skip_debs)
    split = _split(work, pack)
    nets = _nets(pack, split)
    files = {str(p.relative_to(pack)): {"bytes": p.stat().st_size, "sha256": atomic.sha256(p)}
             for p in sorted(pack.rglob("*")) if p.is_file() and p.name != MARK}
    parts = {}
    for rel, entry in files.items():
        parts[rel.split("/")[0]] = parts.get(rel.split("/")[0], 0) + entry["bytes"]
    manifest = {"format": 1, "made_by": "bench/gpu_pack.py", "kit_commit": _git_commit(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sdist": SDIST, "debs": debs, "split": split,
                "nets": nets, "files": files, "bytes": parts, "total_bytes": sum(parts.values()),
                "seconds": round(time.monotonic() - t0, 1)}
    atomic.write_json(pack / "manifest.json", manifest)  # last, through a temporary name
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="gpu_pack.py", description=__doc__.split("\n")[0])
    p.add_argument("pack", type=Path, help="the folder to make (e.g. gpu-pack)")
    p.add_argument("--work", type=Path, default=ROOT / "work",
                   help="the kit's work folder with (or for) FA-20's random0 split (default: work)")
    p.add_argument("--force", action="store_true", help="rebuild a complete PACK")
    p.add_argument("--skip-debs", action="store_true", help="no debs/ (a pack for gpu_check.sh --root ROOT only)")
    args = p.parse_args(argv)
    try:
        m = make_pack(args.pack.resolve(), args.work.resolve(), args.force, args.skip_debs)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parts = ", ".join(f"{k} {_mib(v)}" for k, v in sorted(m["bytes"].items()))
    print(f"GPU pack {args.pack}: {_mib(m['total_bytes'])} ({parts}); {len(m['files'])} files, "
          f"{m['seconds']} s; debs: {m['debs']}")
    if m["total_bytes"] > CARRY_LIMIT - 4 * 2**20:
        print(f"warning: with the repo this is near the {_mib(CARRY_LIMIT)} a device command carries",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
