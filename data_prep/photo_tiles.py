"""An example class-per-folder tree of real photographs: tiles of the pictures scikit-image ships.

`python -m data_prep.photo_tiles DIR` writes DIR/<photograph>/<i>.png: for each
of PHOTOS, `--per-class` colour tiles of `--size` pixels cut at seeded random
places (a class is the photograph a tile comes from). It is the tree the
README's "Your own images" runs through `make dataset`; any folder of the same
layout works the same way.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from kitcore.errors import KitError

log = logging.getLogger(__name__)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
          "stereo_motorcycle", "colorwheel")  # all shipped inside scikit-image 0.26 (no download)


def write_tiles(out: Path, per_class: int = 250, size: int = 32, seed: int = 0) -> Path:
    """Write out/<photograph>/<i>.png; refuse a folder that exists (nothing is overwritten)."""
    from skimage import data  # pinned: pycaffe imports it
    out = Path(out)
    if out.exists():
        raise KitError(f"{out} exists", "pass a new folder (the tiles are never written over other files)")
    rng = np.random.default_rng(seed)
    tmp = out.with_name(out.name + ".partial")
    for name in PHOTOS:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
        bgr = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2BGR)
        (tmp / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            y, x = int(rng.integers(0, bgr.shape[0] - size)), int(rng.integers(0, bgr.shape[1] - size))
            if not cv2.imwrite(str(tmp / name / f"{i:04d}.png"), bgr[y:y + size, x:x + size]):
                raise KitError(f"could not write {tmp / name}", "check the disk")
    tmp.rename(out)  # complete, or not there at all
    log.info("%d tiles of %dx%d from %d photographs in %s", per_class * len(PHOTOS), size, size, len(PHOTOS), out)
    return out


def main() -> None:
    """Command line: write the example tree."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to create")
    parser.add_argument("--per-class", type=int, default=250, help="tiles per photograph")
    parser.add_argument("--size", type=int, default=32, help="tile side in pixels")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(write_tiles(args.out, args.per_class, args.size))


if __name__ == "__main__":
    main()
