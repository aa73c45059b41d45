"""The OpenCV Caffe variant (`make caffe-opencv`, CAFFE_OPENCV=1) against the kit's own Datums.

- The kit's raw Datums are byte-identical to the variant's real
  `convert_imageset --resize_height=256 --resize_width=256`, image by image,
  on a synthetic ILSVRC folder plus a greyscale JPEG and a PNG; with
  `--encoded` (ENCODED=1) too.
- The Data layer on PNG-encoded Datums (lossless, the cv::Mat path) with crop,
  mirror and mean_file gives the very blobs it gives on raw Datums (BVLC's
  formula): the fix of caffe_build/patches/opencv/03-data-transformer-cvmat-mean.patch.
- `caffe train` runs on a split made with ENCODED=1 (the kit's CLI, CAFFE_ROOT
  pointing at the variant).

The variant's root comes from `.venv/caffe_opencv_root` (written by
caffe_build/build_caffe.sh). Without it these tests fail, saying how to build it:
CI runs them through `make test`, which builds it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

from data_prep.image_lists import load_lists
from data_prep.image_store import build_whole_set
from data_prep.imagenet_synth import make_synthetic_ilsvrc
from data_prep.lmdb_io import caffe_pb2, read_mean
from kitcore.caffe_env import caffe_variant
from kitcore.caffe_log import parse_log

from conftest import ROOT

pytestmark = pytest.mark.slow

WNIDS = tuple(f"n{c + 1:08d}" for c in range(4))


@pytest.fixture(scope="module")
def cv_root() -> Path:
    """Root of the OpenCV variant, or fail (not skip) with the one-line fix."""
    record = Path(sys.prefix) / "caffe_opencv_root"
    fix = "fix: make caffe-opencv (make test builds it)"
    if not record.is_file():
        pytest.fail(f"the OpenCV Caffe variant is not built ({record} is missing); {fix}", pytrace=False)
    root = Path(record.read_text().strip())
    if caffe_variant(root) != "opencv" or not os.access(root / "build" / "tools" / "convert_imageset", os.X_OK):
        pytest.fail(f"{root} is not a finished OpenCV Caffe build; {fix}", pytrace=False)
    return root


def tool_env(threads: int = 1) -> dict:
    return {**os.environ, "GLOG_logtostderr": "1", "OPENBLAS_NUM_THREADS": str(threads)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Synthetic ILSVRC folder (4 classes x 3 train + 2 val, a grey val JPEG) plus a grey JPEG and a PNG in train."""
    root = tmp_path_factory.mktemp("cvsrc")
    images, lists = make_synthetic_ilsvrc(root, wnids=WNIDS, train_per_class=3, val_per_class=2)
    rng = np.random.default_rng(7)
    grey = rng.integers(0, 256, (180, 300), dtype=np.uint8)
    cv2.imwrite(str(images / "train" / WNIDS[1] / "grey.JPEG"), cv2.GaussianBlur(grey, (5, 5), 0))
    colour = cv2.GaussianBlur(rng.integers(0, 256, (400, 310, 3), dtype=np.uint8), (7, 7), 0)
    cv2.imwrite(str(images / "train" / WNIDS[2] / "photo.png"), colour)
    with open(lists / "train.txt", "a") as f:
        f.write(f"{WNIDS[1]}/grey.JPEG 1\n{WNIDS[2]}/photo.png 2\n")
    return images, lists


