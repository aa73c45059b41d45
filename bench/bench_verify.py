"""(g) The cost of checking a split before a run: data_prep.verify's fast check against the full one.

An FA-20 split (4 LMDBs, 20,000 records) and one LMDB of ImageNet-size Datums
(unencoded 3x256x256, `--records` of them; 10,000 = 2 GB) are written under a
temporary folder, then checked: fast with the sample only (record count, size,
32 sampled records), fast as a run start does it (files of 64 MiB or less
hashed whole), and full (every record). Median of 5 (full on the big LMDB: of
3), page cache warm; the ratios are the figures to quote.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from data_prep import fa20
from data_prep.lmdb_io import write_records_lmdb
from data_prep.prepare import prepare_split
from data_prep.verify import verify_lmdb, verify_split


def _median(fn, k: int = 5) -> float:
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Print the fast and full check times of an FA-20 split and of one ImageNet-size LMDB."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--records", type=int, default=10000, help="Datums of 3x256x256 in the big LMDB")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="kit-bench-verify-") as tmp:
        root = Path(tmp)
        fa20.build_fa20(root / "fa20" / "dataset")
        split = prepare_split(root, "fa20", 0)
        sample = _median(lambda: verify_split(split, full_below=0))
        start, full = _median(lambda: verify_split(split)), _median(lambda: verify_split(split, full=True))
        print(f"(g) FA-20 random0, 4 LMDBs: sample only {sample * 1e3:.1f} ms, as at a run start "
              f"{start * 1e3:.1f} ms, full {full * 1e3:.1f} ms (full / sample {full / sample:.0f}x)")
        n, size = args.records, 3 * 256 * 256 + 20
        blob = np.random.default_rng(0).integers(0, 256, size + n, dtype=np.uint8).tobytes()
        big = root / "big_lmdb"
        entry = write_records_lmdb(big, ((f"{i:08d}_x/{i}.JPEG".encode(), blob[i:i + size]) for i in range(n)), n,
                                   "big", map_size=int(1.1 * n * (size + 512)))
        entry["records"] = n
        gb = (big / "data.mdb").stat().st_size / 1e9
        fast = _median(lambda: verify_lmdb(big, entry, False, "bench"))
        whole = _median(lambda: verify_lmdb(big, entry, True, "bench"), k=3)
        print(f"(g) one LMDB of {n} ImageNet-size Datums ({gb:.2f} GB): fast {fast * 1e3:.1f} ms, "
              f"full {whole:.2f} s (full / fast {whole / fast:.0f}x)")


if __name__ == "__main__":
    main()
