"""The coco suite's cases against sizes computed by hand, and its rows on the tiny model
(no peer: the timing itself is not tested)."""

import io
import os
import types

import numpy as np
import pytest
from PIL import Image

from harness import coco
from harness.inputs import R50_CONFIG
from oanet_tf.config import load_config

# coco_r50 (short side 800, long side at most 1333): 480x640 -> scale min(800 / 480,
# 1333 / 640) = 1.6667 -> 800 x 1066.7 -> 800x1067, padded 800x1088 (34 * 32).
LANDSCAPE = coco.TrainCase((480, 640), (800, 1067), (800, 1088))
PORTRAIT = coco.TrainCase((640, 480), (1067, 800), (1088, 800))
SAMPLE_SIZES = {"b.jpg": (48, 64), "a.jpg": (64, 40)}  # name -> (height, width)


def test_train_cases_resize_and_pad_as_the_config_says():
    assert coco.train_cases(load_config(R50_CONFIG).data) == [LANDSCAPE, PORTRAIT]
    assert [case.name for case in (LANDSCAPE, PORTRAIT)] == ["landscape", "portrait"]


def test_train_cases_pad_to_a_bucket_when_there_are_buckets():
    data = load_config(R50_CONFIG, ["data.buckets=[[832, 1344], [1344, 832]]"]).data
    cases = coco.train_cases(data)
    assert [case.resized for case in cases] == [LANDSCAPE.resized, PORTRAIT.resized]
    assert [case.padded for case in cases] == [(832, 1344), (1344, 832)]


def test_serve_batches_take_each_image_then_all():
    assert coco.serve_batches(["a", "b"]) == [["a"], ["b"], ["a", "b"]]
    assert coco.serve_batches(["a"]) == [["a"]]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    """A sample folder as ../shared/coco/sample lays it out: two JPEGs and a non-JPEG."""
    root = tmp_path_factory.mktemp("sample")
    os.makedirs(root / "images")
    rng = np.random.default_rng(0)
    for name, size in SAMPLE_SIZES.items():
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            buffer, format="JPEG")
        (root / "images" / name).write_bytes(buffer.getvalue())
    (root / "images" / "notes.txt").write_text("not an image")
    return str(root)


def test_sample_images_lists_the_jpegs_sorted(sample_dir, tmp_path):
    found = coco.sample_images(sample_dir)
    assert [os.path.basename(p) for p in found] == ["a.jpg", "b.jpg"]
    with pytest.raises(FileNotFoundError, match="--coco-sample"):
        coco.sample_images(str(tmp_path))


class FakePeer:
    """Records what it was prepared with; each timed call 'takes' PEER_SECONDS."""

    PEER_SECONDS = 2.0

    def __init__(self):
        self.prepared = []

    def prepare(self, mode, size, batch, seed, instances, num_things, files=(),
                precision="float32"):
        self.prepared.append((mode, batch, precision))

    def time(self, count):
        return [self.PEER_SECONDS] * count


def test_rows_on_the_tiny_model_beside_each_peer_precision(tiny_bench, sample_dir):
    args = types.SimpleNamespace(seed=0, warmup=0, repeats=1)
    peer = FakePeer()
    precisions = ("float32", "bfloat16")
    rows = coco.coco_rows(tiny_bench, peer, coco.sample_images(sample_dir), args, instances=2,
                          peer_precisions=precisions)
    data = tiny_bench.config.data
    cases = coco.train_cases(data)
    expected = [("end-to-end (COCO JPEGs)", 1), ("end-to-end (COCO JPEGs)", 1),
                ("end-to-end (COCO JPEGs)", 2), ("train step (landscape)", coco.TRAIN_BATCH),
                ("train step (portrait)", coco.TRAIN_BATCH)]
    assert [(r["case"], r["batch"]) for r in rows] == [c for c in expected for _ in precisions]
    assert [r["peer_name"] for r in rows] == ["torchvision",
                                              "torchvision bfloat16 autocast"] * len(expected)
    assert [p[2] for p in peer.prepared] == list(precisions) * len(expected)
    assert [(p[0], p[1]) for p in peer.prepared] == [
        ("serve_files" if "end-to-end" in case else "train", batch)
        for case, batch in expected for _ in precisions]
    inputs = tiny_bench.image_inputs()
    for r, names in zip(rows[:6:2], (["a.jpg"], ["b.jpg"], ["a.jpg", "b.jpg"])):
        encoded = [open(os.path.join(sample_dir, "images", n), "rb").read() for n in names]
        assert r["size"] == list(inputs.from_encoded(encoded)[0].shape[1:3])
        assert all(f"{n} {SAMPLE_SIZES[n][1]}x{SAMPLE_SIZES[n][0]}" in r["note"]
                   for n in names)
    assert [r["size"] for r in rows[6::2]] == [list(case.padded) for case in cases]
    for r in rows:
        assert r["suite"] == coco.SUITE and r["ours"] > 0
        assert r["note"].startswith("ours float32;")
        if r["unit"] == "s/batch":
            assert r["peer"] == FakePeer.PEER_SECONDS
            assert r["speedup"] == pytest.approx(r["peer"] / r["ours"])
        else:
            assert r["peer"] == coco.TRAIN_BATCH / FakePeer.PEER_SECONDS
            assert r["speedup"] == pytest.approx(r["ours"] / r["peer"])


def test_rows_without_a_peer_have_no_peer_columns(tiny_bench, sample_dir, tmp_path):
    os.makedirs(tmp_path / "images")
    name = "a.jpg"
    (tmp_path / "images" / name).write_bytes(
        open(os.path.join(sample_dir, "images", name), "rb").read())
    args = types.SimpleNamespace(seed=0, warmup=0, repeats=1)
    rows = coco.coco_rows(tiny_bench, None, coco.sample_images(str(tmp_path)), args,
                          instances=2)
    assert len(rows) == 1 + len(coco.TRAIN_ORIGINALS)
    for r in rows:
        assert r["peer"] is None and r["speedup"] is None and r["peer_name"] == ""
