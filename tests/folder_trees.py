"""Image trees for the folder-dataset tests, written with real OpenCV: photo tiles per class, plain patterns.

`photo_tree` cuts the photographs scikit-image ships into tiles, one photograph
per class, mixing JPEG, PNG, BMP and TIFF, colour and grey, two tile sizes, one
undecodable file and a hidden one. `pattern_tree` draws small noisy images per
class for the error tests. `registry_restored` (import it into a test module)
drops the user profiles a module's splits registered, so no other test sees them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_image_store import read_records as records  # noqa: F401  (one reader of raw Datums for the tests)

from kitcore.profiles import PROFILES

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
TILE = 40
PER_CLASS = 12
FORMATS = ("png", "jpg", "png", "jpg", "bmp", "tif")
BROKEN = "zz_broken.jpg"  # in the first class: a file OpenCV cannot decode


def photo_tree(root: Path) -> dict[str, list[str]]:
    """DIR/<photo>/<file> tiles (see the module docstring); return {class: file names that decode}."""
    from skimage import data  # only the tests need scikit-image's photographs
    out = {}
    for c, name in enumerate(PHOTOS):
        bgr = cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR)
        folder = root / name
        folder.mkdir(parents=True)
        out[name] = []
        for j in range(PER_CLASS):
            h, w = (TILE, TILE) if j % 4 else (36, 48)  # every fourth tile is another size: resized
            y, x = 7 * j + 3 * c, 11 * j
            tile = bgr[y:y + h, x:x + w]
            if j % 3 == 2:
                tile = cv2.cvtColor(tile, cv2.COLOR_BGR2GRAY)  # grey files among colour ones
            fname = f"t{j:02d}.{FORMATS[j % len(FORMATS)]}"
            assert cv2.imwrite(str(folder / fname), tile)
            out[name].append(fname)
    (root / PHOTOS[0] / BROKEN).write_bytes(b"not an image\n")
    (root / PHOTOS[1] / ".DS_Store").write_bytes(b"\x00\x01junk")
    return out


def pattern_tree(root: Path, classes, per_class: int = 3, size: tuple[int, int] = (20, 24), grey: bool = False,
                 seed: int = 0) -> Path:
    """root/<class>/<j>.png small noisy images, a different mean per class; return root."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            shape = size if grey else (*size, 3)
            img = np.clip(rng.normal(40 + 30 * c, 20, shape), 0, 255).astype(np.uint8)
            assert cv2.imwrite(str(root / name / f"{j}.png"), img)
    return root




@pytest.fixture(scope="module", autouse=True)
def registry_restored():
    """The profile registry as it was before the module (prepare_user_split registers user profiles)."""
    before = dict(PROFILES)
    yield
    PROFILES.clear()
    PROFILES.update(before)
