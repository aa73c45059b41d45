"""Which Caffe builds are shown to train the same nets: evidence records, and the build classes they make.

Records of two Caffe build keys (kitcore.provenance) pool only with evidence
that the builds train the same nets. The evidence is itself a record: a
published run trained again on the other build, published under
`<root>/builds/<its build key>/<split>/<treatment>/` (runner.evidence) beside
the run it repeats, `<root>/<split>/<treatment>/` or
`<root>/small/<split>/<treatment>/`. Where the two name the same final model
(result.json's `model_sha256`), the two builds are one class (`classes`);
the analysis pools records of one class, and the results page names the
evidence. A pair with different models is no evidence and is not kept.
"""
from __future__ import annotations

import json
from pathlib import Path

EVIDENCE = "builds"   # <root>/builds/<build key>/<split>/<treatment>/: a published run trained again on that build
TWIN_FOLDERS = ("", "small")  # where, under the root, the published run an evidence record repeats may lie


def _json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def build_key(run: Path) -> str:
    """The Caffe build key a record's run.json names."""
    return str(_json(Path(run) / "run.json").get("build", {}).get("key"))


def roots(records: Path) -> list[Path]:
    """The folders whose `builds/` may hold evidence for the records under `records` (it and its parent)."""
    records = Path(records)
    return [records, records.parent]


def evidence_dirs(records: Path) -> list[Path]:
    """Every evidence record for `records` (`<root>/builds/<key>/<split>/<treatment>/`), sorted."""
    found = {p.parent for root in roots(records) for p in (root / EVIDENCE).glob("*/*/*/run.json")}
    return sorted(found)


def twin(evidence: Path) -> Path | None:
    """The published record an evidence record repeats (None: there is none)."""
    root = evidence.parents[3]
    for folder in TWIN_FOLDERS:
        run = root / folder / evidence.parent.name / evidence.name
        if (run / "result.json").is_file():
            return run
    return None


def pairs(records: Path) -> list[dict]:
    """Each evidence record with its twin: {evidence, twin, builds: (theirs, the twin's), same: bool, model}."""
    out = []
    for ev in evidence_dirs(records):
        published = twin(ev)
        if published is None:
            continue
        mine, theirs = _json(ev / "result.json").get("model_sha256"), _json(published / "result.json").get(
            "model_sha256")
        out.append({"evidence": ev, "twin": published, "builds": (build_key(ev), build_key(published)),
                     "same": bool(mine) and mine == theirs, "model": mine})
    return out


def classes(records: Path) -> dict[str, str]:
    """build key -> the key of its class (the smallest key of the builds the evidence joins), for every build
    some evidence names; a build no evidence names is its own class."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key
    for p in pairs(records):
        if p["same"]:
            a, b = (find(k) for k in p["builds"])
            parent[max(a, b)] = min(a, b)
    return {key: find(key) for key in list(parent)}


def canonical(key: str, joined: dict[str, str]) -> str:
    """The class a build key belongs to (`joined`: classes())."""
    return joined.get(key, key)
