"""Publish a work folder's finished grids as run records under `results/` (make publish WORK=dir).

```
results/<dataset>/<split>/split.json                 the split's classes (data_prep's split.json)
results/<dataset>/<split>/<treatment>/train.log.gz   its Caffe log(s), gzipped: train.log.1.gz, ... then train.log.gz
results/<dataset>/<split>/<treatment>/run.json       the inputs with their sha256, protocol, build, host, commit
results/<dataset>/<split>/<treatment>/result.json    its score (the mean of the 10 best tests) and final model's sha256
results/<dataset>/extra/<split>/split.json         a split's replicate runs (r >= 1, make grid REPEATS=R) ...
results/<dataset>/extra/<split>/<treatment>.r<r>/  ... one record each, the same three kinds of file
```
The unit is a split's whole grid (kitcore.treatments.grid_names: the random
split's 30 runs, natman's 16, all's 8), so no unit needs another's base models.
A unit is published only when every one of its runs is finished
(kitcore.layout.is_finished, model hash checked), its score is the one its log
gives and its loss never became NaN; every run of it must share one Caffe build
key and one protocol key (kitcore.provenance), and so must the records already
in the folder unless `allow_mixed` (builds that evidence records show to
train the same nets, kitcore.builds, count as one). A protocol that cuts a half to k images
per class (small: B) trains the runs on that half for k's own iterations
(solvers/small_iters.toml): their protocol key is one, the other half's
another, and the records of other k's beside them need only share the build.
The unit is written under a temporary name, with its SHA256SUMS last
(kitcore.sums: what the analysis checks before it reads a number), and
renamed into place, so a killed publish leaves nothing that looks
published. A unit already there with the same content is left as it is; one
with other content is an error: finished records are never overwritten.

A second kind of unit (`repeats=True`, make publish REPEATS=1) is a split's
runs beyond its grid, `<records>/extra/<split>/`: its replicates, every run
folder `<treatment>.r<r>` (r >= 1, kitcore.layout), and the treatments
outside every grid (kitcore.treatments.EXTRA_NAMES: baseB2x) in its work
folder, all finished, under the same checks and the same rules of writing;
the grid unit never holds them (it reads grid_names' folders alone).
A replicate of a transfer trained from its split's r = 0 base, whose record is
the grid unit's: no unit holds a model, so neither needs the other.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

from kitcore import atomic, builds, diskspace, layout, sums
from kitcore.caffe_log import parse_log, score
from kitcore.errors import KitError
from kitcore.runlog import diverged_at, log_segments
from kitcore.treatments import EXTRA_NAMES, grid_names

log = logging.getLogger(__name__)

RECORD_LIMIT = 100_000  # bytes per run record (its logs gzipped, run.json, result.json)
PROVENANCE = ("build", "host", "protocol_files", "git_commit")  # what run.json must say to be published
SCORE_TOLERANCE = 1e-9
REPEATS = "extra"  # <records>/extra/<split>/: the replicate units


def _gzip(data: bytes) -> bytes:
    """gzip with a fixed header (no name, mtime 0): the same log gives the same bytes."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def record_files(run: Path) -> dict[str, bytes]:
    """The record of one finished run folder: {file name: bytes} (logs gzipped, run.json, result.json)."""
    files = {}
    for seg in log_segments(run):
        raw = seg.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        files[seg.name.removesuffix(".gz") + ".gz"] = _gzip(raw)
    for name in ("run.json", "result.json"):
        files[name] = (run / name).read_bytes()
    return files


def keys_of(meta: dict) -> tuple[str, str]:
    """(build key, protocol key) of a run.json."""
    return str(meta.get("build", {}).get("key")), str(meta.get("protocol_files", {}).get("key"))


def _check_run(run: Path, cmd: str) -> dict:
    """run.json of a finished run (unit() has checked that) if it is scored, did not diverge and says its
    provenance, or a KitError naming the fix."""
    meta = json.loads((run / "run.json").read_text())
    missing = [k for k in PROVENANCE if not meta.get(k)]
    if missing:
        raise KitError(f"{run}/run.json has no {', '.join(missing)} (made by a kit that did not record them)",
                       f"redo the run with this kit: {cmd} FORCE=1")
    parsed = parse_log(log_segments(run))
    if (it := diverged_at(parsed)) is not None:
        raise KitError(f"{run} diverged at iteration {it}", "a diverged run is no result: fix its solver and redo it")
    result = json.loads((run / "result.json").read_text())
    accs = parsed.test_accuracies
    if not accs or result.get("score") is None or abs(score(accs) - result["score"]) > SCORE_TOLERANCE:
        raise KitError(f"{run}/result.json's score {result.get('score')} is not its log's "
                       f"({score(accs) if accs else 'no tests'})", f"redo the run: {cmd} FORCE=1")
    return meta


