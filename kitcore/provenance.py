"""What a run ran on, recorded in its run.json: the Caffe build, its BLAS, the host CPU, the protocol.

- `build_record()`: the build's key (the cache folder name `make caffe` gives a
  build, a hash of everything the build used), its variant, speed set, device
  and engine (the build's `.kit-*` files), and the BLAS libcaffe loads with the
  kernel it picks on this CPU (OpenBLAS's own `get_corename`, `get_config`).
- `host_record()`: the CPU model, family and model numbers, its SIMD level and
  the cores the process may use.
- `protocol_record(...)` (run.json's `protocol_files`): the net and solver templates with their sha256 and the
  per-run overrides; `key` hashes them, so two records share a protocol exactly
  when they share a key (the grid's protocol name, random or natman, is not part
  of it: the grids of one experiment share one protocol).
Records published into `results/` carry all three; the analysis pools records
only of one build key and one protocol key.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import re
import subprocess
from pathlib import Path

from kitcore.caffe_env import caffe_engine, caffe_root, tool

_LDD_LINE = re.compile(r"^\s*(\S*openblas\S*)\s+=>\s+(\S+)")


def _read_marker(root: Path | None, name: str, default: str) -> str:
    try:
        return (Path(root) / name).read_text().strip() or default
    except (OSError, TypeError):
        return default


def blas_record(binary: str) -> dict:
    """The OpenBLAS a binary loads (ldd) and, loaded here, its version string and the kernel it picks."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if m := _LDD_LINE.match(line):
            name, path = m.groups()
            rec = {"library": name, "path": path}
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                return rec
            prefix = "scipy_" if hasattr(lib, "scipy_openblas_get_corename") else ""
            for key, fn in (("core", "openblas_get_corename"), ("config", "openblas_get_config")):
                if hasattr(lib, prefix + fn):
                    f = getattr(lib, prefix + fn)
                    f.restype = ctypes.c_char_p
                    rec[key] = f().decode(errors="replace").strip()
            return rec
    return {"library": "none found by ldd"}


def build_record() -> dict:
    """The Caffe build the kit runs: key, variant, speed, device, engine, binary, BLAS."""
    root = caffe_root()
    binary = tool("caffe")
    return {"key": Path(root).name if root is not None else "unknown",
            "root": str(root) if root is not None else None,
            "variant": _read_marker(root, ".kit-variant", "plain"),
            "speed": _read_marker(root, ".kit-speed", "unknown"),
            "device": _read_marker(root, ".kit-device", "cpu"),
            "engine": caffe_engine(root),
            "binary": binary, "blas": blas_record(os.path.realpath(binary))}


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def simd_level(flags: set[str]) -> str:
    """The widest x86 vector extension among a CPU's flags (avx512f, avx2, avx, sse4_2, or none)."""
    return next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "none")


def host_record() -> dict:
    """The host CPU: model name, vendor, family/model numbers, SIMD level, usable cores, machine."""
    info = _cpuinfo()
    return {"cpu": info.get("model name", platform.processor() or "unknown"),
            "vendor": info.get("vendor_id"), "family": info.get("cpu family"), "model": info.get("model"),
            "simd": simd_level(set(info.get("flags", "").split())),
            "cores": len(os.sched_getaffinity(0)), "machine": platform.machine()}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def protocol_record(net_template: Path, solver_template: Path, kit: Path, **overrides) -> dict:
    """The templates a run was made from (paths relative to `kit`, sha256) and its overrides (iters, batch,
    test_iter: None when the template's), with `key`: the first 16 hex digits of their hash."""
    rec = {"net_template": str(Path(net_template).relative_to(kit)), "net_sha256": file_sha256(net_template),
           "solver_template": str(Path(solver_template).relative_to(kit)),
           "solver_sha256": file_sha256(solver_template), "overrides": dict(sorted(overrides.items()))}
    rec["key"] = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:16]
    return rec
