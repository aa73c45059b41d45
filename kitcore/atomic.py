"""Write files so that a killed process never leaves one that looks complete.

Every output of the kit is written under a temporary sibling name
`<name>.tmp-<pid>` and renamed into place with `os.replace`. Leftovers of a
killed writer are recognised by that suffix and removed by `clean_stale_tmp`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kitcore import diskspace

log = logging.getLogger(__name__)

TMP_TAG = ".tmp-"


def tmp_path(path: Path) -> Path:
    """Return the temporary sibling name this process uses while writing `path`."""
    path = Path(path)
    return path.with_name(f"{path.name}{TMP_TAG}{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_tmp_paths(path: Path) -> list[Path]:
    """Return leftover `path.tmp-<pid>` siblings whose writer is gone (or is this process)."""
    path = Path(path)
    stale = []
    for cand in path.parent.glob(f"{path.name}{TMP_TAG}*"):
        pid_text = cand.name[len(path.name) + len(TMP_TAG):]
        pid = int(pid_text) if pid_text.isdigit() else None
        if pid is None or pid == os.getpid() or not _pid_alive(pid):
            stale.append(cand)
        else:
            log.warning("%s is being written by live process %d; leaving it", cand, pid)
    return stale


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def clean_stale_tmp(path: Path) -> None:
    """Delete the leftovers of killed writes of `path`."""
    for cand in stale_tmp_paths(path):
        log.warning("removing the leftover of an interrupted write: %s", cand)
        remove_path(cand)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield the temporary sibling to write `path` into; rename it over `path` on success, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        remove_path(tmp)


def write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to a temporary name beside `path`, fsync, then rename over `path` (a full disk: the one-line
    error naming `path`, kitcore.diskspace, and no `path` written)."""
    with diskspace.writing(path, len(data)), replacing(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    """Atomically write a text file (UTF-8)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any, sort_keys: bool = True) -> Path:
    """Atomically write `obj` as indented JSON (NaN is refused: use None)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (a folder: of its files' names and bytes, in sorted order)."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
    return h.hexdigest()
