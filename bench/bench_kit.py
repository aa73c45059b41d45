"""`make bench`: the kit's speed figures, printed; nothing here is a pass/fail test.

(a) launch: training iterations per second of `transfer-kit train` against bare
    `caffe train` on the same prototxt, solver and LMDBs (FA-20 baseA, 1 BLAS
    thread each, kit and bare alternated). Rate from each log's own stamps
    (first to last `Iteration N` line), and wall time of the whole command.
(b) frozen: solver iteration time of A7B against baseB (pycaffe SGDSolver.step on
    the kit's generated train nets, Data layers swapped for DummyData so no
    LMDB is read): the paper's CaffeNet at a small batch, and the FA-20 net.
    Frozen layers (lr_mult 0) skip their backward pass in Caffe.
(c) prep: ImageNet data prep on a synthetic ILSVRC folder: decodes per distinct
    image over every split database (random 0-3, natman, whole, reduced) and
    records written per second, against the authors' way: the real
    `convert_imageset --resize_height=256 --resize_width=256 --shuffle` of the
    OpenCV Caffe variant (`make caffe-opencv`) once per split database, timed
    (without the variant: estimated from the kit's own decode rate).
(d) grid: a 4-run grid with JOBS=1 (each run alone, all cores) and JOBS=2: the
    wall times, speed-up, parallel efficiency and CPU utilisation.
(e), (f) the Caffe build's speed against this core's sgemm rate and against the
    reference build, and its per-layer times: bench/bench_speed.py.
Usage: python bench/bench_kit.py [--only a,b,c,d,e] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # (b) runs in this process: 1 thread, before caffe loads
os.environ.setdefault("GLOG_minloglevel", "2")  # pycaffe's net set-up logs, in this process only
os.environ.setdefault("TQDM_DISABLE", "1")  # (c)'s progress bars
ROOT = Path(__file__).resolve().parents[1]

from kitcore.caffe_log import parse_log  # noqa: E402  (after the thread settings)

from bench_speed import bench_caffenet, bench_speed  # noqa: E402  (bench/ is the script's folder)


def _cli(*args: str, cwd: Path = ROOT) -> float:
    """Run `transfer-kit ARGS`; return its wall time (fail loudly on an error)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        sys.exit(f"bench: transfer-kit {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _rate(log: Path) -> float:
    """Training iterations per second between the first and last `Iteration N` lines of a caffe log."""
    rows = parse_log(log).train
    first, last = rows[0], rows[-1]
    return (last["NumIters"] - first["NumIters"]) / (last["Seconds"] - first["Seconds"])


def bench_launch(work: Path, iters: int, reps: int) -> list[str]:
    """(a) the kit's `train` against bare `caffe train` on the same files."""
    from kitcore.caffe_env import caffe_env, tool
    _cli("split-random", "--work", str(work), "--seed", "0")
    runs = work / "fa20" / "random0" / "runs"
    kit_rates, bare_rates, kit_walls, bare_walls = [], [], [], []
    for rep in range(reps):
        kit_walls.append(_cli("train", "--work", str(work), "--treatment", "baseA", "--iters", str(iters),
                              "--threads", "1", "--force"))
        kit_rates.append(_rate(runs / "baseA" / "train.log"))
        bare = runs / f"bare{rep}"
        (bare / "snapshots").mkdir(parents=True)
        for name in ("train_val.prototxt", "solver.prototxt"):
            shutil.copy(runs / "baseA" / name, bare / name)
        t0 = time.perf_counter()
        with open(bare / "train.log", "w") as log:
            subprocess.run([tool("caffe"), "train", "-solver", "solver.prototxt"], cwd=bare, stdout=log,
                           stderr=subprocess.STDOUT, env=caffe_env(threads=1), check=True)
        bare_walls.append(time.perf_counter() - t0)
        bare_rates.append(_rate(bare / "train.log"))
    k, b = sum(kit_rates) / reps, sum(bare_rates) / reps
    kw, bw = sum(kit_walls) / reps, sum(bare_walls) / reps
    return [f"(a) launch: FA-20 baseA, {iters} iterations, 1 thread, {reps} rep(s) each, alternated",
            f"    kit  {k:6.2f} it/s (log stamps), wall {kw:6.1f} s per command",
            f"    bare {b:6.2f} it/s (log stamps), wall {bw:6.1f} s per command",
            f"    kit / bare iteration rate: {k / b:.3f} (goal >= 0.98); wall ratio bare / kit: {bw / kw:.3f}"]


def _dummy_train_net(template: Path, treatment: str, batch: int, shape: tuple[int, ...], classes: int,
                     exact: bool):
    """The kit's TRAIN net of `treatment` with its Data layer replaced by DummyData (gaussian images, label 0)."""
    from generators import netgen
    from kitcore.caffe_env import pb2
    from kitcore.treatments import parse
    caffe_pb2 = pb2()
    net = netgen.make_treatment(netgen.load_net(template), parse(treatment), netgen.DataSpec("x", "x", "x"),
                                classes, batch_train=batch, exact_classes=exact)
    net = netgen.phase_net(net, "TRAIN")
    data = net.layer[0]
    assert data.type == "Data", data.type
    dummy = caffe_pb2.LayerParameter(name="data", type="DummyData", top=["data", "label"])
    dummy.dummy_data_param.shape.add(dim=[batch, *shape])
    dummy.dummy_data_param.shape.add(dim=[batch])
    dummy.dummy_data_param.data_filler.add(type="gaussian", std=1.0)
    dummy.dummy_data_param.data_filler.add(type="constant", value=0)
    data.CopyFrom(dummy)
    return net


def _step_seconds(workdir: Path, net, steps: int) -> float:
    """Mean seconds of one SGDSolver.step on `net` (after one warm-up step)."""
    from generators import netgen
    from kitcore.caffe_env import import_caffe, pb2
    caffe_pb2 = pb2()
    caffe = import_caffe()
    caffe.set_mode_cpu()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "net.prototxt").write_text(netgen.to_text(net))
    solver = caffe_pb2.SolverParameter(net=str(workdir / "net.prototxt"), base_lr=0.001, momentum=0.9,
                                       lr_policy="fixed", max_iter=10**6, display=0, random_seed=1,
                                       snapshot_prefix=str(workdir / "snap"))
    (workdir / "solver.prototxt").write_text(netgen.to_text(solver))
    sgd = caffe.SGDSolver(str(workdir / "solver.prototxt"))
    sgd.step(1)
    t0 = time.perf_counter()
    sgd.step(steps)
    return (time.perf_counter() - t0) / steps


