"""The house's rules: the core at the bottom, one layout, one profile registry, files under 300 lines.

Import rules are read from the sources with `ast` (every import, also the ones
inside functions), so a lazy import cannot hide an upward dependency.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from kitcore import layout
from kitcore.errors import KitError
from kitcore.profiles import KIT, PROFILES, Profile, from_record, profile, register
from kitcore.treatments import parse
from runner import inputs
from runner.train import RunSpec

from conftest import ROOT

PACKAGES = ("kitcore", "data_prep", "generators", "analysis", "runner", "caffe_build")


def _imports(path) -> set[str]:
    """Top-level package names a source file imports (anywhere in the file)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _imports_from(path) -> set[str]:
    """Names a source file imports from the runner package (`from runner import x`, `runner.x`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "runner":
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runner."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("runner.")}
    return names


def _modules(package: str):
    files = sorted((ROOT / package).glob("*.py"))
    assert files, f"no modules in {package}/"
    return files


@pytest.mark.parametrize("package,allowed", [("caffe_build", {"caffe_build"}), ("kitcore", {"kitcore"}),
                                             ("data_prep", {"kitcore", "data_prep"}),
                                             ("generators", {"kitcore", "generators"}),
                                             ("analysis", {"kitcore", "analysis"})])
def test_layers_import_only_downwards(package, allowed):
    for path in _modules(package):
        kit = _imports(path) & set(PACKAGES)
        assert kit <= allowed, f"{path.relative_to(ROOT)} imports {sorted(kit - allowed)}"


# runner modules that draw figures (the CLI and the demo) may import analysis; one run, the grid, Slurm,
# status and publishing may not: the Caffe log reader they share is kitcore's (caffe_log, runlog)
RUNNER_DRAWS = {"cli.py", "cli_runs.py", "demo.py"}


def test_one_run_and_the_grid_import_nothing_from_analysis():
    for path in _modules("runner"):
        kit = _imports(path) & set(PACKAGES)
        allowed = set(PACKAGES) if path.name in RUNNER_DRAWS else set(PACKAGES) - {"analysis"}
        assert kit <= allowed, f"{path.relative_to(ROOT)} imports {sorted(kit - allowed)}"


def test_bench_reaches_the_kit_as_installed():
    """The benchmarks import the kit's packages as the venv installs them: no sys.path edits, no tests."""
    for path in _modules("bench"):
        text = path.read_text()
        assert "sys.path.insert" not in text and "sys.path.append" not in text, path
        assert "tests" not in _imports(path), path


def test_grid_and_slurm_do_not_import_each_other():
    grid, slurm = ROOT / "runner" / "grid.py", ROOT / "runner" / "slurm.py"
    assert "slurm" not in {n for n in _imports_from(grid)}, "grid imports runner.slurm"
    assert "grid" not in {n for n in _imports_from(slurm)}, "slurm imports runner.grid"
    assert {"grid", "slurm"} <= _imports_from(ROOT / "runner" / "status.py"), "status joins the two"


def test_no_source_file_over_300_lines():
    files = [p for pkg in PACKAGES + ("bench", "tests") for p in _modules(pkg)]
    assert len(files) > 40
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long


