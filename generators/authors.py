"""The authors' run-folder names (yosinski/convnet_transfer) as the kit's treatments, for generators.

The grammar itself (which names are the authors', and the protocol, split and
treatment name each one means) lives in kitcore/authors_names.py, which
analysis/original.py reads too; here a name becomes an `AuthorsRun` with the
kit's `Treatment` (kitcore/treatments.py), the target's class count and
the paper's solver template. In the authors' natman names A is the natural
half (449 classes) and B the man-made half (551); the paper's text swapped
the letters. The kit keeps the authors' letters.
"""
from __future__ import annotations

from dataclasses import dataclass

from kitcore.authors_names import read_authors_name
from kitcore.profiles import profile
from kitcore.treatments import Treatment

ILSVRC_CLASSES = 1000
NATMAN_CLASSES = {"A": 449, "B": 551}  # A natural, B man-made (the authors' letters)


@dataclass(frozen=True)
class AuthorsRun:
    """One authors' run name read as the kit's protocol, split folder name and treatment."""

    run_name: str
    protocol: str
    split: str
    treatment: Treatment
    per_class: int | None = None  # a reduced run's k, the train images per class (reduced-0025: 25)

    @property
    def num_classes(self) -> int:
        """Class count of the target the run trains on."""
        if self.protocol == "random":
            return ILSVRC_CLASSES // 2
        if self.protocol == "natman":
            return NATMAN_CLASSES[self.treatment.target]
        return ILSVRC_CLASSES

    @property
    def solver_template(self) -> str:
        """The kit's solver template for this run (relative to the kit's root)."""
        solvers = profile("imagenet").solvers
        return solvers.get(self.protocol, solvers["*"])


def parse_run_name(name: str) -> AuthorsRun:
    """Read an authors' run-folder name (e.g. 'transfer-ft0A0B_1_3') as the kit's treatment (KitError if not one)."""
    read = read_authors_name(name)
    return AuthorsRun(name, read.protocol, read.split, read.treatment, read.images_per_class)
