"""The Slurm config: runner/slurm.toml's defaults, overridden by a user's file, strictly.

The top-level keys are the training jobs' (runner.slurm: one run, or one array of
transfers); the [prepare] table holds make experiment's CPU jobs' (the whole-set
store, each split, the figures: runner.experiment_slurm), which take the training
jobs' settings for the keys it leaves out and never a GPU. A user's file may set
only keys the defaults have, each with a value of the same type (a table for
[prepare]); a time must be one Slurm reads, cpus at least 1, counts not negative.
Each break of a rule is a one-line KitError naming the key and the fix.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from kitcore.errors import KitError

DEFAULTS = Path(__file__).with_name("slurm.toml")
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


def _merge(config: dict, user: dict, path: Path, section: str = "") -> None:
    """Override `config` with `user` in place: a key of its own, a value of the same type ([table]s alike)."""
    for key, value in user.items():
        where = f"{section}.{key}" if section else key
        if key not in config:
            keys = ", ".join(f"[{k}]" if isinstance(v, dict) else k for k, v in config.items())
            raise KitError(f"unknown key {where!r} in {path}",
                           f"use only: {keys}{f' in [{section}]' if section else ''} (see {DEFAULTS})")
        want = type(config[key])
        if want is dict:
            if not isinstance(value, dict):
                raise KitError(f"{where} in {path} must be a table, got {value!r}",
                               f"write [{where}] on a line of its own, then its keys (see {DEFAULTS})")
            _merge(config[key], value, path, where)
            continue
        if type(value) is not want or (want is list and not all(isinstance(v, str) for v in value)):
            raise KitError(f"{where} in {path} must be {want.__name__ if want is not list else 'a list of strings'}, "
                           f"got {value!r}", f"write e.g. {key} = {json.dumps(config[key])}"
                           + (f" under [{section}]" if section else ""))
        config[key] = value


def _check_values(config: dict, section: str = "") -> None:
    """Slurm's own rules: a time Slurm reads, cpus >= 1, no negative counts (in every [table] too)."""
    where = f"{section}." if section else ""
    if not _TIME.match(config["time"]):
        raise KitError(f"{where}time = {config['time']!r} is not a Slurm time",
                       'write e.g. time = "2-00:00:00" or "90:00"')
    for key in ("cpus", "gpus", "mem_mb", "signal_s"):
        if key in config and config[key] < (1 if key == "cpus" else 0):
            raise KitError(f"{where}{key} = {config[key]} is out of range",
                           f"set {key} to a non-negative number (cpus >= 1)")


def load_config(path: Path | None = None) -> dict:
    """The defaults of runner/slurm.toml, overridden by `path`; unknown keys and wrong types are errors
    (in its [prepare] table too)."""
    config = tomllib.loads(DEFAULTS.read_text())
    if path is None:
        return config
    try:
        user = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KitError(f"cannot read the Slurm config {path} ({exc})",
                       f"fix the file; its keys and types are those of {DEFAULTS}") from exc
    _merge(config, user, Path(path))
    _check_values(config)
    _check_values(config["prepare"], "prepare")
    return config


def prepare_config(config: dict) -> dict:
    """The settings of a data preparation job: the training jobs', no GPU, overridden by [prepare]."""
    return {**config, "gpus": 0, **config["prepare"]}