def test_importing_the_generators_needs_no_pycaffe():
    code = ("import sys; before = list(sys.path); "
            "import generators.netgen, generators.runfiles, kitcore.caffe_env, kitcore.layout; "
            "print('caffe' in sys.modules, 'caffe.proto' in sys.modules, bool(__import__('os').environ.get("
            "'GLOG_minloglevel')), sys.path != before)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "CAFFE_ROOT": "/nonexistent/caffe"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "False", "False", "False"], "nothing of pycaffe, os.environ or sys.path"


def test_split_names_per_protocol():
    assert [layout.split_name(p, 3, 5) for p in ("random", "natman", "whole", "reduced", "small")] == \
        ["random3", "natman", "all", "reduced5", "small3k5"]
    with pytest.raises(KitError, match="needs k"):
        layout.split_name("reduced", 0, None)
    with pytest.raises(KitError, match="small protocol needs k.*make split-small"):
        layout.split_name("small", 0, None)
    assert layout.split_protocol("small12k25") == ("small", 12, 25) and layout.split_seed("small1k5") is None
    assert layout.cut_halves("small", ["A", "B"]) == ["B"] and layout.cut_halves("reduced", ["all"]) == ["all"]
    assert layout.cut_halves("random", ["A", "B"]) == []
    assert layout.split_seed("random12") == 12 and layout.split_seed("natman") is None
    assert layout.split_seed("random1x") is None and layout.split_seed("random01") is None  # not split_name's
    with pytest.raises(KitError, match="invalid images per class 0"):
        layout.split_name("reduced", 0, 0)
    with pytest.raises(KitError, match="invalid split seed -1"):
        layout.split_name("random", -1)
    with pytest.raises(KitError, match="unknown protocol 'tiny'.*random, natman, whole, reduced, small"):
        layout.split_name("tiny")


def test_the_protocol_table_names_folders_and_targets(tmp_path):
    """Every row: its folder read back to it, its make target in the Makefile, made by split_command."""
    makefile = (KIT / "Makefile").read_text()
    for spec in layout.PROTOCOLS.values():
        name = layout.split_name(spec.name, 7, 9, mix=5)
        assert layout.split_protocol(name) == (spec.name, 7 if "seed" in spec.variables else 0,
                                               9 if "per_class" in spec.variables else None)
        assert layout.split_mix(name) == (5 if "mix" in spec.variables else None)
        assert f"\n{spec.target}:" in makefile, spec.target
        assert layout.split_command("fa20", spec.name, 7, 9, mix=5).startswith(f"make {spec.target} DATASET=fa20")
    assert layout.dataset_dir(tmp_path, "mine") == tmp_path / "mine" / "dataset"
    for bad in ("reduced0", "small1", "small1k0", "small01k5", "small1k5x", "mix1", "mix01m2", "mix1m", "mix1m02"):
        with pytest.raises(KitError, match=f"unknown split name '{bad}'"):
            layout.split_protocol(bad)


@pytest.mark.parametrize("protocol,treatment,base,extra", [
    ("natman", "A1B", "baseA", "PROTOCOL=natman SEED=2"),
    ("random", "B3B+", "baseB", "PROTOCOL=random SEED=2"),
])
def test_a_missing_base_names_the_command_of_its_own_split(tmp_path, protocol, treatment, base, extra):
    spec = RunSpec(tmp_path, "fa20", 2, parse(treatment, protocol))
    with pytest.raises(KitError) as err:
        inputs.base_model(spec)
    assert f"fix: make train TREATMENT={base} DATASET=fa20 {extra}" in str(err.value)
    assert spec.run_dir == tmp_path / "fa20" / layout.split_name(protocol, 2) / "runs" / treatment


def test_fix_commands_carry_every_variable_of_the_split():
    assert layout.train_command("base", "imagenet", "reduced", 0, 25, force=True) == \
        "make train TREATMENT=base DATASET=imagenet PROTOCOL=reduced SEED=0 PERCLASS=25 FORCE=1"
    assert layout.split_command("imagenet", "reduced", 0, 25) == \
        "make split-reduced DATASET=imagenet PERCLASS=25 LISTS=dir IMAGES=dir"
    assert layout.split_command("fa20", "random", 3, force=True) == "make split-random DATASET=fa20 SEED=3 FORCE=1"
    assert layout.split_command("fa20", "natman") == "make split-natural DATASET=fa20"
    assert layout.split_command("fa20", "small", 2, 10) == "make split-small DATASET=fa20 SEED=2 PERCLASS=10"
    assert layout.train_command("A3B+", "fa20", "small", 2, 10) == \
        "make train TREATMENT=A3B+ DATASET=fa20 PROTOCOL=small SEED=2 PERCLASS=10"


def test_is_finished_is_one_answer(tmp_path):
    run = tmp_path / "run"
    assert not layout.is_finished(run)
    (run / "snapshots").mkdir(parents=True)
    model = run / "snapshots" / "m.caffemodel"
    model.write_bytes(b"weights")
    (run / "result.json").write_text(json.dumps({"model": "snapshots/m.caffemodel", "model_sha256": "0" * 64}))
    assert not layout.is_finished(run) and layout.is_finished(run, check_model=False)
    from kitcore.atomic import sha256
    (run / "result.json").write_text(json.dumps({"model": "snapshots/m.caffemodel", "model_sha256": sha256(model)}))
    assert layout.is_finished(run)
    model.unlink()
    assert not layout.is_finished(run, check_model=False)


def test_profiles_registry():
    assert set(PROFILES) >= {"fa20", "imagenet"}
    fa20, imagenet = profile("fa20"), profile("imagenet")
    assert fa20.input_shape() == (1, 1, 28, 28) and imagenet.input_shape(227) == (1, 3, 227, 227)
    assert imagenet.solver_template("reduced").name == "caffenet_reduced_solver.prototxt"
    assert imagenet.solver_template("natman").name == "caffenet_solver.prototxt"
    assert fa20.net_template_path().is_file() and all((ROOT / s).is_file() for s in imagenet.solvers.values())
    assert fa20.mean_half("A", "B") == "A" and fa20.mean_half(None, "B") == "B"
    record = json.loads(json.dumps(fa20.record()))
    assert Profile(**{**record, "image_shape": tuple(record["image_shape"]),
                      "protocols": tuple(record["protocols"])}) == fa20, "run.json's profile is the whole profile"
    with pytest.raises(KitError, match="unknown dataset 'cifar'.*fa20, imagenet"):
        profile("cifar")
    with pytest.raises(KitError, match="is taken"):
        register(Profile(**{**fa20.record(), "image_shape": (3, 32, 32), "protocols": ("random",)}))
    with pytest.raises(KitError, match="no split of fa20"):
        fa20.check_protocol("reduced")


def test_each_profile_names_its_preparer():
    """The registry says how every dataset's splits are made; a record from before the field still loads."""
    assert {n: p.preparer for n, p in PROFILES.items() if n in ("fa20", "imagenet")} == \
        {"fa20": "fa20", "imagenet": "lists"}
    assert profile("fa20").embedded and not profile("imagenet").embedded and not profile("imagenet").user
    with pytest.raises(KitError, match="unknown preparer 'zip'.*") as err:
        register(Profile(**{**profile("fa20").record(), "name": "zipped", "image_shape": (1, 28, 28),
                            "protocols": ("random",), "preparer": "zip"}))
    assert err.value.fix == "use one of: fa20, lists, folder" and "zipped" not in PROFILES
    old = {k: v for k, v in profile("fa20").record().items() if k != "preparer"}
    assert from_record({**old, "embedded": True}) == profile("fa20")
    user = {**old, "name": "mine", "extra": {"user": True}, "embedded": False}
    assert from_record(user).preparer == "folder" and from_record(user).user
    assert from_record({**user, "extra": {}}).preparer == "lists"