def convert_imageset(root: Path, images: Path, list_file: Path, out: Path, *flags: str) -> Path:
    """The variant's convert_imageset, no --shuffle (keys in list order), 256x256, LMDB."""
    cmd = [str(root / "build" / "tools" / "convert_imageset"), "--resize_height=256", "--resize_width=256",
           "--backend=lmdb", *flags, f"{images}/", str(list_file), str(out)]
    proc = subprocess.run(cmd, env=tool_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def records(path: Path, strip_index: bool) -> dict[str, bytes]:
    """{image path: serialized Datum} of an LMDB (convert_imageset's keys are '%08d_' + path)."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        out = {(k[9:] if strip_index else k).decode(): bytes(v) for k, v in txn.cursor()}
    env.close()
    return out


@pytest.mark.parametrize("encoded", [False, True], ids=["raw", "encoded"])
def test_kit_datums_byte_identical_to_convert_imageset(cv_root, folder, tmp_path, monkeypatch, encoded):
    images, lists_dir = folder
    monkeypatch.setenv("CAFFE_ROOT", str(cv_root))  # ENCODED=1 checks that the Caffe in use has OpenCV
    wdir = build_whole_set(tmp_path / "kit", load_lists(lists_dir), images, encoded=encoded)
    pb2 = caffe_pb2()
    for phase in ("train", "val"):
        theirs = records(convert_imageset(cv_root, images / phase, lists_dir / f"{phase}.txt",
                                          tmp_path / f"ci_{phase}", *(["--encoded"] if encoded else [])), True)
        ours = records(wdir / f"{phase}_lmdb", False)
        listed = [ln.rsplit(" ", 1)[0] for ln in (lists_dir / f"{phase}.txt").read_text().splitlines()]
        assert sorted(theirs) == sorted(ours) == sorted(listed)
        for path in listed:
            assert ours[path] == theirs[path], f"{phase}/{path}: the Datums differ"
            d = pb2.Datum.FromString(ours[path])
            assert d.encoded == encoded and (d.channels, d.height, d.width) == (3, 256, 256)
        if encoded:  # as convert_imageset: the format of the file's extension
            assert pb2.Datum.FromString(ours[listed[0]]).data[:2] == b"\xff\xd8"  # JPEG
            if phase == "train":
                assert pb2.Datum.FromString(ours[f"{WNIDS[2]}/photo.png"]).data[1:4] == b"PNG"


DATA_NET = """layer {{ name: "data" type: "Data" top: "data" top: "label"
  transform_param {{ {crop}mirror: true mean_file: "{mean}" }}
  data_param {{ source: "{source}" backend: LMDB batch_size: {batch} }} }}
"""
FORWARD = """import sys, numpy as np, caffe
caffe.set_mode_cpu(); caffe.set_random_seed(5)
net = caffe.Net(sys.argv[1], caffe.TRAIN)
np.save(sys.argv[2], np.stack([net.forward()["data"].copy() for _ in range(3)]))
"""


def data_blobs(root: Path, source: Path, mean: Path, batch: int, out: Path, crop: int) -> np.ndarray:
    """Three TRAIN batches of the variant's Data layer (seeded), in a fresh process of its pycaffe."""
    net = out.with_suffix(".prototxt")
    net.write_text(DATA_NET.format(mean=mean, source=source, batch=batch,
                                   crop=f"crop_size: {crop} " if crop else ""))
    env = {**tool_env(), "PYTHONPATH": str(root / "python"), "GLOG_minloglevel": "2"}
    proc = subprocess.run([sys.executable, "-c", FORWARD, str(net), str(out)], env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(out)


@pytest.mark.parametrize("crop", [227, 0], ids=["crop227", "nocrop"])
def test_data_layer_encoded_equals_raw_with_crop_mirror_mean(cv_root, folder, tmp_path, crop):
    """Unpatched, crop227 aborts (cropped size checked against the mean's) and nocrop differs by up to 81
    (the mean subtracted at the mirrored column): both were run against a build without the patch."""
    images, lists_dir = folder
    raw = convert_imageset(cv_root, images / "train", lists_dir / "train.txt", tmp_path / "raw")
    png = convert_imageset(cv_root, images / "train", lists_dir / "train.txt", tmp_path / "png", "--encode_type=png")
    first = caffe_pb2().Datum.FromString(next(iter(records(png, True).values())))
    assert first.encoded and first.data[1:4] == b"PNG"
    mean = tmp_path / "mean.binaryproto"
    proc = subprocess.run([str(cv_root / "build" / "tools" / "compute_image_mean"), "-backend", "lmdb", str(raw),
                           str(mean)], env=tool_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n = len(records(raw, True))
    a = data_blobs(cv_root, raw, mean, n, tmp_path / "raw.npy", crop)
    b = data_blobs(cv_root, png, mean, n, tmp_path / "png.npy", crop)
    assert a.shape == (3, n, 3, crop or 256, crop or 256)
    assert np.array_equal(a, b), f"max difference {np.abs(a - b).max()}"
    # the mean really was subtracted (a blob of raw pixels would be >= 0 everywhere)
    assert a.min() < -50 and np.abs(a.mean()) < 20
    # the test can see the old defect: the mean is not left-right symmetric, so subtracting it at the
    # mirrored column (as this fork's cv::Mat path did) would change the mirrored images' blobs
    m = read_mean(mean)
    assert np.abs(m - m[:, :, ::-1]).max() > 5


def test_caffe_train_on_an_encoded_split(cv_root, tmp_path):
    images, lists = make_synthetic_ilsvrc(tmp_path / "src", wnids=tuple(f"n{c + 1:08d}" for c in range(8)),
                                          train_per_class=3, val_per_class=2)
    work = tmp_path / "work"
    env = {**tool_env(), "CAFFE_ROOT": str(cv_root)}

    def kit(*args):
        proc = subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    kit("split-random", "--dataset", "imagenet", "--work", str(work), "--lists", str(lists), "--images",
        str(images), "--encoded")
    sdir = work / "imagenet" / "random0"
    manifest = json.loads((sdir / "manifest.json").read_text())
    assert manifest["encoded"] is True
    assert json.loads((work / "imagenet" / "dataset" / "dataset.json").read_text())["encoded"] is True
    # compute_image_mean decoded the JPEGs: its mean is the mean of the decoded pixels
    env_l = lmdb.open(str(sdir / "data" / "A_train_lmdb"), readonly=True, lock=False)
    with env_l.begin() as txn:
        pixels = [cv2.imdecode(np.frombuffer(caffe_pb2().Datum.FromString(v).data, np.uint8), cv2.IMREAD_COLOR)
                  for _k, v in txn.cursor()]
    env_l.close()
    want = np.stack(pixels).astype(np.float64).mean(axis=0).transpose(2, 0, 1)
    np.testing.assert_allclose(read_mean(sdir / "data" / "A_mean.binaryproto"), want, atol=1e-3)
    kit("train", "--dataset", "imagenet", "--work", str(work), "--treatment", "baseA", "--iters", "2", "--batch",
        "4", "--test-iter", "1", "--threads", "1")
    run = sdir / "runs" / "baseA"
    logs = sorted(run.glob("*.log"))
    assert logs, f"no log in {run}"
    parsed = parse_log(logs)
    assert parsed.train and np.isfinite(parsed.train[0]["loss"])
    assert "Creating Layer" in "".join(p.read_text() for p in logs)


def test_video_data_layer_says_why_it_is_left_out(cv_root, tmp_path):
    net = tmp_path / "video.prototxt"
    net.write_text('layer { name: "v" type: "VideoData" top: "data" '
                   'video_data_param { video_type: VIDEO video_file: "x.avi" } }\n')
    env = {**tool_env(), "PYTHONPATH": str(cv_root / "python")}
    proc = subprocess.run([sys.executable, "-c", f"import caffe; caffe.Net({str(net)!r}, caffe.TEST)"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "The VideoData layer needs OpenCV highgui/videoio, which this Caffe build leaves out" in proc.stderr
