"""FA-20, the kit's embedded dataset: 20 classes of 28x28 grey images.

Labels 0-9 are the Fashion-MNIST classes (man-made objects), labels 10-19 the
Animal-MNIST classes (natural). Each class has 1000 images: 800 train, 200 val.

Sources (installed by `make setup`, read from disk, never downloaded here):
- Fashion-MNIST: Debian package `dataset-fashion-mnist`, the IDX gz files in
  /usr/share/datasets/fashion-mnist. Its train (60,000) and test (10,000)
  images are pooled, giving 7000 per class, of which 1000 are drawn.
- Animal-MNIST: PyPI `animal-mnist==0.4` (installed --no-deps), whose data are
  two gzipped pickles of numpy arrays (10,000 images, 1000 per class). Its
  Python module imports tensorflow and is never imported: the pickles are
  read with an unpickler that only admits numpy's array reconstruction.

Determinism: one `numpy.random.default_rng(FA20_SEED)` draws, for label 0, 1,
..., 19 in turn, a permutation of that class's pooled source indices; its
first 1000 entries are the class's images. Train/val: walking those 1000 in
drawn order, each group of byte-identical images (a group is placed where its
first member falls in the drawn order) goes to train while it fits in 800,
else to val. Without duplicates this is exactly "first 800 train, last 200
val"; Animal-MNIST does hold exact duplicate pairs within classes (Bird 188,
Bear 63, Sheep 15, ...), and this keeps both copies on the same side, so no
val image is a copy of a train image. Arrays are stored grouped by label.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import logging
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitcore import diskspace
from kitcore.atomic import clean_stale_tmp, replacing, sha256, write_json
from kitcore.errors import KitError

log = logging.getLogger(__name__)

FA20_SEED = 20140101  # the paper's year, first of January: fixes FA-20's sampling for good
PER_CLASS = 1000
TRAIN_PER_CLASS = 800
VAL_PER_CLASS = PER_CLASS - TRAIN_PER_CLASS
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
ANIMAL_NAMES = ("Bear", "Bird", "Cat", "Cow", "Dog",
                "Elephant", "Giraffe", "Horse", "Sheep", "Zebra")
CLASS_NAMES = FASHION_NAMES + ANIMAL_NAMES
KINDS = ("man-made",) * 10 + ("natural",) * 10
NPZ_NAME = "fa20.npz"
CLASSES_NAME = "classes.json"
FIX_FASHION = "apt-get install dataset-fashion-mnist (or run: make setup)"
FIX_ANIMAL = "pip install --no-deps animal-mnist==0.4 (or run: make setup)"


@dataclass(frozen=True, eq=False)
class FA20:
    """FA-20 in memory: (N, 28, 28) uint8 images, int64 labels 0..19, names and kinds per label, content hash."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    class_names: tuple[str, ...]
    kinds: tuple[str, ...]
    content_sha256: str

    @property
    def num_classes(self) -> int:
        """Number of classes (20)."""
        return len(self.class_names)


def _reconstruct():
    """Return numpy's ndarray reconstruction function without touching numpy.core."""
    from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    return fn


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class NumpyArrayUnpickler(pickle.Unpickler):
    """An unpickler that only builds numpy arrays; any other global raises UnpicklingError."""

    def find_class(self, module: str, name: str):
        """Return an allowed numpy name or refuse."""
        getter = _ALLOWED.get((module, name))
        if getter is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays allowed")
        return getter()


