"""Write files so that a killed process never leaves one that looks complete."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temporary name beside `path`, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    write_bytes(path, text.encode())


def write_json(path: Path, obj) -> None:
    """Atomically write an indented JSON file."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (a folder: of its files' names and bytes, in sorted order)."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