def replicates(sdir: Path) -> list[tuple[str, int]]:
    """(treatment, r) of every run folder of a split beyond its grid unit, sorted: the replicates
    (`<treatment>.r<r>`, r >= 1) and the treatments outside every grid (kitcore.treatments.EXTRA_NAMES: baseB2x)."""
    runs = Path(sdir) / "runs"
    found = [layout.parse_run_name(p.name) for p in runs.iterdir() if p.is_dir()] if runs.is_dir() else []
    return sorted((t, r) for t, r in found if r > 0 or t in EXTRA_NAMES)


def _grid_cmd(work: Path, dataset: str, protocol: str, seed: int, per_class: int | None, mix: int | None) -> str:
    """The make command that runs a split's grid in `work` (WORK= unless it is the kit's `work`)."""
    return " ".join([f"make grid DATASET={dataset} PROTOCOL={protocol} SEED={seed}",
                     *([f"PERCLASS={per_class}"] if per_class else []), *([f"MIX={mix}"] if mix is not None else []),
                     *layout.work_setting(work)])


def unit(work: Path, dataset: str, split: str, repeats: bool = False) -> tuple[Path, dict[str, dict]]:
    """The split folder of a unit and the run.json of each of its runs by run folder name, all checked (KitError
    if not ready): the split's grid, or (repeats) its replicate runs."""
    (protocol, seed, per_class), mix = layout.split_protocol(split), layout.split_mix(split)
    sdir = layout.split_dir(work, dataset, split)
    runs = replicates(sdir) if repeats else [(name, 0) for name in grid_names(protocol)]
    if not runs:
        raise KitError(f"{sdir} has no replicate runs (<treatment>.r<r>)",
                       f"train some first: {_grid_cmd(work, dataset, protocol, seed, per_class, mix)} REPEATS=2")
    metas, waiting = {}, []
    for name, r in runs:
        run, cmd = layout.run_dir(sdir, name, r), layout.train_command(name, dataset, protocol, seed, per_class,
                                                                       repeat=r, work=work, mix=mix)
        if not layout.is_finished(run):
            waiting.append((run.name, cmd))
            continue
        metas[run.name] = _check_run(run, cmd)
    if waiting:
        more = f" (+{len(waiting) - 6} more)" if len(waiting) > 6 else ""
        listed = f"({', '.join(name for name, _ in waiting[:6])}{more})"
        if repeats:
            raise KitError(f"{sdir}: {len(waiting)} of its {len(metas) + len(waiting)} replicate runs are not "
                           f"finished {listed}; a split's replicates are published together",
                           f"finish them first ({waiting[0][1]}, ...), or move the unwanted ones aside")
        raise KitError(f"{sdir}: {len(waiting)} of its {len(metas) + len(waiting)} runs are not finished "
                       f"{listed}; a split's grid is published whole",
                       f"finish the grid first: {_grid_cmd(work, dataset, protocol, seed, per_class, mix)}")
    groups: dict[bool, set] = {}  # runs on a cut half, and the others: one (build, protocol) pair each
    for m in metas.values():
        groups.setdefault(bool(layout.cut_halves(protocol, [m.get("target")])), set()).add(keys_of(m))
    keys = set().union(*groups.values())
    if any(len(k) > 1 for k in groups.values()) or len({build for build, _ in keys}) > 1:
        raise KitError(f"{sdir}: its runs come from {len(keys)} builds or protocols ({sorted(keys)})",
                       "redo the odd runs on one build (FORCE=1), then publish")
    return sdir, metas


def published_keys(records: Path) -> set[tuple[str, str]]:
    """The (build key, protocol key) pairs of every record under a records folder (replicate units too)."""
    paths = [*Path(records).glob("*/*/run.json"), *Path(records).glob(f"{REPEATS}/*/*/run.json")]
    return {keys_of(json.loads(p.read_text())) for p in paths
            if not p.parts[-3].startswith(".")}  # not a unit being written (.<split>.tmp-<pid>)


def _same(dest: Path, files: dict[str, dict[str, bytes]]) -> list[str]:
    """The names (run/file) where a published unit differs from `files` (logs compared decompressed)."""
    diffs = []
    have = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != sums.SUMS}
    want = {f"{run}/{name}" if run else name for run, fs in files.items() for name in fs}
    diffs += sorted(have ^ want)
    for rel in sorted(have & want):
        run, _, name = rel.rpartition("/")
        new, old = files[run][name], (dest / rel).read_bytes()
        if name.endswith(".gz"):
            new, old = gzip.decompress(new), gzip.decompress(old)
        if new != old:
            diffs.append(rel)
    return diffs


