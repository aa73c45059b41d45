"""One profile per dataset: every policy that turns a dataset into runs, read from one registry.

A profile names the net template and the solver template per protocol (files
of the kit, relative to its root), the classifier width rule, the test policy,
the half whose mean a transfer reads, the stored image shape (the net's input
shape is derived from it and the template's crop), the seeds rule and its
preparer: which of data_prep's entry points makes its splits (`PREPARERS`).
`run.json` records the profile whole (`Profile.record`), so a run folder says
every policy that made it.

`PROFILES` holds the kit's two datasets; `register` adds another, refusing a
name already taken. A user's dataset (`make dataset DATASET=NAME IMAGES=DIR`)
gets its profile from `user_profile` (NET=small: the CPU-scale net and the
embedded protocol's solver; NET=caffenet: the paper's), stored in
`<work>/<NAME>/dataset/profile.json` and registered by `load_user_profiles`
when a command starts. Nothing else in the kit branches on a dataset's name:
it asks `profile(name)`.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kitcore.errors import KitError

KIT = Path(__file__).resolve().parents[1]
SEED_LIMIT = 2**32  # split seeds are 0 <= s < 2**32 (numpy's RandomState)


@dataclass(frozen=True)
class Profile:
    """The policies of one dataset (see the module docstring)."""

    name: str
    description: str
    net_template: str                      # net prototxt, relative to the kit's root
    solvers: dict[str, str]                # protocol -> solver prototxt; "*" for every other protocol
    image_shape: tuple[int, int, int]      # (channels, height, width) as stored in the LMDBs
    exact_classes: bool                    # fc8 = the target half's class count (else the template's width)
    whole_val_test: bool                   # test_iter covers the target's whole val set once (else the solver's)
    transfer_mean: str = "source"          # a transfer reads the mean of its base's half ("source") or its target's
    preparer: str = "lists"                # how its splits are made: a key of PREPARERS
    split_args: str = ""                   # make arguments every split command of this dataset needs
    protocols: tuple[str, ...] = ("random", "natman", "whole", "small", "mix")  # protocols with a split of it
    seeds: str = "random splits take any seed 0 <= s < 2**32; the paper used 0..3"
    extra: dict = field(default_factory=dict)  # further facts a user dataset records (class names, source)

    @property
    def embedded(self) -> bool:
        """Whether the kit builds the data itself (the grid and the demo prepare its splits)."""
        return self.preparer in EMBEDDED

    @property
    def user(self) -> bool:
        """Whether this is a user's dataset, added by `make dataset` from class folders."""
        return self.preparer == "folder"

    def solver_template(self, protocol: str) -> Path:
        """The solver template of a protocol's runs (the profile's "*" entry when it has none of its own)."""
        return KIT / self.solvers.get(protocol, self.solvers["*"])

    def net_template_path(self) -> Path:
        """The net template's path."""
        return KIT / self.net_template

    def input_shape(self, crop_size: int = 0) -> tuple[int, int, int, int]:
        """The net's input (1, C, H, W): the stored shape, cut to the template's crop_size when it has one."""
        c, h, w = self.image_shape
        return (1, c, crop_size or h, crop_size or w)

    def mean_half(self, source: str | None, target: str) -> str:
        """The half whose mean file a run reads: a transfer's base half under "source", else its target."""
        return source if source and self.transfer_mean == "source" else target

    def check_protocol(self, protocol: str) -> None:
        """Raise KitError unless this dataset has a split for `protocol`."""
        if protocol not in self.protocols:
            raise KitError(f"protocol {protocol!r} has no split of {self.name}",
                           f"use one of: {', '.join(self.protocols)}")

    def check_seed(self, seed) -> int:
        """Return a valid split seed of this dataset, or raise KitError naming the rule."""
        return check_seed(seed)

    def record(self) -> dict:
        """The whole profile as JSON-ready data (run.json's `profile`)."""
        out = asdict(self)
        out["image_shape"] = list(self.image_shape)
        out["protocols"] = list(self.protocols)
        return out


PROFILES: dict[str, Profile] = {}
PREPARERS = {  # Profile.preparer -> what makes the dataset's splits (the entry point in data_prep)
    "fa20": "the kit builds FA-20 itself and cuts its splits from the arrays (data_prep.prepare, data_prep.fa20)",
    "lists": "Caffe's list files and an image folder the user gives (data_prep.imagenet)",
    "folder": "a user's class-per-folder images, added by make dataset (data_prep.folder)",
}
EMBEDDED = ("fa20",)  # the preparers that need nothing from the user


