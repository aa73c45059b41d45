"""ENCODED=1 without Caffe: the whole set's encoded Datums, the ENCODED mismatch error and the plain-build error.

The Datums are written by the kit in Python (no Caffe tool runs here); the
checks that need the OpenCV Caffe build are in test_caffe_opencv.py. A Caffe
root is faked only by its `.kit-variant` marker, which is all the kit's
variant check reads.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import lmdb
import numpy as np
import pytest

from data_prep.image_lists import load_lists
from data_prep.image_store import build_whole_set, decode_resize, encoding_of
from data_prep.imagenet import prepare_imagenet
from data_prep.imagenet_synth import make_synthetic_ilsvrc
from data_prep.lmdb_io import caffe_pb2
from kitcore.caffe_env import caffe_variant
from kitcore.errors import KitError
from runner import inputs

from conftest import ROOT

FIX = "needs Caffe built with OpenCV"


def fake_root(path: Path, variant: str) -> Path:
    """A folder that passes for a Caffe build of `variant` ('opencv' or 'plain')."""
    path.mkdir(parents=True, exist_ok=True)
    (path / ".kit-variant").write_text(variant + "\n")
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    images, lists = make_synthetic_ilsvrc(root / "src", train_per_class=2, val_per_class=1)
    return images, lists


def test_encoded_whole_set_holds_convert_imagesets_jpeg_datums(synth, tmp_path, monkeypatch):
    images, lists_dir = synth
    monkeypatch.setenv("CAFFE_ROOT", str(fake_root(tmp_path / "caffe", "opencv")))
    wdir = build_whole_set(tmp_path / "w", load_lists(lists_dir), images, encoded=True)
    meta = json.loads((wdir / "dataset.json").read_text())
    assert meta["encoded"] is True
    pb2 = caffe_pb2()
    env = lmdb.open(str(wdir / "val_lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        for key, value in txn.cursor():
            d = pb2.Datum.FromString(value)
            resized = decode_resize(images / "val" / key.decode())
            assert d.encoded and (d.channels, d.height, d.width) == (3, 256, 256)
            assert d.data == cv2.imencode(".jpeg", resized)[1].tobytes()
            assert d.data[:2] == b"\xff\xd8"  # a JPEG
    env.close()
    assert encoding_of("a/b.JPEG") == "jpeg" and encoding_of("x.png") == "png" and encoding_of("noext") == "jpg"


def test_whole_set_built_with_the_other_encoded_setting(synth, tmp_path, monkeypatch):
    images, lists_dir = synth
    lists = load_lists(lists_dir)
    monkeypatch.setenv("CAFFE_ROOT", str(fake_root(tmp_path / "caffe", "opencv")))
    wdir = build_whole_set(tmp_path / "w", lists, images)
    with pytest.raises(KitError) as err:
        build_whole_set(tmp_path / "w", lists, images, encoded=True)
    msg = str(err.value)
    assert "\n" not in msg and "was built with ENCODED=0" in msg and "asks for ENCODED=1" in msg
    assert "pass ENCODED=0 as when it was built, or FORCE=1 (--force)" in msg and str(wdir) in msg
    build_whole_set(tmp_path / "w", lists, images, encoded=True, reencode=True)  # --force: decoded again
    assert json.loads((wdir / "dataset.json").read_text())["encoded"] is True
    with pytest.raises(KitError, match=r"was built with ENCODED=1 \(--encoded\), this command asks for ENCODED=0"):
        build_whole_set(tmp_path / "w", lists, images)


def test_encoded_needs_the_opencv_build(synth, tmp_path, monkeypatch):
    images, lists_dir = synth
    plain = fake_root(tmp_path / "caffe", "plain")
    monkeypatch.setenv("CAFFE_ROOT", str(plain))
    assert caffe_variant() == "plain"
    with pytest.raises(KitError) as err:
        prepare_imagenet(tmp_path / "w", lists_dir, "random", seed=0, images=images, encoded=True)
    assert "\n" not in str(err.value) and FIX in str(err.value)
    assert str(err.value).endswith("fix: make caffe CAFFE_OPENCV=1")
    assert not (tmp_path / "w" / "imagenet" / "dataset" / "dataset.json").exists(), "nothing decoded"
    # the runner refuses a split of encoded Datums before Caffe's Data layer fails on it
    assert not (tmp_path / "w" / "imagenet" / "random0").exists(), "it fails before writing anything"
    sdir = tmp_path / "w" / "imagenet" / "random0"
    sdir.mkdir(parents=True)
    (sdir / "manifest.json").write_text(json.dumps({"encoded": True, "files": {}}))
    spec = SimpleNamespace(split_dir=sdir, dataset="imagenet", seed=0, treatment=SimpleNamespace(protocol="random"))
    with pytest.raises(KitError, match="holds encoded Datums .* needs Caffe built with OpenCV"):
        inputs.read_manifest(spec)
    monkeypatch.setenv("CAFFE_ROOT", str(fake_root(tmp_path / "cv", "opencv")))
    assert inputs.read_manifest(spec)["encoded"] is True


def test_cli_encoded_error_is_one_line(synth, tmp_path):
    images, lists_dir = synth
    env = {**os.environ, "CAFFE_ROOT": str(fake_root(tmp_path / "caffe", "plain"))}
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "split-random", "--dataset", "imagenet", "--work",
                           str(tmp_path / "w"), "--lists", str(lists_dir), "--images", str(images), "--encoded"],
                          cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and FIX in lines[0] and "fix: make caffe CAFFE_OPENCV=1" in lines[0]
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "split-random", "--dataset", "fa20", "--encoded"],
                          cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2 and "--encoded is for --dataset imagenet" in proc.stderr


def test_raw_default_records_encoded_false(synth, tmp_path):
    images, lists_dir = synth
    wdir = build_whole_set(tmp_path / "w", load_lists(lists_dir), images)
    assert json.loads((wdir / "dataset.json").read_text())["encoded"] is False
    env = lmdb.open(str(wdir / "train_lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        key, value = next(iter(txn.cursor()))
        d = caffe_pb2().Datum.FromString(value)
    env.close()
    assert not d.encoded and np.frombuffer(d.data, np.uint8).size == 3 * 256 * 256
