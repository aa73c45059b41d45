"""One forward and backward pass of a net in the Caffe build on PYTHONPATH; every blob's data and diff and
every param's diff to an .npz (tests/test_caffe_speed.py runs it once per build, each build in its own
process: one libcaffe per process).

Usage: python tests/caffe_dump.py NET.prototxt OUT.npz [--weights W.caffemodel] [--save W.caffemodel]
The input blobs `data` and `label` are filled from numpy's generator seeded with 0 (data uniform in
[-1, 1), labels uniform over the classifier's width); Caffe's own generator (Dropout) is seeded with 7.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")


def main() -> int:
    """Run the pass and write the .npz."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("net", help="a net with Input layers `data` and `label`")
    p.add_argument("out", help="the .npz to write")
    p.add_argument("--weights", default=None, help="a .caffemodel to start from (default: the net's fillers)")
    p.add_argument("--save", default=None, help="also save the net's starting weights here")
    p.add_argument("--classes", type=int, default=10, help="labels are drawn from 0..classes-1")
    args = p.parse_args()
    import caffe  # noqa: PLC0415  (after GLOG_minloglevel)
    caffe.set_mode_cpu()
    caffe.set_random_seed(7)
    net = caffe.Net(args.net, caffe.TRAIN, **({"weights": args.weights} if args.weights else {}))
    if args.save:
        net.save(args.save)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.uniform(-1, 1, net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = rng.integers(0, args.classes, net.blobs["label"].data.shape)
    net.forward()
    net.backward()
    arrays = {}
    for name, blob in net.blobs.items():
        arrays[f"data:{name}"] = blob.data.copy()
        arrays[f"diff:{name}"] = blob.diff.copy()
    for name, params in net.params.items():
        for i, param in enumerate(params):
            arrays[f"param_diff:{name}:{i}"] = param.diff.copy()
    np.savez(args.out, **arrays)
    print(caffe.__file__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
