"""A full disk, decided in one place: when a failed write means the file system is full, and its one-line error.

A write that fails for want of room shows in more than one way: Python's own
writes raise OSError ENOSPC (often without a file name: `fh.write`), LMDB
reports a short write on a full file system as `mdb_txn_commit: Input/output
error`, and a Caffe tool (compute_image_mean, `caffe train`'s snapshot) fails a
CHECK. `disk_full` is the one error all of them become: the path being
written, the room left on its file system and the fix (free space, then rerun
the same command, which finds nothing half-written that looks complete, as
every output is written under a temporary name and renamed, kitcore.atomic).
`writing(path)` turns such a failure inside it into that error; `low_space`
is the test for the failures that do not say ENOSPC (made before the caller
removes its temporary files, while the disk is still full).
"""
from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kitcore.errors import KitError

MIN_FREE = 1 << 20  # bytes: less room than this (or than the write needs) after a failed write is a full disk


def free_bytes(path: Path) -> int:
    """Bytes free to this user on the file system of `path` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def size_text(n: int) -> str:
    """A byte count for people: '300 bytes', '512 KiB', '37.2 MiB', '4.1 GiB'."""
    if n < 1024:
        return f"{n} bytes"
    if n < 10 << 20:
        return f"{n // 1024} KiB"
    return f"{n / (1 << 20):.1f} MiB" if n < 10 << 30 else f"{n / (1 << 30):.1f} GiB"


def low_space(path: Path, need: int = 0) -> bool:
    """Whether the file system of `path` has less room than `need` bytes (at least MIN_FREE)."""
    return free_bytes(path) < max(need, MIN_FREE)


def is_full(exc: BaseException, path: Path, also: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether `exc`, raised while writing under `path`, means a full disk: an OSError ENOSPC, or an error of
    the types in `also` (LMDB's) while its file system has less than MIN_FREE left."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, also) and low_space(path)


def disk_full(path: Path, detail: object, then: str = "rerun the same command",
              elsewhere: str = "or use another --work", need: int = 0) -> KitError:
    """The one-line error of a full disk while writing `path`: the path, the room left there, what failed."""
    needs = f", about {size_text(need)} needed" if need else ""
    if isinstance(detail, OSError) and detail.strerror:
        detail = detail.strerror
    return KitError(f"disk full while writing {path} ({size_text(free_bytes(path))} free{needs}; {detail})",
                    f"free space on that file system{f' ({elsewhere})' if elsewhere else ''}, then {then}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def writing(path: Path, need: int = 0, also: tuple[type[BaseException], ...] = (), partial: Path | None = None,
            refuse_low: bool = False, **fix) -> Iterator[None]:
    """Turn a failure inside that `is_full` calls a full disk into `disk_full(path, ...)`; others pass through.
    `need`: the bytes the write takes, for the message; `partial`: the temporary output to remove first, so
    the room the message gives is the room a rerun has; `refuse_low`: refuse up front under MIN_FREE (an
    LMDB: it maps its lock file, and touching a page of it that a full file system cannot back kills the
    process with SIGBUS); `fix`: disk_full's `then` / `elsewhere`."""
    if refuse_low and low_space(path):
        raise disk_full(path, "too little room to start writing", need=need, **fix)
    try:
        yield
    except KitError:
        raise
    except Exception as exc:
        if not is_full(exc, path, also):
            raise
        if partial is not None:
            _remove(Path(partial))
        raise disk_full(path, exc, need=need, **fix) from exc
