"""Find the CUDA toolkit, cuBLAS, cuRAND and cuDNN for `make caffe CUDA=1`.

Standard library only: it also runs under a GPU machine's own python3 (bench/gpu_check.sh).
`python caffe_build/cuda_toolkit.py resolve` prints shell assignments that caffe_build/build_caffe.sh
evals; a problem is one line `error: ...; fix: ...` on stderr and exit 1.

Where each part comes from, first found wins:
- nvcc: CUDA_HOME/bin/nvcc, else `nvcc` on PATH (what `module load cuda` gives), else the
  pinned CUDA 13 wheels of requirements.txt (`#cuda` lines), installed into the kit's cache.
- cuBLAS, cuRAND (and cuDNN): the toolkit's own lib folders, else NVIDIA's wheels in a
  Python's site-packages (CUDA_PYTHON, else python3 on PATH: PyTorch's, say), else, for a
  CUDA 13 toolkit, the pinned wheels. The wheels ship versioned .so files only
  (libcublas.so.13): a folder of unversioned links is made for the linker.
- cuDNN: CUDNN=0 off; CUDNN_HOME; else found as above; CUDNN=1 makes it required. When the
  kit itself fetches wheels for the toolkit's libraries, the pinned cuDNN comes with them.
- architectures: CUDA_ARCH="80 90" (also 8.0 or sm_80), else every sm_XX the toolkit
  compiles for from sm_70 up; PTX of the newest is added so that later GPUs can run it.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parents[1]
MIN_CUDA, MAX_MAJOR = (11, 8), 13
MIN_ARCH = 70
WHEEL_LAYOUTS = {  # site-packages sub-folders of NVIDIA's wheels, by CUDA major
    13: {"cudart": "nvidia/cu13", "cublas": "nvidia/cu13", "curand": "nvidia/cu13", "cudnn": "nvidia/cudnn"},
    12: {"cudart": "nvidia/cuda_runtime", "cublas": "nvidia/cublas", "curand": "nvidia/curand",
         "cudnn": "nvidia/cudnn"},
}
HEADERS = {"cudart": "cuda_runtime_api.h", "cublas": "cublas_v2.h", "curand": "curand.h", "cudnn": "cudnn.h"}
LIBS = ("cudart", "cublas", "curand")


class ToolkitError(Exception):
    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}; fix: {fix}")


def pins(path: Path = KIT / "requirements.txt") -> list[str]:
    """The pinned CUDA 13 wheels: requirements.txt's lines `#cuda NAME==VERSION`."""
    return [ln.split(None, 1)[1].split("#")[0].strip() for ln in path.read_text().splitlines()
            if ln.startswith("#cuda ")]


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120).stdout


def find_nvcc(env) -> Path | None:
    if env.get("CUDA_HOME"):
        nvcc = Path(env["CUDA_HOME"]) / "bin" / "nvcc"
        if not os.access(nvcc, os.X_OK):
            raise ToolkitError(f"CUDA_HOME={env['CUDA_HOME']} has no bin/nvcc",
                               "point CUDA_HOME at a CUDA toolkit (the folder holding bin/nvcc), or unset it")
        return nvcc
    found = shutil.which("nvcc", path=env.get("PATH"))
    return Path(found) if found else None


