"""Published units that verify themselves: a SHA256SUMS file per unit, checked before any number is read.

A unit of published run records (a split's grid `<records>/<split>/`, its
replicates `<records>/extra/<split>/`, one evidence record
`<root>/builds/<key>/<split>/<treatment>/`) holds SHA256SUMS: one line per
file of the unit, `<sha256>  <path relative to the unit>`, sorted, in the
format `sha256sum -c SHA256SUMS` reads. runner.publish writes it last into
the unit's temporary folder, so it is part of the atomic rename; the
analysis (`verify_unit`) refuses a unit whose files are missing, changed,
truncated or joined by a file it does not list, with a one-line error that
names the file and how to restore it from git.
"""
from __future__ import annotations

from pathlib import Path

from kitcore.atomic import sha256
from kitcore.errors import KitError

SUMS = "SHA256SUMS"


def _files(unit: Path) -> list[str]:
    """Every file of a unit but SHA256SUMS, as sorted paths relative to it."""
    return sorted(str(p.relative_to(unit)) for p in Path(unit).rglob("*") if p.is_file() and p.name != SUMS)


def sums_text(unit: Path) -> str:
    """The SHA256SUMS text of a unit's files as they are now."""
    return "".join(f"{sha256(Path(unit) / name)}  {name}\n" for name in _files(unit))


def write_sums(unit: Path) -> Path:
    """Write a unit's SHA256SUMS (publish calls it on the unit's temporary folder, before the rename)."""
    path = Path(unit) / SUMS
    path.write_text(sums_text(unit))
    return path


def read_sums(unit: Path) -> dict[str, str]:
    """{path: sha256} of a unit's SHA256SUMS; KitError when it is missing or malformed."""
    path = Path(unit) / SUMS
    restore = f"git checkout -- {path}"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        raise KitError(f"the published unit {unit} has no {SUMS}: its records cannot be checked",
                       f"restore it ({restore}), or publish the unit again from its work folder") from None
    out = {}
    for line in lines:
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise KitError(f"{path} has a malformed line: {line[:80]!r}", f"restore it: {restore}")
        out[name] = digest
    return out


def verify_unit(unit: Path) -> int:
    """Check every file of a published unit against its SHA256SUMS; return how many; KitError on the first
    problem (a listed file missing or changed, a file not listed)."""
    unit = Path(unit)
    listed = read_sums(unit)
    for name, digest in listed.items():
        path = unit / name
        if not path.is_file():
            raise KitError(f"the published record file {path} is missing", f"restore it: git checkout -- {path}")
        if sha256(path) != digest:
            raise KitError(f"the published record file {path} is not the one published (its sha256 differs: "
                           "changed or truncated)", f"restore it: git checkout -- {path}")
    stray = [name for name in _files(unit) if name not in listed]
    if stray:
        raise KitError(f"{unit / stray[0]} is not part of the published unit {unit} ({len(stray)} such file(s))",
                       f"remove it (git clean -n {unit} lists them), or publish it as a unit of its own")
    return len(listed)
