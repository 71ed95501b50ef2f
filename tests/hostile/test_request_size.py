"""Issue 27, item 7: export.max_request_pixels bounds the pixels of one request's images
together (16 JPEGs of 4000x3000 in one call took 4 GB), read from their headers before any is
decoded; a request over it fails with INVALID_ARGUMENT naming the limit, in the SavedModel's
serving function and in predict."""

import io
import os
import re
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from oanet_tf.__main__ import main
from oanet_tf.config import DataConfig
from oanet_tf.inference.image_predictor import ImageInputs

SIDE_LIMIT = 64
REQUEST_LIMIT = 2000  # pixels
HEIGHT, WIDTH = 20, 30  # 600 pixels an image


def _png(height=HEIGHT, width=WIDTH):
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 120, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _undecodable_bmp(width, height):
    """A BMP header announcing width x height, its pixels cut off: only a check of the
    header can count its pixels; decoding would fail."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(buffer, format="BMP")
    data = bytearray(buffer.getvalue())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data[:60])


def _inputs():
    return ImageInputs(DataConfig(short_side=32, max_side=32, buckets=()), SIDE_LIMIT,
                       REQUEST_LIMIT)


def _refused(pixels):
    return re.escape(f"the request holds {pixels} pixels") + ".*" + re.escape(
        f"at most {REQUEST_LIMIT} are allowed (export.max_request_pixels)")


def test_encoded_images_are_counted_from_their_headers_before_decoding():
    """Four announced 40x30 images (4800 pixels) that hold no pixels: refused for their
    total, not reported as undecodable."""
    with pytest.raises(tf.errors.InvalidArgumentError, match=_refused(4 * 40 * 30)):
        _inputs().from_encoded(tf.constant([_undecodable_bmp(40, 30)] * 4))


def test_a_request_within_the_limit_is_served():
    pixels, image_size, original_size = _inputs().from_encoded(tf.constant([_png()] * 3))
    assert original_size.numpy().tolist() == [[HEIGHT, WIDTH]] * 3
    assert pixels.shape[0] == 3


def test_images_above_the_side_limit_count_as_refused_items_not_as_pixels():
    """An image over export.max_image_side is never decoded: it is reported by index."""
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("images[1] is 30x100")):
        _inputs().from_encoded(tf.constant([_png(), _undecodable_bmp(100, 30)]))


def test_pixel_arrays_are_bounded_alike():
    pixels, _, _ = _inputs().from_pixels(tf.zeros([3, HEIGHT, WIDTH, 3], tf.uint8))
    assert pixels.shape[0] == 3
    with pytest.raises(tf.errors.InvalidArgumentError, match=_refused(4 * HEIGHT * WIDTH)):
        _inputs().from_pixels(tf.zeros([4, HEIGHT, WIDTH, 3], tf.uint8))


def test_the_export_and_predict_refuse_a_request_over_the_limit(tmp_path, scene_model_dir,
                                                                capsys):
    """An export whose requests may hold 300 pixels: two 12x16 images (384 pixels) in one
    request are refused by the served function and by predict, naming the limit; one at a
    time they are served."""
    model_dir, _ = scene_model_dir
    assert main(["export", "--model-dir", model_dir, "--export-dir", str(tmp_path / "export"),
                 "--set", "export.max_request_pixels=300"]) == 0
    capsys.readouterr()
    served = tf.saved_model.load(str(tmp_path / "export" / "1")).signatures["serving_default"]
    image = _png(12, 16)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=re.escape("the request holds 384 pixels")):
        served(images=tf.constant([image, image]))
    assert served(images=tf.constant([image]))["num_segments"].shape == [1]

    files = []
    for name in ("a.png", "b.png"):
        files.append(str(tmp_path / name))
        with open(files[-1], "wb") as f:
            f.write(image)
    out = str(tmp_path / "out")
    code = main(["predict", *files, "--saved-model", str(tmp_path / "export" / "1"),
                 "--out", out, "--no-overlays"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert all(path in errors[0] for path in files)
    assert "holds 384 pixels" in errors[0] and "at most 300" in errors[0]
    assert not os.path.exists(out)
    assert main(["predict", *files, "--saved-model", str(tmp_path / "export" / "1"),
                 "--out", out, "--no-overlays", "--batch-size", "1"]) == 0
