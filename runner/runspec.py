"""What one run is: RunSpec (split, treatment, budget, replicate) and its iterations (iters_of, budget).

runner.train trains a RunSpec; runner.finished decides what a finished run folder means for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generators import netgen
from generators.runfiles import cut_iters
from kitcore import layout
from kitcore.profiles import Profile, profile
from kitcore.treatments import Treatment


@dataclass(frozen=True)
class RunSpec:
    """What one run needs: the split folder, the treatment and the budget."""

    work: Path
    dataset: str
    seed: int
    treatment: Treatment
    iters: int | None = None
    threads: int | None = None
    gpu: bool = False
    per_class: int | None = None  # protocols reduced, small: k train images per class (reduced{k}, small{s}k{k})
    batch: int | None = None  # train and val batch instead of the template's (toy runs of the paper's net)
    test_iter: int | None = None  # test batches per test instead of the profile's policy
    repeat: int = 0  # replicate r: runs/<treatment>.r<r>, solver seed + 1000 * r (0: the run as it always was)
    mix: int | None = None  # protocol mix: m, the classes swapped between natman's halves (mix{s}m{m})

    @property
    def profile(self) -> Profile:
        """The dataset's profile (kitcore.profiles)."""
        return profile(self.dataset)

    @property
    def split_dir(self) -> Path:
        """Folder of the split the run trains on."""
        name = layout.split_name(self.treatment.protocol, self.seed, self.per_class, self.mix)
        return layout.split_dir(Path(self.work), self.dataset, name)

    @property
    def run_dir(self) -> Path:
        """The run folder (`<treatment>`, or `<treatment>.r<r>` for replicate r >= 1)."""
        return layout.run_dir(self.split_dir, self.treatment.name, self.repeat)

    def cli_flags(self) -> list[str]:
        """The `transfer-kit train` options that select this run's split and budget (all but --treatment and
        --threads): what a Slurm job passes to run it."""
        flags = ["--work", str(Path(self.work).resolve()), "--dataset", self.dataset, "--seed", str(self.seed),
                 "--protocol", self.treatment.protocol]
        for option, value in (("--iters", self.iters), ("--per-class", self.per_class), ("--batch", self.batch),
                              ("--test-iter", self.test_iter), ("--repeat", self.repeat)):
            flags += [option, str(value)] if value else []
        flags += ["--mix", str(self.mix)] if self.mix is not None else []
        return flags + (["--gpu"] if self.gpu else [])

    def make_cmd(self, treatment: str | None = None, force: bool = False) -> str:
        """The make command that runs this run (treatment None: with its REPEAT), or the r = 0 run of
        `treatment` (a base), on this run's split (same dataset, protocol, seed, k) with this run's settings
        (ITERS, MODE, WORK, BATCH, TEST_ITER)."""
        return layout.train_command(treatment or self.treatment.name, self.dataset, self.treatment.protocol,
                                    self.seed, self.per_class, force=force,
                                    repeat=self.repeat if treatment is None else 0, iters=self.iters,
                                    gpu=self.gpu, work=self.work, mix=self.mix, batch=self.batch,
                                    test_iter=self.test_iter)


def iters_of(spec: RunSpec) -> int | None:
    """The iteration budget a run overrides its solver template's with: its `iters`, else the schedule of a run
    on a half cut to k images per class (generators.runfiles.cut_iters); None: the template's."""
    return spec.iters or cut_iters(spec.profile, spec.treatment, spec.per_class)


def budget(spec: RunSpec) -> int:
    """Iterations of one run: iters_of, or its solver template's max_iter, times the treatment's budget (baseB2x)."""
    template = netgen.load_solver(spec.profile.solver_template(spec.treatment.protocol))
    return spec.treatment.budget * (iters_of(spec) or template.max_iter)
