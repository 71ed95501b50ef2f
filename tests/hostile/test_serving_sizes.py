"""Issue 17, case 5: export.max_image_side holds for every format before anything is decoded.
Each image below announces a size above the limit in its header but carries no decodable
pixels: only a check of the header can name its size; decoding first would call it
undecodable (or, for a real one, allocate the whole canvas)."""

import io
import re
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from oanet_tf.config import DataConfig
from oanet_tf.inference.image_predictor import ImageInputs

LIMIT = 64
HEIGHT, WIDTH = 20, 30  # what the pictures really hold
GIF_SCREEN = slice(6, 10)


def _encoded(fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), 120, np.uint8)).save(buffer, format=fmt,
                                                                    **options)
    return buffer.getvalue()


def _gif_with_screen(width, height):
    data = bytearray(_encoded("GIF"))
    data[GIF_SCREEN] = struct.pack("<HH", width, height)
    return bytes(data[:-20])  # the pixel data cut: not decodable


def _gif_with_a_large_frame():
    """A 100-wide frame on a screen that claims 30: TensorFlow's canvas grows to its frames."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((HEIGHT, 100, 3), 30, np.uint8)).save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[GIF_SCREEN] = struct.pack("<HH", WIDTH, HEIGHT)
    return bytes(data[:-20])


def _bmp_with_size(width, height):
    data = bytearray(_encoded("BMP"))
    data[18:26] = struct.pack("<ii", width, -height)  # top-down rows: a negative height
    return bytes(data[:200])


@pytest.mark.parametrize("encoded, size", [
    (_gif_with_screen(1000, 800), "800x1000"),
    (_gif_with_a_large_frame(), f"{HEIGHT}x100"),
    (_bmp_with_size(5000, 40), "40x5000"),
])
def test_sizes_above_the_limit_are_refused_from_the_header(encoded, size):
    inputs = ImageInputs(DataConfig(short_side=32, max_side=32), LIMIT)
    good = _encoded("PNG")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=re.escape(f"images[1] is {size} pixels")):
        inputs.from_encoded(tf.constant([good, encoded]))


def test_a_format_without_a_parsed_header_is_not_decoded():
    """WebP (which TensorFlow can decode) has no header check here: refused undecoded."""
    inputs = ImageInputs(DataConfig(short_side=32, max_side=32), LIMIT)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=re.escape("images[0] is not a decodable")):
        inputs.from_encoded(tf.constant([_encoded("WEBP")]))
