"""`make bench` (e) and (f): the kit's Caffe against the CPU's own speed and against the builds of before.

(e) the FA-20 train net (batch 32, 1 thread): `caffe time` iteration time of
    three builds, run alternately in one go: the kit's (its CPU layers on
    oneDNN where it runs), the same fast build with Caffe's own layers
    (`make caffe-nodnnl`: the kit's build before oneDNN), and the reference
    build (`make caffe-reference`: the kit's Caffe before its speed work,
    Debian's OpenBLAS, -O2); each conv layer's GFLOP/s (forward + backward, from
    its shapes) against this core's attainable sgemm rate, measured in the same
    run (a 2048^3 single-thread sgemm of the builds' own BLAS, timed by
    bench_blas.rate); the share of the iteration outside the conv layers; the
    BLAS core type each build's OpenBLAS picked; the kit's build on 2 threads against 1 (a run alone on the
    machine, `make train`, takes every core).
(f) the per-layer time table (forward and backward, ms) of the three builds.
Ratios are from one run on one machine; absolute times drift on shared machines.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from bench_blas import load, rate  # noqa: E402  (the one sgemm timer of the benches)

LAYER_RE = re.compile(r"\]\s+(\S+)\s+(forward|backward): ([\d.]+) ms\.")
TOTAL_RE = re.compile(r"Average Forward-Backward: ([\d.]+) ms\.")


def _blas(root: Path) -> tuple:
    """(sgemm, core name) of the OpenBLAS a build links (its own copy, else the system's), one thread."""
    own = root / "build" / "lib" / "libscipy_openblas.so"
    return load(str(own), "scipy_") if own.is_file() else load("libopenblas.so.0", "")


def blas_core(root: Path) -> str:
    """The core type a build's OpenBLAS runs its kernels for on this CPU."""
    return _blas(root)[1]


def sgemm_rate(root: Path, size: int = 2048) -> float:
    """GFLOP/s of a size^3 single-precision GEMM with a build's BLAS on one thread (bench_blas.rate)."""
    return rate(_blas(root)[0], size, size, size)


def caffe_time(root: Path, model: Path, iterations: int, threads: int = 1) -> tuple[dict, float]:
    """`caffe time` of a net with one build on `threads` threads, as the kit runs it (kitcore's caffe_env):
    ({(layer, pass): ms}, ms per forward-backward)."""
    from kitcore.caffe_env import caffe_env  # noqa: PLC0415
    env = caffe_env(threads, root)
    out = subprocess.run([str(root / "build" / "tools" / "caffe"), "time", "-model", model.name,
                          "-iterations", str(iterations)], capture_output=True, text=True, env=env, check=False,
                         cwd=model.parent)  # the run folder: the net's data paths are relative to it
    text = out.stdout + out.stderr
    total = TOTAL_RE.search(text)
    if out.returncode or not total:
        sys.exit(f"bench: caffe time with {root} failed:\n{text[-2000:]}")
    return {(m[1], m[2]): float(m[3]) for m in LAYER_RE.finditer(text)}, float(total[1])


def conv_flops(model: Path) -> dict[str, tuple[float, float]]:
    """{conv layer: (forward, backward) FLOPs} of one iteration of a train net, from pycaffe's shapes;
    backward counts the weight gradient and, where Caffe computes it, the bottom's gradient."""
    import caffe  # noqa: PLC0415  (the build wired into the venv)
    caffe.set_mode_cpu()
    here = Path.cwd()
    os.chdir(model.parent)  # the net's data paths are relative to its run folder
    try:
        net = caffe.Net(model.name, caffe.TRAIN)
    finally:
        os.chdir(here)
    producer = {top: layer.type for name, layer in zip(net._layer_names, net.layers) for top in net.top_names[name]}
    out = {}
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type != "Convolution":
            continue
        weights = net.params[name][0].data
        top = net.blobs[net.top_names[name][0]].data
        fwd = 2.0 * top.size * weights[0].size  # each output: a dot product of one filter's weights
        from_data = producer.get(net.bottom_names[name][0]) in ("Data", "Input", "DummyData")  # no diff there
        out[name] = (fwd, fwd * (1 if from_data else 2))
    del net
    return out


def _build(record_name: str, make_target: str) -> Path:
    """The root of a build the venv records (caffe_reference_root, caffe_nodnnl_root), or exit with the fix."""
    record = Path(sys.prefix) / record_name
    if not record.is_file():
        sys.exit(f"bench: (e) needs the build {record} names; fix: make {make_target} (make bench builds it)")
    return Path(record.read_text().strip())


def bench_speed(work: Path, iterations: int = 50, reps: int = 2) -> list[str]:
    """(e) and (f) on the FA-20 baseA train net of split random0 (made in `work`): the kit's build (its CPU
    layers on oneDNN where it runs) against the same fast build with Caffe's own layers and the reference."""
    from kitcore.caffe_env import caffe_engine, caffe_root  # noqa: PLC0415
    roots = {"kit": caffe_root(), "own": _build("caffe_nodnnl_root", "caffe-nodnnl"),
             "reference": _build("caffe_reference_root", "caffe-reference")}
    engine = {n: caffe_engine(r) for n, r in roots.items()}
    subprocess.run([sys.executable, "-m", "runner.cli", "split-random", "--work", str(work), "--seed", "0"],
                   cwd=ROOT, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "runner.cli", "train", "--work", str(work), "--treatment", "baseA",
                    "--iters", "30", "--threads", "1", "--force"], cwd=ROOT, check=True, capture_output=True)
    model = work / "fa20" / "random0" / "runs" / "baseA" / "train_val.prototxt"
    layers: dict[str, dict] = {n: {} for n in roots}
    totals: dict[str, list[float]] = {n: [] for n in roots}
    for _ in range(reps):  # alternated, so drift hits every build alike
        for name in ("reference", "own", "kit"):
            per_layer, total = caffe_time(roots[name], model, iterations)
            totals[name].append(total)
            for key, ms_ in per_layer.items():
                layers[name].setdefault(key, []).append(ms_)
    two = min(caffe_time(roots["kit"], model, iterations, threads=2)[1] for _ in range(reps))
    ms = {n: {k: min(v) for k, v in d.items()} for n, d in layers.items()}
    it = {n: min(v) for n, v in totals.items()}
    peak = {n: sgemm_rate(roots[n]) for n in ("own", "reference")}  # the kit's BLAS is the own build's
    attainable = max(peak.values())
    out = [f"(e) FA-20 train net, batch 32, 1 thread, caffe time x {iterations} iterations, best of {reps} "
           f"alternated runs; builds: kit = the wired one ({engine['kit']} layers), own = the same fast build "
           f"with Caffe's own layers (make caffe-nodnnl), reference = before the speed work; this core's "
           f"attainable sgemm rate {attainable:.1f} GFLOP/s (2048^3, 1 thread: fast builds' BLAS "
           f"{peak['own']:.1f} [{blas_core(roots['own'])}], reference's {peak['reference']:.1f} "
           f"[{blas_core(roots['reference'])}])",
           f"    iteration: kit {it['kit']:.1f} ms, own layers {it['own']:.1f} ms, reference {it['reference']:.1f} ms:"
           f" kit {it['own'] / it['kit']:.2f}x faster than own layers (goal >= 2x), "
           f"{it['reference'] / it['kit']:.2f}x faster than the reference",
           f"    the kit's build on 2 threads (one run using both cores, as `make train` does): {two:.1f} ms, "
           f"{it['kit'] / two:.2f}x its 1-thread iteration",
           "    conv layer   GFLOP/s (of attainable): kit   own layers   reference   [goal: kit >= 0.8]"]
    flops = conv_flops(model)
    for name, (fwd, bwd) in flops.items():
        rate = {n: (fwd + bwd) / ((ms[n][(name, "forward")] + ms[n][(name, "backward")]) * 1e6) for n in ms}
        out.append(f"    {name:<10} " + "".join(f"{rate[n]:8.1f} ({rate[n] / attainable:.2f})"
                                                 for n in ("kit", "own", "reference")))
    total_flops = sum(f + b for f, b in flops.values())
    conv_ms = {n: sum(ms[n][(c, p)] for c in flops for p in ("forward", "backward")) for n in ms}
    out.append("    all conv layers: " + "; ".join(
        f"{n} {total_flops / (conv_ms[n] * 1e6):.1f} GFLOP/s ({total_flops / (conv_ms[n] * 1e6) / attainable:.2f}), "
        f"{conv_ms[n]:.1f} of {it[n]:.1f} ms, outside them {100 * (1 - conv_ms[n] / it[n]):.0f}%"
        for n in ("kit", "own", "reference")) + f"; goal: kit outside the conv layers <= 15%; the conv FLOPs "
        f"alone at the attainable rate: {total_flops / (attainable * 1e6):.1f} ms")
    out.append("(f) per-layer times, ms (kit / own layers / reference)")
    out.append(f"    {'layer':<10} {'forward':>25} {'backward':>25}")
    for name in dict.fromkeys(k[0] for k in ms["kit"]):
        cells = [" / ".join(f"{ms[n].get((name, p), 0):6.2f}" for n in ("kit", "own", "reference"))
                 for p in ("forward", "backward")]
        out.append(f"    {name:<10} {cells[0]:>25} {cells[1]:>25}")
    return out


