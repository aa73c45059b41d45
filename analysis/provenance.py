"""Where the runs ran, what they cost and which builds pool: the provenance sections of the results page.

`provenance_lines` tabulates, per split, the distinct Caffe builds, BLAS
kernels, hosts, kit commits and protocol keys of its records (each record's
run.json) and the wall time its runs took; `evidence_lines` lists the
evidence records that let two builds' records pool (kitcore.builds).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from analysis.records import record_dirs
from analysis.rules import seed_of
from kitcore import builds


def _kind(row: dict) -> str:
    if row.get("kind") == "transfer":
        return "fine-tuned" if row.get("finetuned") else "frozen"
    return str(row.get("kind") or "?")


def _span(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f} s" if values else "n/a"


def host_text(host: dict) -> str:
    """'AMD EPYC (family 25 model 1, avx2, 2 cores)': a run.json's host in a few words."""
    return (f"{host.get('cpu')} (family {host.get('family')} model {host.get('model')}, {host.get('simd')}, "
            f"{host.get('cores')} cores)")


def _distinct(metas: list[dict], text) -> str:
    """The distinct values of text(run.json) over a split's runs, joined by '; '."""
    return "; ".join(sorted({text(m) for m in metas}))


def _build_text(m: dict) -> str:
    b = m.get("build", {})
    return f"{b.get('key')} ({b.get('variant')}, {b.get('speed')}, {b.get('engine')})"


def _blas_text(m: dict) -> str:
    blas = m.get("build", {}).get("blas", {})
    return f"{blas.get('library', '?')}, {blas.get('core', '?')}"


def _commit_text(m: dict) -> str:
    return f"{str(m.get('git_commit'))[:10]}{' (with changes)' if m.get('git_dirty') else ''}"


def provenance_lines(rows: list[dict], metas: dict[str, list[dict]]) -> list[str]:
    """The 'where the runs ran' and 'what they cost' tables of the results page (each cell: the distinct
    values over the split's runs)."""
    splits = sorted({r["split"] for r in rows}, key=lambda s: (seed_of({"split": s}) is None, s))
    out = ["| split | runs | Caffe build (engine) | BLAS, its kernel here | host CPU | kit commit | protocol key |",
           "|---|---|---|---|---|---|---|"]
    for split in splits:
        ms = metas[split]
        out.append(f"| {split} | {len(ms)} | {_distinct(ms, _build_text)} | {_distinct(ms, _blas_text)} | "
                   f"{_distinct(ms, lambda m: host_text(m.get('host', {})))} | {_distinct(ms, _commit_text)} | "
                   f"{_distinct(ms, lambda m: str(m.get('protocol_files', {}).get('key')))} |")
    threads = _distinct([m for ms in metas.values() for m in ms], lambda m: str(m.get("threads")))
    out += ["", "What the runs cost (each run's wall time from its log's first to its last line, with "
            f"{threads} BLAS thread(s) a run, as run.json says; runs that ran side by side overlap in time):", "",
            "| split | sum of run wall times | base nets | frozen transfers | fine-tuned transfers | other |",
            "|---|---|---|---|---|---|"]
    for split in splits:
        mine = [r for r in rows if r["split"] == split and not math.isnan(float(r.get("wall_seconds") or math.nan))]
        by = {k: [float(r["wall_seconds"]) for r in mine if _kind(r) == k] for k in ("base", "frozen", "fine-tuned")}
        other = [float(r["wall_seconds"]) for r in mine if _kind(r) not in by]
        total = sum(float(r["wall_seconds"]) for r in mine)
        out.append(f"| {split} | {total:.0f} s ({total / 60:.1f} min) | {_span(by['base'])} | {_span(by['frozen'])} "
                   f"| {_span(by['fine-tuned'])} | {_span(other)} |")
    return out


def evidence_lines(records: Path, shown: str) -> list[str]:
    """What the results page says of the builds it pools: each evidence record and the record it repeats (paths
    as `shown`, the records folder as the page names it)."""
    found = [p for p in builds.pairs(records) if p["same"]]
    if not found:
        return []
    root = Path(records)

    def name(path: Path) -> str:
        return f"{shown}/{path.relative_to(root)}" if path.is_relative_to(root) else str(path)
    return ["Records of more than one Caffe build are pooled only where a published run, trained again on the "
            "other build, ended in the very model its record names (`make publish-evidence`; kitcore/builds.py):",
            "", *(f"- build {p['builds'][0]} = build {p['builds'][1]}: `{name(p['evidence'])}` "
                  f"repeats `{name(p['twin'])}` (model sha256 {p['model'][:16]}...)"
                  for p in found), ""]


def metas_of(records: Path) -> dict[str, list[dict]]:
    """The run.json of every record, by split: the provenance the page names."""
    out: dict[str, list[dict]] = {}
    for run in record_dirs(records):
        out.setdefault(run.parent.name, []).append(json.loads((run / "run.json").read_text()))
    return out
