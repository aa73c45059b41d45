"""Check a split's LMDBs and mean files against its manifest.json, at a cost that fits ImageNet.

Fast mode (before every run) never reads a large LMDB whole. Per LMDB it checks:
data.mdb is there; it is not smaller than when written (`data_mdb_bytes`) nor
than its own newest meta page says its pages reach (so a truncated file is
refused before LMDB maps it: touching a page past the end of a mapped file
kills the process with SIGBUS); LMDB opens it read-only; its record count is
the manifest's `records`; the records of `sample_sha256` (32 spread over the
keys, first and last included: see `lmdb_io.sample_positions`) are there
with the sha256 of their value at write time. A data.mdb of at most
`FULL_CHECK_BYTES` (every FA-20 LMDB) is checked whole even in fast mode,
since that costs milliseconds. A changed record outside the sample of a
large LMDB is found only by full mode.

Full mode (`transfer-kit verify --full`) also checks every record: the sha256
of data.mdb where the manifest has one (FA-20, read as a plain file before
LMDB maps it), else `content_sha256` (ImageNet: every key and value in key
order, see `lmdb_io.add_record`). Mean files and split.json are small: their
sha256, in both modes.

Older manifests without `sample_sha256` / `data_mdb_bytes` get the full
check, with a warning naming the rebuild that gives them the fast one: their
whole-content hash is a correct check, only slower, while refusing them
would force rebuilding every split a kit upgrade finds.

Every problem is a KitError naming the file (and so its folder) and `fix`.
The meta page is read as LMDB 0.9 writes it on a 64-bit machine.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import lmdb
from tqdm import tqdm

from data_prep.lmdb_io import add_record, value_sha256
from kitcore.atomic import sha256
from kitcore.errors import KitError

log = logging.getLogger(__name__)

FULL_CHECK_BYTES = 64 << 20  # fast mode reads a data.mdb this small whole (FA-20's are under 7 MB)
DEFAULT_FIX = "rebuild the split: rerun the make split-... command that made it with FORCE=1"
MDB_MAGIC = 0xBEEFC0DE
META_BYTES = 152  # page header (16) + magic, version, address, mapsize (24) + 2 x MDB_db (96) + last_pg, txnid (16)


def _field(page: bytes, offset: int, size: int) -> int:
    """An unsigned native-endian integer of a meta page."""
    return int.from_bytes(page[offset:offset + size], sys.byteorder)


def pages_end(mdb: Path) -> int | None:
    """The byte where data.mdb's used pages end, from its newest valid meta page; None if it has none."""
    with open(mdb, "rb") as f:
        first = f.read(META_BYTES)
        if len(first) < META_BYTES or _field(first, 16, 4) != MDB_MAGIC:
            return None
        psize = _field(first, 40, 4)  # the free DB's md_pad holds the page size
        if psize < 512 or psize & (psize - 1):
            return None
        f.seek(psize)
        second = f.read(META_BYTES)
    metas = [p for p in (first, second) if len(p) == META_BYTES and _field(p, 16, 4) == MDB_MAGIC]
    newest = max(metas, key=lambda p: _field(p, 144, 8))
    return (_field(newest, 136, 8) + 1) * psize


def _content_sha256(txn, records: int, desc: str, progress: bool = True) -> str:
    """The `content_sha256` of every record of an open LMDB, in key order (progress on stderr if asked)."""
    digest = hashlib.sha256()
    with tqdm(total=records, desc=f"verify {desc}", unit="rec", file=sys.stderr, mininterval=1.0,
              leave=False, disable=not progress) as bar:
        for key, value in txn.cursor():
            add_record(digest, key, value)
            bar.update(1)
    return digest.hexdigest()