def check_seed(seed) -> int:
    """Return `seed` if it is an integer 0 <= seed < 2**32 (numpy's RandomState), else raise KitError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < SEED_LIMIT:
        raise KitError(f"invalid split seed {seed!r}",
                       "use a non-negative integer seed, e.g. --seed 0 (the paper used 0..3)")
    return int(seed)


def register(p: Profile) -> Profile:
    """Add a profile to the registry; a name already taken by another profile is an error."""
    if p.name in PROFILES and PROFILES[p.name] != p:
        raise KitError(f"dataset name {p.name!r} is taken", "choose another DATASET name")
    if "*" not in p.solvers:
        raise KitError(f"profile {p.name!r} has no default solver", 'give solvers a "*" entry')
    if p.preparer not in PREPARERS:
        raise KitError(f"profile {p.name!r} has an unknown preparer {p.preparer!r}",
                       f"use one of: {', '.join(PREPARERS)}")
    PROFILES[p.name] = p
    return p


def profile(name: str) -> Profile:
    """The profile of dataset `name`, or a KitError listing the known ones."""
    if name not in PROFILES:
        raise KitError(f"unknown dataset {name!r}", f"use one of: {', '.join(sorted(PROFILES))}")
    return PROFILES[name]


register(Profile(
    name="fa20",
    description="the embedded FA-20 (10 Fashion-MNIST + 10 animal classes, 28x28 grey)",
    net_template="prototxt/fa20_caffenet.prototxt",
    solvers={"*": "solvers/fa20_solver.prototxt"},
    image_shape=(1, 28, 28),
    exact_classes=True,   # the template's fc8 is sized for a half; every half gets its own count
    whole_val_test=True,  # halves differ in size (10 classes, 20 for `all`): each test covers all of val
    preparer="fa20"))

register(Profile(
    name="imagenet",
    description="ILSVRC2012 from Caffe's lists and the image folder (the paper's dataset)",
    net_template="prototxt/caffenet.prototxt",
    solvers={"*": "solvers/caffenet_solver.prototxt", "reduced": "solvers/caffenet_reduced_solver.prototxt"},
    image_shape=(3, 256, 256),
    exact_classes=False,   # the authors kept 1000 outputs for their 449-, 500- and 551-class halves
    whole_val_test=False,  # the paper's test_iter 1000 x batch 50 = the whole 50,000-image val set
    split_args="LISTS=dir IMAGES=dir",
    protocols=("random", "natman", "whole", "reduced", "small", "mix")))


NETS = {  # NET= of `make dataset`: the net template and solvers a user dataset trains with
    "small": ("prototxt/fa20_caffenet.prototxt", {"*": "solvers/fa20_solver.prototxt"}),
    "caffenet": ("prototxt/caffenet.prototxt", {"*": "solvers/caffenet_solver.prototxt",
                                               "reduced": "solvers/caffenet_reduced_solver.prototxt"}),
}
PROFILE_FILE = "profile.json"  # <work>/<dataset>/dataset/profile.json: a user dataset's profile


def user_profile(name: str, net: str, image_shape: tuple[int, int, int], extra: dict | None = None) -> Profile:
    """The profile of a dataset a user adds (`make dataset DATASET=NAME IMAGES=DIR NET=...`)."""
    if net not in NETS:
        raise KitError(f"unknown NET {net!r}", f"use one of: {', '.join(NETS)}")
    if name in PROFILES and not PROFILES[name].user:
        raise KitError(f"dataset name {name!r} is the kit's own", "choose another DATASET name")
    template, solvers = NETS[net]
    c, h, w = image_shape
    return Profile(name=name, description=f"a user's class-per-folder dataset ({c}x{h}x{w}, NET={net})",
                   net_template=template, solvers=dict(solvers), image_shape=(c, h, w), exact_classes=True,
                   whole_val_test=True, preparer="folder",
                   protocols=("random", "natman", "whole", "reduced", "small", "mix"),
                   extra={"user": True, "net": net, **(extra or {})})


def from_record(record: dict) -> Profile:
    """A Profile from its record (run.json's `profile`, a user dataset's profile.json)."""
    record = dict(record)
    if "embedded" in record:  # a record from before profiles named their preparer: the flag says which
        embedded = record.pop("embedded")
        record.setdefault("preparer", "fa20" if embedded else "folder" if record.get("extra", {}).get("user")
                          else "lists")
    return Profile(**{**record, "image_shape": tuple(record["image_shape"]), "protocols": tuple(record["protocols"])})


def load_user_profiles(work: Path) -> list[str]:
    """Register the profile of every user dataset under `work` (<work>/*/dataset/profile.json); return their names."""
    from kitcore.layout import DATASET_STORE  # noqa: PLC0415  (layout imports this module)
    names = []
    for path in sorted(Path(work).glob(f"*/{DATASET_STORE}/{PROFILE_FILE}")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KitError(f"{path} is unreadable ({exc})", "rebuild the dataset: make dataset ... FORCE=1") from exc
        known = PROFILES.get(record.get("name"))
        if known is not None and known.user:
            del PROFILES[known.name]  # the file is the truth: a rebuilt dataset may have a new profile
        names.append(register(from_record(record)).name)
    return names

