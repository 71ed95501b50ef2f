"""oanet_tf.data.image_headers: image sizes read from the headers of encoded bytes, against
images of known sizes encoded by PIL and headers built by hand."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from oanet_tf.data.image_headers import UNKNOWN_SIZE, header_size

HEIGHT, WIDTH = 37, 53


def _encoded(format_name: str, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=format_name)
    return buffer.getvalue()


@pytest.mark.parametrize("format_name, mode", [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGBA"),
                                               ("BMP", "RGB"), ("GIF", "P")])
def test_size_of_images_encoded_by_pil(format_name, mode):
    assert header_size(_encoded(format_name, mode)).numpy().tolist() == [HEIGHT, WIDTH]


def _bmp_header(dib_size: int, width: int, height: int) -> bytes:
    """A BMP file header and the start of its DIB header: enough for the size."""
    packed = (struct.pack("<HH", width, height) if dib_size == 12
              else struct.pack("<ii", width, height))
    return b"BM" + struct.pack("<IHHII", 0, 0, 0, 14 + dib_size, dib_size) + packed + b"\0" * 8


@pytest.mark.parametrize("dib_size, height, want", [
    (12, 300, 300),  # OS/2 core header: uint16 sides
    (40, 300, 300),  # BITMAPINFOHEADER: int32 sides, rows bottom-up
    (40, -300, 300),  # rows stored top-down
])
def test_bmp_header_sizes(dib_size, height, want):
    data = _bmp_header(dib_size, 70000 if dib_size == 40 else 700, height)
    assert header_size(data).numpy().tolist() == [want, 70000 if dib_size == 40 else 700]


def _gif(screen, frames, global_table_bits=None) -> bytes:
    """A GIF of a logical screen (width, height) and frames (left, top, width, height): a
    graphic-control extension before each, one empty data sub-block run per frame."""
    flags = 0 if global_table_bits is None else 0x80 | global_table_bits
    data = b"GIF89a" + struct.pack("<HHBBB", *screen, flags, 0, 0)
    if global_table_bits is not None:
        data += b"\0" * 3 * 2 ** (global_table_bits + 1)
    for left, top, width, height in frames:
        data += b"\x21\xf9\x04" + b"\0" * 4 + b"\0"  # extension: one 4-byte sub-block
        data += b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0)
        data += b"\x02" + b"\x01\x00" + b"\0"  # LZW code size, a 1-byte sub-block, the end
    return data + b"\x3b"


@pytest.mark.parametrize("screen, frames, table, want", [
    ((40, 30), [(0, 0, 40, 30)], None, [30, 40]),
    ((40, 30), [(0, 0, 10, 10), (35, 20, 20, 25)], 1, [45, 55]),  # a frame beyond the screen
    ((40, 30), [(0, 0, 10, 10)], 7, [30, 40]),  # a global color table of 768 bytes skipped
])
def test_gif_canvas_holds_every_frame(screen, frames, table, want):
    assert header_size(_gif(screen, frames, table)).numpy().tolist() == want


@pytest.mark.parametrize("data", [b"GIF89a" + struct.pack("<HHBBB", 40, 30, 0, 0, 0) + b"\x3b",
                                  b"not an image at all", b""])
def test_no_size_for_other_bytes_or_a_gif_without_frames(data):
    assert header_size(data).numpy().tolist() == [UNKNOWN_SIZE] * 2