def publish_unit(work: Path, dataset: str, split: str, records: Path, allow_mixed: bool = False,
                 repeats: bool = False) -> str:
    """Publish one split's grid into records/<split> (repeats: its replicate runs into records/extra/<split>);
    return one line saying what was done."""
    sdir, metas = unit(work, dataset, split, repeats)
    records = Path(records)
    joined = builds.classes(records)  # builds that evidence records show to train the same nets count as one

    def same_build(keys: set) -> set:
        return {(builds.canonical(b, joined), p) for b, p in keys}
    ours = {keys_of(m) for m in metas.values()}
    others = same_build(published_keys(records)) - same_build(ours)
    if layout.protocol_spec(layout.split_protocol(split)[0]).cut:  # each k its own iterations: builds must agree
        others = {key for key in others if key[0] not in {build for build, _ in same_build(ours)}}
    if others and not allow_mixed:
        raise KitError(f"{records} holds records of another build or protocol ({sorted(others)}; "
                       f"these runs: {sorted(ours)})",
                       "publish into another folder (RECORDS=dir), or pass --allow-mixed "
                       "(MIXED=1) to keep both (the analysis then refuses to pool them unless told)")
    files: dict[str, dict[str, bytes]] = {"": {"split.json": (sdir / "split.json").read_bytes()}}
    for name in metas:
        files[name] = record_files(sdir / "runs" / name)
        size = sum(len(b) for b in files[name].values())
        if size > RECORD_LIMIT:
            raise KitError(f"the record of {sdir.name}/{name} would be {size} bytes (limit {RECORD_LIMIT})",
                           "lower the solver's display frequency so its log is shorter, then redo the run")
    dest = records / REPEATS / split if repeats else records / split
    label = f"{REPEATS}/{split}" if repeats else split
    if dest.exists():
        diffs = _same(dest, files)
        if diffs:
            raise KitError(f"{dest} is published already, with other content ({', '.join(diffs[:4])})",
                           f"finished records are never overwritten: move {dest} aside (git rm -r) if this "
                           f"{'unit' if repeats else 'grid'} replaces it, then publish again")
        return f"{label}: already published in {dest} ({len(metas)} runs, the same content)"
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic.clean_stale_tmp(dest.parent / f".{split}")  # what a killed publish left (never read: its name starts with .)
    tmp = atomic.tmp_path(dest.parent / f".{split}")
    total = sum(len(b) for fs in files.values() for b in fs.values())
    try:
        with diskspace.writing(dest, total, partial=tmp, elsewhere="or publish into another RECORDS=dir"):
            for run, fs in files.items():
                for name, data in fs.items():
                    path = tmp / run / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            sums.write_sums(tmp)  # last: the unit's checksums travel with it in the one rename
        os.replace(tmp, dest)
    finally:
        atomic.remove_path(tmp)
    return f"{label}: published {len(metas)} runs into {dest} ({total / 1000:.0f} kB)"


def publishable(work: Path, dataset: str) -> list[str]:
    """The split folders of a dataset in a work folder that have runs (sorted)."""
    base = Path(work) / dataset
    return sorted(p.name for p in base.iterdir() if (p / "runs").is_dir()) if base.is_dir() else []


def publish(work: Path, dataset: str, records: Path, splits: list[str] | None = None,
            allow_mixed: bool = False, repeats: bool = False) -> list[str]:
    """Publish the finished grids of a work folder (or the `splits` named; repeats: their replicate units);
    return one line per split.

    Named splits must each be ready (else KitError); without names, every split whose grid (replicates) is
    finished is published and the others are reported, and it is an error when none is."""
    if not (Path(work) / dataset).is_dir():
        raise KitError(f"{Path(work) / dataset} does not exist", "pass the WORK=dir a grid or make demo ran in")
    lines, ready = [], 0
    for split in splits or publishable(work, dataset):
        if repeats and not splits and not replicates(Path(work) / dataset / split):
            continue  # a split without replicates has no replicate unit
        try:
            lines.append(publish_unit(work, dataset, split, records, allow_mixed, repeats))
            ready += 1
        except KitError as exc:
            if splits or "are not finished" not in exc.problem:
                raise
            lines.append(f"{split}: not published: {exc.problem}")
    if not ready:
        what = "replicate runs (make grid REPEATS=R)" if repeats else "grid"
        raise KitError(f"no finished {what} to publish under {Path(work) / dataset}",
                       f"finish a split's {what} first (make demo, or make grid)")
    return lines