def _check_lmdb(path: Path, entry: dict, full: bool, fix: str, full_below: int) -> str:
    """Check one LMDB folder against its manifest entry; return what was checked."""
    path = Path(path)
    mdb = path / "data.mdb"
    if not mdb.is_file():
        raise KitError(f"{mdb} is missing", fix)

    def bad(why: str) -> KitError:
        return KitError(f"{mdb} is corrupt or was changed ({why})", fix)

    size, written, sample = mdb.stat().st_size, entry.get("data_mdb_bytes"), entry.get("sample_sha256")
    if written is not None and size < written:
        raise bad(f"truncated: {size} bytes, {written} when written")
    end = pages_end(mdb)
    if end is None:
        raise bad("no valid LMDB meta page")
    if size < end:
        raise bad(f"truncated: {size} bytes, but its pages reach byte {end}")
    if sample is None or written is None:
        log.warning("%s: manifest.json has no sampled record hashes (an older kit wrote it): checking every "
                    "record; for the fast check, %s", path, fix)
    every = full or sample is None or written is None or size <= full_below
    if every and "sha256" in entry:  # a whole-file hash: read as a file, before LMDB maps a damaged one
        if sha256(mdb) != entry["sha256"]:
            raise bad("its sha256 differs from manifest.json")
        return f"sha256 of data.mdb matches ({size} bytes: every record)"
    if every and "content_sha256" not in entry:
        raise KitError(f"manifest.json records no content hash of {path}", fix)
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
    except lmdb.Error as exc:
        raise bad(f"LMDB cannot open it: {exc}") from exc
    try:
        records = env.stat()["entries"]
        if "records" in entry and records != entry["records"]:
            raise bad(f"it holds {records} records, manifest.json says {entry['records']}")
        with env.begin(buffers=True) as txn:
            for key, want in (sample or {}).items():
                value = txn.get(key.encode())
                if value is None:
                    raise bad(f"record {key!r} is missing")
                if value_sha256(value) != want:
                    raise bad(f"record {key!r} differs from when it was written")
            if every and _content_sha256(txn, records, path.name, progress=full) != entry["content_sha256"]:
                raise bad("its records differ from the content_sha256 in manifest.json")
    except lmdb.Error as exc:
        raise bad(f"LMDB cannot read it: {exc}") from exc
    finally:
        env.close()
    checked = f"{records} records, {len(sample or {})} sampled records"
    return checked + (" and content_sha256 of every record match" if every else " match")


def verify_lmdb(path: Path, entry: dict, full: bool, fix: str, *, full_below: int = FULL_CHECK_BYTES) -> None:
    """Check one LMDB folder against its manifest entry (fast: count, size, sample; full: every record)."""
    _check_lmdb(path, entry, full, fix, full_below)


def verify_file(path: Path, entry: dict, fix: str) -> None:
    """Check a small file (a mean, split.json) against the sha256 of its manifest entry."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path} is missing", fix)
    if sha256(path) != entry["sha256"]:
        raise KitError(f"{path} is corrupt or was changed (its sha256 differs from manifest.json)", fix)


def verify_files(split_dir: Path, files: dict, halves: set[str] | None = None, full: bool = False,
                 fix: str = DEFAULT_FIX, *, full_below: int = FULL_CHECK_BYTES) -> list[str]:
    """Check the manifest `files` of `halves` (None: every file) in `split_dir`; return one line per file."""
    split_dir, lines = Path(split_dir), []
    for half in sorted(halves or ()):
        if not any(e.get("half") == half and rel.endswith("_lmdb") for rel, e in files.items()):
            raise KitError(f"{split_dir / 'manifest.json'} lists no LMDB of half {half!r}", fix)
    for rel, entry in files.items():
        if halves is not None and entry.get("half") not in halves:
            continue
        t0 = time.monotonic()
        if rel.endswith("_lmdb"):
            what = _check_lmdb(split_dir / rel, entry, full, fix, full_below)
        elif "sha256" in entry:
            verify_file(split_dir / rel, entry, fix)
            what = "sha256 matches"
        else:
            continue
        lines.append(f"ok {rel}: {what} ({time.monotonic() - t0:.3f} s)")
        log.debug("%s: %s", split_dir, lines[-1])
    return lines


def verify_split(split_dir: Path, halves: set[str] | None = None, full: bool = False,
                 fix: str = DEFAULT_FIX, *, full_below: int = FULL_CHECK_BYTES) -> list[str]:
    """Check the files split_dir/manifest.json lists (only those of `halves` if given); one line per file."""
    split_dir = Path(split_dir)
    path = split_dir / "manifest.json"
    if not path.is_file():
        raise KitError(f"{split_dir} has no manifest.json (the split is not prepared, or its preparation "
                       f"did not finish)", fix)
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise KitError(f"{path} is not valid JSON ({exc})", fix) from exc
    return verify_files(split_dir, manifest.get("files", {}), halves, full, fix, full_below=full_below)