def caffenet_input_net(out: Path, batch: int) -> Path:
    """The paper's CaffeNet train net (prototxt/caffenet.prototxt, TRAIN phase) on Input blobs, batch x 3 x 227^2."""
    from google.protobuf import text_format  # noqa: PLC0415

    from generators.netgen import input_net, load_net  # noqa: PLC0415
    net = input_net(load_net(ROOT / "prototxt" / "caffenet.prototxt"), batch, (3, 227, 227))
    out.mkdir(parents=True, exist_ok=True)
    (out / "caffenet.prototxt").write_text(text_format.MessageToString(net))
    return out / "caffenet.prototxt"


def bench_caffenet(work: Path, batch: int = 256, threads: int = 2, iterations: int = 2, reps: int = 2) -> list[str]:
    """(e) the paper's CaffeNet iteration (batch 256, 227 crop) on `threads` threads: the kit's build against the
    same build with Caffe's own layers, alternated: what a CPU-only user of the paper protocol pays."""
    from kitcore.caffe_env import caffe_root  # noqa: PLC0415
    roots = {"kit": caffe_root(), "own": _build("caffe_nodnnl_root", "caffe-nodnnl")}
    model = caffenet_input_net(work, batch)
    totals: dict[str, list[float]] = {n: [] for n in roots}
    for _ in range(reps):
        for name in ("own", "kit"):
            totals[name].append(caffe_time(roots[name], model, iterations, threads)[1])
    it = {n: min(v) / 1000 for n, v in totals.items()}
    return [f"(e) the paper's CaffeNet train net, batch {batch}, 227 crop, {threads} threads, caffe time x {iterations}"
            f" iterations, best of {reps} alternated runs: kit {it['kit']:.2f} s, own layers {it['own']:.2f} s per "
            f"iteration ({it['own'] / it['kit']:.2f}x); the paper's 450,000 iterations would take "
            f"{450000 * it['kit'] / 86400:.0f} days here (own layers: {450000 * it['own'] / 86400:.0f})"]