def toolkit_home(nvcc: Path) -> Path:
    """The toolkit's root as nvcc itself reports it (TOP=), also through wrapper scripts."""
    out = subprocess.run([str(nvcc), "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                         capture_output=True, text=True, check=False, timeout=120)
    m = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.M)
    return Path(m.group(1)).resolve() if m else nvcc.resolve().parents[1]


def nvcc_version(nvcc: Path) -> tuple[int, int]:
    m = re.search(r"release (\d+)\.(\d+)", _run([str(nvcc), "--version"]))
    if not m:
        raise ToolkitError(f"{nvcc} --version names no release", "check that nvcc runs (PATH, CUDA_HOME)")
    version = (int(m.group(1)), int(m.group(2)))
    if version < MIN_CUDA or version[0] > MAX_MAJOR:
        raise ToolkitError(f"CUDA {version[0]}.{version[1]} at {nvcc} is not supported (11.8 to 13.x)",
                           "load a CUDA 11.8-13.x toolkit (CUDA_HOME=/path), "
                           "or unset CUDA_HOME and take the kit's CUDA 13 wheels")
    return version


def parse_archs(text: str) -> list[int]:
    out = []
    for word in text.replace(",", " ").split():
        m = re.fullmatch(r"(?:sm_|compute_)?(\d)\.?(\d+)", word.strip())
        if not m:
            raise ToolkitError(f"CUDA_ARCH has '{word}', not an architecture",
                               'write CUDA_ARCH="80 90" (or 8.0, sm_80)')
        out.append(int(m.group(1) + m.group(2)))
    return sorted(set(out))


def supported_archs(nvcc: Path) -> list[int]:
    codes = re.findall(r"^sm_(\d+)$", _run([str(nvcc), "--list-gpu-code"]), re.M)
    return sorted({int(c) for c in codes})


def choose_archs(env, supported: list[int]) -> list[int]:
    if not env.get("CUDA_ARCH", "").strip():
        return [a for a in supported if a >= MIN_ARCH]
    wanted = parse_archs(env["CUDA_ARCH"])
    bad = [a for a in wanted if a not in supported]
    if bad:
        raise ToolkitError(f"this CUDA toolkit cannot build for sm_{', sm_'.join(map(str, bad))}",
                           f"choose from CUDA_ARCH=\"{' '.join(map(str, supported))}\"")
    return wanted


def gencode(archs: list[int]) -> str:
    flags = [f"-gencode arch=compute_{a},code=sm_{a}" for a in archs]
    return " ".join(flags + [f"-gencode arch=compute_{archs[-1]},code=compute_{archs[-1]}"])


def build_minutes(n_archs: int) -> int:
    """About how long a CUDA build takes alone on 2 cores: the host code's 7 minutes, plus the .cu files' 14 for one
    architecture, each further one adding 0.32 of that (nvcc of pooling_layer.cu: 18 s for sm_90, 82 s for 12)."""
    return round(7 + 14 * (1 + 0.32 * (n_archs - 1)))


def site_dirs(env) -> list[Path]:
    """site-packages of CUDA_PYTHON (else python3 on PATH) and of the kit's fetched wheels."""
    python = env.get("CUDA_PYTHON") or shutil.which("python3", path=env.get("PATH"))
    dirs = []
    if python:
        code = "import site,sys; print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))"
        dirs += [Path(p) for p in _run([python, "-c", code]).split()]
    return [d for d in dirs if d.is_dir()]


def _find_lib(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        hits = sorted(glob.glob(str(d / f"lib{name}.so.[0-9]*")), key=len)
        if hits:
            return Path(hits[0])
    return None


def find_part(part: str, homes: list[Path]) -> tuple[Path, Path] | None:
    """(include dir, versioned library) of `part` under one of `homes`, or None."""
    for home in homes:
        incs = [home / "include", home / "targets/x86_64-linux/include"]
        libs = [home / "lib64", home / "lib", home / "targets/x86_64-linux/lib", home / "lib/x86_64-linux-gnu"]
        inc = next((i for i in incs if (i / HEADERS[part]).is_file()), None)
        lib = _find_lib(part, libs)
        if inc and lib:
            return inc, lib
    return None


def wheel_homes(part: str, major: int, sites: list[Path]) -> list[Path]:
    layout = WHEEL_LAYOUTS.get(major, {})
    return [s / layout[part] for s in sites if part in layout]


def cudnn_version(inc: Path) -> tuple[int, int, int]:
    text = "".join((inc / h).read_text() for h in ("cudnn_version.h", "cudnn.h") if (inc / h).is_file())
    got = {k: int(v) for k, v in re.findall(r"#define CUDNN_(MAJOR|MINOR|PATCHLEVEL)\s+(\d+)", text)}
    return got.get("MAJOR", 0), got.get("MINOR", 0), got.get("PATCHLEVEL", 0)


def fetch_wheels(cache: Path, wanted: list[str], python: str) -> Path:
    """pip-install the pinned wheels `wanted` once into cache/cuda-pypi/<hash>; its site folder."""
    dest = cache / "cuda-pypi" / hashlib.sha256(" ".join(sorted(wanted)).encode()).hexdigest()[:16]
    if (dest / ".complete").is_file():
        return dest
    tmp = Path(str(dest) + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"installing NVIDIA's CUDA wheels into {dest}: {' '.join(wanted)}", file=sys.stderr)
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                           "--target", str(tmp), *wanted], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ToolkitError(f"could not install NVIDIA's CUDA wheels from PyPI ({last})",
                           "check the network, or give a toolkit with CUDA_HOME=/path")
    (tmp / ".complete").touch()
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def link_farm(cache: Path, libs: dict[str, Path]) -> Path:
    """A folder of unversioned links (libcublas.so -> .../libcublas.so.13) for the linker."""
    key = hashlib.sha256(" ".join(f"{k}={v}" for k, v in sorted(libs.items())).encode()).hexdigest()[:16]
    farm = cache / "cuda-links" / key
    farm.mkdir(parents=True, exist_ok=True)
    for name, lib in libs.items():
        link = farm / f"lib{name}.so"
        if not link.is_symlink() or os.readlink(link) != str(lib):
            tmp = farm / f".lib{name}.so.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(lib)
            tmp.rename(link)
    return farm


def _pick(names: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [p for p in names if p.split("==")[0].startswith(prefixes)]


def resolve(env, cache: Path, python: str) -> dict[str, str]:
    pinned = pins()
    nvcc = find_nvcc(env)
    fetched = None
    if nvcc is None:  # no toolkit: all of the pinned CUDA 13 wheels, nvcc included
        fetched = fetch_wheels(cache, pinned, python)
        nvcc = fetched / "nvidia/cu13/bin/nvcc"
    home, version = toolkit_home(nvcc), nvcc_version(nvcc)
    archs = choose_archs(env, supported_archs(nvcc))  # before any download: a wrong CUDA_ARCH fails at once
    if not archs:
        raise ToolkitError(f"CUDA {version[0]}.{version[1]} compiles for no architecture from sm_{MIN_ARCH} up",
                           'name them: CUDA_ARCH="80 90"')
    sites = site_dirs(env) + ([fetched] if fetched else [])
    cudnn_mode = env.get("CUDNN", "")
    if cudnn_mode not in ("", "0", "1"):
        raise ToolkitError(f"CUDNN={cudnn_mode}",
                           "CUDNN=1 (required), CUDNN=0 (off), or leave it unset (used when found)")
    parts = list(LIBS) + ([] if cudnn_mode == "0" else ["cudnn"])
    found: dict[str, tuple[Path, Path]] = {}
    for part in parts:
        homes = [Path(env["CUDNN_HOME"])] if part == "cudnn" and env.get("CUDNN_HOME") else [home]
        hit = find_part(part, homes + wheel_homes(part, version[0], sites))
        if hit:
            found[part] = hit
        elif part == "cudnn" and env.get("CUDNN_HOME"):
            raise ToolkitError(f"CUDNN_HOME={env['CUDNN_HOME']} has no include/cudnn.h with lib/libcudnn.so.N",
                               "point CUDNN_HOME at a cuDNN 8 or 9 folder, or unset it")
    missing = [p for p in LIBS if p not in found]
    if missing and version[0] != 13:
        raise ToolkitError(f"the CUDA {version[0]}.{version[1]} toolkit at {home} lacks {', '.join(missing)}",
                           "install the toolkit's libraries "
                           "(or NVIDIA's wheels for it into CUDA_PYTHON's site-packages)")
    if missing and fetched is None:  # complete a CUDA 13 toolkit from the pinned wheels; cuDNN comes with them
        wanted = _pick(pinned, ("nvidia-cublas", "nvidia-curand", "nvidia-cuda-runtime"))
        if cudnn_mode != "0" and "cudnn" not in found:
            wanted += _pick(pinned, ("nvidia-cudnn",))
        fetched = fetch_wheels(cache, wanted, python)
        for part in parts:
            if part not in found:
                hit = find_part(part, wheel_homes(part, 13, [fetched]))
                if hit:
                    found[part] = hit
    missing = [p for p in parts if p not in found and p != "cudnn"]
    if missing:
        raise ToolkitError(f"no {', '.join(missing)} found for the CUDA toolkit at {home}",
                           "install NVIDIA's libraries for it, or set CUDA_HOME to a complete toolkit")
    if cudnn_mode == "1" and "cudnn" not in found:
        raise ToolkitError("CUDNN=1 but no cuDNN was found", "set CUDNN_HOME=/path to cuDNN 8 or 9, or drop CUDNN=1")
    cudnn = cudnn_version(found["cudnn"][0]) if "cudnn" in found else None
    if cudnn and cudnn[0] not in (8, 9):
        raise ToolkitError(f"cuDNN {cudnn[0]}.{cudnn[1]} at {found['cudnn'][1].parent} is not supported (8 or 9)",
                           "set CUDNN_HOME to cuDNN 8 or 9, or CUDNN=0 to build without cuDNN")
    libs = {p: lib for p, (_, lib) in found.items()}
    incs = [str(inc) for inc, _ in found.values()]
    incs += [str(i / "cccl") for i, _ in found.values() if (i / "cccl/thrust").is_dir()]  # CUDA 13: Thrust, CUB
    incs = list(dict.fromkeys(incs))
    rpath = list(dict.fromkeys(str(lib.parent) for lib in libs.values()))
    sonames = " ".join(f"{p}={lib.name}" for p, lib in sorted(libs.items()))
    return {
        "CUDA_DIR": str(home), "CUDA_VERSION": f"{version[0]}.{version[1]}",
        "CUDA_ARCHS": " ".join(map(str, archs)), "CUDA_ARCH_FLAGS": gencode(archs),
        "CUDA_INCLUDE_DIRS": " ".join(incs), "CUDA_LINK_DIR": str(link_farm(cache, libs)),
        "CUDA_RPATH": " ".join(rpath), "CUDA_LIBS": sonames,
        "CUDNN_VERSION": ".".join(map(str, cudnn)) if cudnn else "",
        "CUDA_BUILD_MINUTES": str(build_minutes(len(archs))),
    }


def main(argv: list[str]) -> int:
    if argv[:1] != ["resolve"] or len(argv) > 2:
        print("error: usage: cuda_toolkit.py resolve [CACHE]; fix: run it from caffe_build/build_caffe.sh",
              file=sys.stderr)
        return 2
    cache = Path(argv[1] if len(argv) == 2 else os.path.expanduser("~/.cache/transfer-kit/caffe"))
    try:
        values = resolve(os.environ, cache, sys.executable)
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, value in values.items():
        print(f"{key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
