"""ImageInputs: what the served images become before the model (resized as configured, the
batch padded to its own size rounded up to 32, or to a bucket), checked against sizes
computed by hand; and `predict --model-dir` runs ImagePredictor in process, without the
export module. (The served outputs are compared with the evaluation path in
tests/export/test_saved_model.py.)"""

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from oanet_tf.config import ExportConfig, load_config
from oanet_tf.inference.image_predictor import ImageInputs

COCO_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "coco_r50.yaml")
LANDSCAPE = (427, 640)  # (height, width) of a common COCO image, as 000000142238.jpg
PORTRAIT = (640, 427)
# coco_r50: short side 800, long side at most 1333. 427x640: scale = min(800 / 427,
# 1333 / 640) = 1.8735 -> 800 x 1199.06 -> 800x1199, padded 800x1216 (1216 = 38 * 32).
LANDSCAPE_RESIZED, LANDSCAPE_PADDED = (800, 1199), (800, 1216)
PORTRAIT_RESIZED = (1199, 800)
# 360x640: scale = min(800 / 360, 1333 / 640) = 2.0828 -> 749.8 x 1333 -> 750x1333, padded
# 768x1344 (24 * 32, 42 * 32).
WIDE_RESIZED, WIDE_PADDED = (750, 1333), (768, 1344)
# Sample image file -> its (height, width) in ../shared/coco/sample.
COCO_SAMPLE = {"000000142238.jpg": LANDSCAPE, "000000439180.jpg": (360, 640)}

IMPORTS_OF_THE_MODEL_DIR_PATH = """
import sys
from oanet_tf.cli import predict
from oanet_tf.inference import (image_predictor, postprocessor, trained_model, visualize,
                                writer)
loaded = sorted(m for m in sys.modules if m.startswith("oanet_tf.export"))
assert not loaded, loaded
"""


def _inputs(*overrides) -> ImageInputs:
    return ImageInputs(load_config(COCO_CONFIG, list(overrides)).data,
                       ExportConfig.max_image_side)


def _picture(seed: int, size) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    """PIL's decoding (the one the predictor's accurate DCT reproduces)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)


def _check_placed(pixels, image_size, decoded):
    """One padded image: its resized picture at the top left, zeros beyond. Bilinear
    resizing with half-pixel centres samples the first and last source pixels exactly at
    the first and last target pixels (the sample positions clamp to the border)."""
    height, width = image_size
    np.testing.assert_array_equal(pixels[0, 0], decoded[0, 0])
    np.testing.assert_array_equal(pixels[height - 1, width - 1], decoded[-1, -1])
    assert not pixels[height:].any() and not pixels[:, width:].any()


def test_a_jpeg_is_padded_to_its_own_size_rounded_up_to_32():
    data = _encode(_picture(0, LANDSCAPE), "JPEG")
    pixels, image_size, original_size = (t.numpy() for t in _inputs().from_encoded([data]))
    assert pixels.shape == (1, *LANDSCAPE_PADDED, 3)
    np.testing.assert_array_equal(image_size, [LANDSCAPE_RESIZED])
    np.testing.assert_array_equal(original_size, [LANDSCAPE])
    _check_placed(pixels[0], LANDSCAPE_RESIZED, _decoded(data))


def test_a_landscape_and_a_portrait_jpeg_pad_to_the_larger_of_each_side():
    data = [_encode(_picture(1, LANDSCAPE), "JPEG"), _encode(_picture(2, PORTRAIT), "JPEG")]
    pixels, image_size, original_size = (t.numpy() for t in _inputs().from_encoded(data))
    # Each side: max(800, 1199) = 1199 -> 1216.
    assert pixels.shape == (2, 1216, 1216, 3)
    np.testing.assert_array_equal(image_size, [LANDSCAPE_RESIZED, PORTRAIT_RESIZED])
    np.testing.assert_array_equal(original_size, [LANDSCAPE, PORTRAIT])
    for index, size in enumerate((LANDSCAPE_RESIZED, PORTRAIT_RESIZED)):
        _check_placed(pixels[index], size, _decoded(data[index]))


def test_buckets_pad_to_the_smallest_bucket_that_holds_the_batch():
    inputs = _inputs("data.buckets=[[1344, 1344], [832, 1344], [1344, 832]]")
    landscape = _encode(_picture(3, LANDSCAPE), "JPEG")
    portrait = _encode(_picture(4, PORTRAIT), "JPEG")
    pixels, image_size, _ = inputs.from_encoded([landscape])
    assert tuple(pixels.shape) == (1, 832, 1344, 3)  # 800x1199 fits; the bucket keeps it
    np.testing.assert_array_equal(image_size, [LANDSCAPE_RESIZED])
    pixels, _, _ = inputs.from_encoded([landscape, portrait])
    assert tuple(pixels.shape) == (2, 1344, 1344, 3)  # only the square bucket holds both


def test_pixels_and_their_png_give_the_same_inputs():
    """serving_tensor's path equals serving_default's on lossless bytes."""
    picture = _picture(5, LANDSCAPE)
    inputs = _inputs()
    from_pixels = [t.numpy() for t in inputs.from_pixels(np.stack([picture, picture]))]
    data = _encode(picture, "PNG")
    from_encoded = [t.numpy() for t in inputs.from_encoded([data, data])]
    assert from_pixels[0].shape == (2, *LANDSCAPE_PADDED, 3)
    for ours, theirs in zip(from_pixels, from_encoded):
        np.testing.assert_array_equal(ours, theirs)


def test_real_coco_jpegs_pad_to_their_own_batch(coco_sample_dir):
    data = {}
    for name, size in COCO_SAMPLE.items():
        with open(os.path.join(coco_sample_dir, "images", name), "rb") as f:
            data[name] = f.read()
        assert Image.open(io.BytesIO(data[name])).size[::-1] == size, name
    inputs = _inputs()
    landscape, wide = data.values()
    for encoded, resized, padded in ((landscape, LANDSCAPE_RESIZED, LANDSCAPE_PADDED),
                                     (wide, WIDE_RESIZED, WIDE_PADDED)):
        pixels, image_size, _ = inputs.from_encoded([encoded])
        assert tuple(pixels.shape) == (1, *padded, 3)
        np.testing.assert_array_equal(image_size, [resized])
    pixels, image_size, original_size = (t.numpy() for t in inputs.from_encoded(
        [landscape, wide]))
    assert pixels.shape == (2, 800, 1344, 3)  # (max(800, 750), max(1199, 1333)) rounded up
    np.testing.assert_array_equal(image_size, [LANDSCAPE_RESIZED, WIDE_RESIZED])
    np.testing.assert_array_equal(original_size, list(COCO_SAMPLE.values()))
    for index, encoded in enumerate((landscape, wide)):
        _check_placed(pixels[index], image_size[index], _decoded(encoded))


@pytest.mark.parametrize("bad, message", [
    (b"not an image", "images[1] is not a decodable"),
    (_encode(np.zeros((1, 1, 3), np.uint8), "PNG")[:40], "images[1] is not a decodable"),
])
def test_bad_items_are_named(bad, message):
    import tensorflow as tf

    good = _encode(_picture(6, LANDSCAPE), "JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        _inputs().from_encoded([good, bad])


def test_model_dir_path_does_not_import_the_export_module():
    done = subprocess.run([sys.executable, "-c", IMPORTS_OF_THE_MODEL_DIR_PATH],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