def bench_frozen(work: Path, caffenet_batch: int, steps: int) -> list[str]:
    """(b) iteration time of A7B against baseB on CaffeNet and on the FA-20 net."""
    lines = ["(b) frozen layers: solver step time of A7B / baseB (pycaffe, DummyData, 1 thread)"]
    for label, template, batch, shape, classes, exact in (
            ("CaffeNet", ROOT / "prototxt" / "caffenet.prototxt", caffenet_batch, (3, 227, 227), 500, False),
            ("FA-20 net", ROOT / "prototxt" / "fa20_caffenet.prototxt", 32, (1, 28, 28), 10, True)):
        times = {name: _step_seconds(work / f"{label}-{name}".replace(" ", ""),
                                     _dummy_train_net(template, name, batch, shape, classes, exact), steps)
                 for name in ("baseB", "A7B")}
        lines.append(f"    {label:9s} batch {batch:3d}: baseB {times['baseB'] * 1000:8.1f} ms, "
                     f"A7B {times['A7B'] * 1000:8.1f} ms, ratio {times['A7B'] / times['baseB']:.3f}"
                     + (" (goal <= 0.5)" if label == "CaffeNet" else ""))
    return lines


def bench_prep(work: Path, train_per_class: int) -> list[str]:
    """(c) ImageNet data prep: decodes per image over every split database, and throughput."""
    from data_prep import image_store
    from data_prep.imagenet import prepare_imagenet
    from data_prep.imagenet_synth import DEFAULT_WNIDS, make_synthetic_ilsvrc
    images, lists = make_synthetic_ilsvrc(work / "src", train_per_class=train_per_class,
                                          val_per_class=max(1, train_per_class // 4))
    calls: list[Path] = []
    real = image_store.decode_resize

    def counted(path, size=image_store.SIZE):
        calls.append(Path(path))
        return real(path, size)
    image_store.decode_resize = counted  # counts the real decoder's calls; nothing replaced
    kinds = [("random", {"seed": s}) for s in range(4)] + [("natman", {}), ("whole", {}),
                                                            ("reduced", {"per_class": 5})]
    from data_prep.image_lists import load_lists
    t0 = time.perf_counter()
    image_store.build_whole_set(work / "work", load_lists(lists), images)
    whole = time.perf_counter() - t0
    decoded = len(calls)
    for kind, kw in kinds:
        prepare_imagenet(work / "work", lists, kind, images=images, **kw)
    total = time.perf_counter() - t0
    image_store.decode_resize = real
    distinct = len(set(calls))
    written = 0
    import lmdb
    for db in (work / "work" / "imagenet").glob("*/data/*_lmdb"):
        with lmdb.open(str(db), readonly=True, lock=False) as env:
            written += env.stat()["entries"]
    per_decode = whole / decoded
    baseline = total - whole + written * per_decode
    convert = _time_convert_imageset(work, images, [p for p in (work / "work" / "imagenet").glob("*/lists")])
    if convert is None:
        other = (f"    decoding once per split database instead (convert_imageset per split; estimated, no "
                 f"OpenCV variant built: the same run with the {written} copies decoded at that rate): about "
                 f"{baseline:.1f} s, {written / baseline:.0f} records/s; kit speed-up {baseline / total:.1f}x")
    else:
        seconds, n_db, n_rec = convert
        other = (f"    convert_imageset once per split database (the OpenCV variant's real tool, {n_db} databases, "
                 f"{n_rec} records, means not included): {seconds:.1f} s, {n_rec / seconds:.0f} records/s; "
                 f"kit (means included) speed-up {seconds / total:.1f}x")
    return [f"(c) data prep: synthetic ILSVRC folder, {distinct} JPEGs of {len(DEFAULT_WNIDS)} classes, "
            f"{len(kinds)} splits -> {written} records in their train/val LMDBs",
            f"    decodes per image over all split databases: {len(calls) / distinct:.2f} (goal 1.0)",
            f"    kit: {total:.1f} s in all, of which {whole:.1f} s decoding the whole set once "
            f"({per_decode * 1000:.1f} ms per image): {written / total:.0f} records/s",
            other]


def _time_convert_imageset(work: Path, images: Path, list_dirs: list[Path]) -> tuple[float, int, int] | None:
    """Wall seconds, databases and records of the OpenCV variant's convert_imageset over every split's
    list files (the authors' way: every database decodes its images); None without the variant."""
    record = Path(sys.prefix) / "caffe_opencv_root"
    tool = Path(record.read_text().strip()) / "build" / "tools" / "convert_imageset" if record.is_file() else None
    if tool is None or not os.access(tool, os.X_OK):
        return None
    env = {**os.environ, "GLOG_minloglevel": "1"}
    seconds, n_db, n_rec = 0.0, 0, 0
    for lists in sorted(list_dirs):
        for list_file in sorted(lists.glob("*_*.txt")):
            phase = list_file.stem.split("_")[-1]
            out = work / "convert" / lists.parent.name / list_file.stem
            out.parent.mkdir(parents=True, exist_ok=True)
            cmd = [str(tool), "--resize_height=256", "--resize_width=256", "--shuffle", "--backend=lmdb",
                   f"{images / phase}/", str(list_file), str(out)]
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            seconds += time.perf_counter() - t0
            n_db += 1
            n_rec += sum(1 for line in list_file.read_text().splitlines() if line.strip())
    return seconds, n_db, n_rec


def bench_grid(work: Path, iters: int) -> list[str]:
    """(d) a 4-run grid with JOBS=1 and JOBS=2: speed-up, efficiency and CPU utilisation."""
    cores = len(os.sched_getaffinity(0))
    out = [f"(d) grid: baseA, baseB, A1B, B1B+ at {iters} iterations on FA-20, {cores} cores"]
    walls = {}
    for jobs in (1, 2):
        w = work / f"jobs{jobs}"
        _cli("split-random", "--work", str(w), "--seed", "0")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        walls[jobs] = _cli("grid", "--work", str(w), "--treatments", "baseA,baseB,A1B,B1B+", "--iters", str(iters),
                           "--jobs", str(jobs))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        out.append(f"    JOBS={jobs}: wall {walls[jobs]:6.1f} s, CPU utilisation {cpu / (walls[jobs] * cores):.0%}")
    out.append(f"    speed-up JOBS=2 over JOBS=1 (the sum of single-run times): {walls[1] / walls[2]:.2f}x, "
               f"parallel efficiency {walls[1] / (2 * walls[2]):.0%}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="a,b,c,d,e", help="comma-separated subset of a, b, c, d, e (e prints e and f)")
    p.add_argument("--iters", type=int, default=200, help="(a) iterations per run")
    p.add_argument("--reps", type=int, default=2, help="(a) repetitions of kit and bare")
    p.add_argument("--caffenet-batch", type=int, default=8, help="(b) CaffeNet batch (the paper's is 256)")
    p.add_argument("--steps", type=int, default=5, help="(b) timed solver steps per net")
    p.add_argument("--per-class", type=int, default=40, help="(c) synthetic train images per class")
    p.add_argument("--grid-iters", type=int, default=100, help="(d) iterations per grid run")
    p.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = p.parse_args()
    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    parts = {"e" if x == "f" else x for x in parts}
    if not parts or parts - set("abcde"):
        sys.exit(f"bench: --only takes a comma-separated subset of a,b,c,d,e, got {args.only!r}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="kit-bench-"))
    try:
        for part, fn in (("a", lambda: bench_launch(root / "a", args.iters, args.reps)),
                         ("b", lambda: bench_frozen(root / "b", args.caffenet_batch, args.steps)),
                         ("c", lambda: bench_prep(root / "c", args.per_class)),
                         ("d", lambda: bench_grid(root / "d", args.grid_iters)),
                         ("e", lambda: bench_speed(root / "e") + bench_caffenet(root / "e-caffenet"))):
            if part in parts:
                t0 = time.perf_counter()
                for line in fn():
                    print(line, flush=True)
                print(f"    ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