def load_numpy_pickle(data: bytes) -> np.ndarray:
    """Unpickle `data` that must hold exactly one numpy array (restricted unpickler)."""
    obj = NumpyArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, np.ndarray):
        raise pickle.UnpicklingError(f"expected a numpy array, got {type(obj).__name__}")
    return obj


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a gzipped IDX file (uint8 payload) and check its magic number and size."""
    raw = gzip.open(path, "rb").read()
    got, = struct.unpack(">I", raw[:4])
    ndim = got & 0xFF
    if got != magic:
        raise ValueError(f"{path}: IDX magic {got:#x}, expected {magic:#x}")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {arr.size} bytes of data, header says {dims}")
    return arr.reshape(dims)


def fashion_files(fashion_dir: Path = FASHION_DIR) -> dict[str, Path]:
    """Return the four Fashion-MNIST IDX files, or raise KitError if the package is missing."""
    names = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
             "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}
    files = {k: Path(fashion_dir) / v for k, v in names.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise KitError(f"Fashion-MNIST files missing: {', '.join(missing)}", FIX_FASHION)
    return files


def load_fashion(fashion_dir: Path = FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Return Fashion-MNIST train+test pooled: (70000, 28, 28) uint8 images and labels."""
    f = fashion_files(fashion_dir)
    x = np.concatenate([_read_idx(f["train_x"], 0x803), _read_idx(f["test_x"], 0x803)])
    y = np.concatenate([_read_idx(f["train_y"], 0x801), _read_idx(f["test_y"], 0x801)]).astype(np.int64)
    if x.shape != (70000, 28, 28) or y.shape != (70000,) or np.bincount(y, minlength=10).tolist() != [7000] * 10:
        raise ValueError(f"unexpected Fashion-MNIST content: images {x.shape}, labels {np.bincount(y)}")
    return x, y


def animal_files() -> dict[str, Path]:
    """Return the Animal-MNIST pickles of the installed animal-mnist package (without importing it)."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise KitError("the Python package animal-mnist is not installed", FIX_ANIMAL)
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
    files = {"x": folder / "animal_data_version_3.gz", "y": folder / "animal_label_version_3.gz"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise KitError(f"animal-mnist data files missing: {', '.join(missing)}", FIX_ANIMAL)
    return files


def load_animal() -> tuple[np.ndarray, np.ndarray]:
    """Return Animal-MNIST: (10000, 28, 28) uint8 images and int64 labels 0..9, 1000 each."""
    f = animal_files()
    x = load_numpy_pickle(gzip.open(f["x"], "rb").read())
    y = load_numpy_pickle(gzip.open(f["y"], "rb").read()).astype(np.int64)
    if x.dtype != np.uint8 or x.shape != (10000, 28, 28) or y.shape != (10000,):
        raise ValueError(f"unexpected Animal-MNIST arrays: {x.dtype} {x.shape}, labels {y.shape}")
    if y.min() < 0 or y.max() > 9 or np.bincount(y, minlength=10).tolist() != [1000] * 10:
        raise ValueError(f"unexpected Animal-MNIST label counts: {np.bincount(y).tolist()}")
    return x, y


def _split_keeping_duplicates(x: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split `chosen` indices into TRAIN_PER_CLASS train and the rest val, identical images on one side."""
    groups: dict[bytes, list[int]] = {}
    for i in chosen:
        groups.setdefault(x[i].tobytes(), []).append(int(i))
    train: list[int] = []
    val: list[int] = []
    for members in groups.values():  # in order of first appearance in `chosen`
        (train if len(train) + len(members) <= TRAIN_PER_CLASS else val).extend(members)
    if len(train) != TRAIN_PER_CLASS:
        raise ValueError(f"cannot split {len(chosen)} images {TRAIN_PER_CLASS}/rest without splitting duplicates")
    return np.asarray(train, np.int64), np.asarray(val, np.int64)


def _draw(sources: list[tuple[np.ndarray, np.ndarray, int]]) -> dict[str, np.ndarray]:
    """Draw PER_CLASS images per (images, labels, source label) and split them train/val."""
    rng = np.random.default_rng(FA20_SEED)
    parts: dict[str, list[np.ndarray]] = {"train_x": [], "train_y": [], "val_x": [], "val_y": []}
    for new_label, (x, y, src_label) in enumerate(sources):
        chosen = rng.permutation(np.flatnonzero(y == src_label))[:PER_CLASS]
        train_idx, val_idx = _split_keeping_duplicates(x, chosen)
        parts["train_x"].append(x[train_idx])
        parts["val_x"].append(x[val_idx])
        parts["train_y"].append(np.full(TRAIN_PER_CLASS, new_label, np.int64))
        parts["val_y"].append(np.full(VAL_PER_CLASS, new_label, np.int64))
    return {k: np.ascontiguousarray(np.concatenate(v)) for k, v in parts.items()}


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Return a sha256 over the arrays' names, dtypes, shapes and bytes (independent of npz packing)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def is_complete(out_dir: Path) -> bool:
    """Whether `out_dir` holds a finished FA-20 build (the npz is written last)."""
    return (Path(out_dir) / NPZ_NAME).is_file() and (Path(out_dir) / CLASSES_NAME).is_file()


def build_fa20(out_dir: Path) -> Path:
    """Build FA-20 into `out_dir` (fa20.npz + classes.json) unless already complete; return out_dir."""
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        log.debug("FA-20 already built in %s", out_dir)
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    npz_path = out_dir / NPZ_NAME
    clean_stale_tmp(npz_path)
    fx, fy = load_fashion()
    ax, ay = load_animal()
    sources = [(fx, fy, c) for c in range(10)] + [(ax, ay, c) for c in range(10)]
    arrays = _draw(sources)
    src_files = {**{f"fashion-mnist/{p.name}": p for p in fashion_files().values()},
                 **{f"animal-mnist/{p.name}": p for p in animal_files().values()}}
    meta = {
        "content_sha256": content_sha256(arrays),
        "names": list(CLASS_NAMES),
        "kinds": list(KINDS),
        "sources": [f"fashion-mnist:{c}" for c in range(10)] + [f"animal-mnist:{c}" for c in range(10)],
        "source_packages": {"fashion-mnist": "Debian dataset-fashion-mnist (train+test pooled)",
                            "animal-mnist": "PyPI animal-mnist==0.4"},
        "source_sha256": {k: sha256(p) for k, p in src_files.items()},
        "seed": FA20_SEED,
        "per_class": {"train": TRAIN_PER_CLASS, "val": VAL_PER_CLASS},
        "image_shape": [28, 28],
    }
    write_json(out_dir / CLASSES_NAME, meta)
    with diskspace.writing(npz_path), replacing(npz_path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    log.info("built FA-20 in %s: %d train, %d val images", out_dir, len(arrays["train_y"]), len(arrays["val_y"]))
    return out_dir


def load_fa20(out_dir: Path) -> FA20:
    """Load a built FA-20 from `out_dir` (arrays read-only)."""
    out_dir = Path(out_dir)
    if not is_complete(out_dir):
        raise KitError(f"FA-20 is not built in {out_dir}", "run: make dataset")
    meta = json.loads((out_dir / CLASSES_NAME).read_text())
    with np.load(out_dir / NPZ_NAME, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("train_x", "train_y", "val_x", "val_y")}
    for a in arrays.values():
        a.setflags(write=False)
    return FA20(class_names=tuple(meta["names"]), kinds=tuple(meta["kinds"]),
                content_sha256=meta["content_sha256"], **arrays)


def contact_sheet(out_dir: Path, png_path: Path, per_class: int = 8) -> Path:
    """Draw the first `per_class` train images of every class as a labelled grid PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ds = load_fa20(out_dir)
    side, gap = 28, 2
    rows, cols = ds.num_classes, per_class
    sheet = np.full((rows * (side + gap) - gap, cols * (side + gap) - gap), 128, np.uint8)
    for label in range(rows):
        imgs = ds.train_x[ds.train_y == label][:cols]
        for j, img in enumerate(imgs):
            r, c = label * (side + gap), j * (side + gap)
            sheet[r:r + side, c:c + side] = img
    width, height = 2.6 + 0.45 * cols, 0.45 * rows + 0.6
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((2.5 / width, 0.1 / height, 1 - 2.6 / width, 1 - 0.5 / height))
    ax.imshow(sheet, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="equal")
    ax.set_yticks([r * (side + gap) + side / 2 for r in range(rows)])
    ax.set_yticklabels([f"{i} {n} ({k})" for i, (n, k) in enumerate(zip(ds.class_names, ds.kinds))], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"FA-20: first {cols} train images per class", fontsize=9)
    png_path = Path(png_path)
    with replacing(png_path) as tmp:
        fig.savefig(tmp, format="png")
    log.info("wrote FA-20 contact sheet %s", png_path)
    return png_path
