"""The (height, width) of an encoded image read from its headers in TensorFlow ops, without
decoding its pixels: JPEG, PNG, BMP, and GIF (every frame descriptor, since TensorFlow sizes a
GIF's canvas to its frames). Serving reads it to refuse an image too large before decoding it
(`oanet_tf.inference.image_predictor`).
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.data.tfrecords import PNG_SIGNATURE

UNKNOWN_SIZE = -1  # header size of bytes in no format this module parses
PNG_SIZE_OFFSET = 16  # IHDR width, height: two big-endian uint32 at bytes 16..23
PNG_SIZE_BYTES = 8
BIG_ENDIAN_WEIGHTS = (1 << 24, 1 << 16, 1 << 8, 1)
BYTE_VALUES = 256
# BMP: "BM", then at 14 the DIB header's size; a 12-byte core header holds uint16 width and
# height at 18 and 20, every later header int32 ones at 18 and 22 (a negative height: rows
# stored top-down).
BMP_SIGNATURE = b"BM"
BMP_HEADER_SIZE_OFFSET = 14
BMP_CORE_HEADER_SIZE = 12
BMP_WIDTH_OFFSET = 18
BMP_CORE_HEIGHT_OFFSET, BMP_HEIGHT_OFFSET = 20, 22
# GIF: the signature, the logical screen (uint16 width, height at 6 and 8), a flags byte at
# 10 whose top bit announces a global color table of 3 * 2^(1 + low 3 bits) bytes, which
# starts at 13. Then blocks: an extension (0x21, a label, then data sub-blocks), an image (0x2C,
# a 9-byte descriptor: left, top, width, height as uint16 and flags with the local table's
# size as above, then one byte and data sub-blocks) or the trailer (0x3B). A sub-block is a
# size byte and that many bytes; size 0 ends a run of them.
GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
GIF_SCREEN_OFFSET = 6
GIF_FLAGS_OFFSET = 10
GIF_BLOCKS_OFFSET = 13
GIF_EXTENSION, GIF_IMAGE, GIF_TRAILER = 0x21, 0x2C, 0x3B
GIF_DESCRIPTOR_BYTES = 9  # left, top, width, height (uint16 each), flags
GIF_TABLE_FLAG = 0x80
GIF_TABLE_BITS = 0x07
COLOR_BYTES = 3
GIF_AT_BLOCK, GIF_IN_SUB_BLOCKS, GIF_DONE = 0, 1, 2  # states of the block walk


def header_size(data):
    """(height, width) int64 [2] read from the headers of a JPEG, PNG, BMP or GIF without
    decoding the pixels; UNKNOWN_SIZE for other bytes."""
    def png_size():
        raw = tf.io.decode_raw(tf.strings.substr(data, PNG_SIZE_OFFSET, PNG_SIZE_BYTES),
                               tf.uint8)
        width_height = tf.reduce_sum(tf.reshape(tf.cast(raw, tf.int64), [2, 4])
                                     * BIG_ENDIAN_WEIGHTS, axis=1)
        return tf.reverse(width_height, [0])

    def starts_with(signature):
        return tf.equal(tf.strings.substr(data, 0, len(signature)), signature)

    is_png = starts_with(PNG_SIGNATURE)
    is_bmp = starts_with(BMP_SIGNATURE)
    is_gif = tf.reduce_any([starts_with(signature) for signature in GIF_SIGNATURES])
    return tf.case([
        (tf.io.is_jpeg(data), lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)),
        (is_png, png_size), (is_bmp, lambda: _bmp_size(data)), (is_gif, lambda: _gif_size(data))],
        default=lambda: tf.constant([UNKNOWN_SIZE] * 2, tf.int64))


def _little_endian(data, offset, size: int):
    """The unsigned little-endian integer of `size` bytes at `offset` of `data`, int64."""
    raw = tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8)
    weights = tf.constant([BYTE_VALUES ** i for i in range(size)], tf.int64)
    return tf.reduce_sum(tf.cast(tf.reshape(raw, [size]), tf.int64) * weights)


def _bmp_size(data):
    """(height, width) of a BMP from its DIB header."""
    core = tf.equal(_little_endian(data, BMP_HEADER_SIZE_OFFSET, 4), BMP_CORE_HEADER_SIZE)

    def signed32(offset):
        value = _little_endian(data, offset, 4)
        return tf.abs(tf.where(value >= 1 << 31, value - (1 << 32), value))

    return tf.cond(core,
                   lambda: tf.stack([_little_endian(data, BMP_CORE_HEIGHT_OFFSET, 2),
                                     _little_endian(data, BMP_WIDTH_OFFSET, 2)]),
                   lambda: tf.stack([signed32(BMP_HEIGHT_OFFSET), signed32(BMP_WIDTH_OFFSET)]))


def _gif_size(data):
    """(height, width) of the canvas a GIF decodes to: the logical screen and every frame
    (its offset plus its size) fit in it; UNKNOWN_SIZE when no frame is found (not an
    image). Walks the blocks (see GIF_SIGNATURES) without decoding any."""
    length = tf.cast(tf.strings.length(data), tf.int64)

    def byte(position):
        return _little_endian(data, position, 1)

    def table_bytes(flags):
        present = tf.cast(tf.bitwise.bitwise_and(flags, GIF_TABLE_FLAG) > 0, tf.int64)
        return present * COLOR_BYTES * tf.bitwise.left_shift(
            tf.constant(2, tf.int64), tf.bitwise.bitwise_and(flags, GIF_TABLE_BITS))

    def step(position, state, height, width, frames):
        def at_block():
            kind = byte(position)

            def image():
                left, top, frame_w, frame_h = (_little_endian(data, position + 1 + 2 * i, 2)
                                               for i in range(4))
                flags = byte(position + GIF_DESCRIPTOR_BYTES)
                after = position + 1 + GIF_DESCRIPTOR_BYTES + table_bytes(flags) + 1
                return (after, tf.constant(GIF_IN_SUB_BLOCKS, tf.int64),
                        tf.maximum(height, top + frame_h), tf.maximum(width, left + frame_w),
                        frames + 1)

            return tf.case([
                (tf.equal(kind, GIF_EXTENSION),
                 lambda: (position + 2, tf.constant(GIF_IN_SUB_BLOCKS, tf.int64), height,
                          width, frames)),
                (tf.equal(kind, GIF_IMAGE), image)],
                default=lambda: (position, tf.constant(GIF_DONE, tf.int64), height, width,
                                 frames))

        def in_sub_blocks():
            size = byte(position)
            return (position + 1 + size,
                    tf.where(tf.equal(size, 0), tf.constant(GIF_AT_BLOCK, tf.int64),
                             tf.constant(GIF_IN_SUB_BLOCKS, tf.int64)), height, width, frames)

        return tf.cond(tf.equal(state, GIF_AT_BLOCK), at_block, in_sub_blocks)

    screen_w = _little_endian(data, GIF_SCREEN_OFFSET, 2)
    screen_h = _little_endian(data, GIF_SCREEN_OFFSET + 2, 2)
    start = GIF_BLOCKS_OFFSET + table_bytes(byte(GIF_FLAGS_OFFSET))
    _, _, height, width, frames = tf.while_loop(
        lambda position, state, *_: (state != GIF_DONE) & (position < length),
        step, (start, tf.constant(GIF_AT_BLOCK, tf.int64), screen_h, screen_w,
               tf.constant(0, tf.int64)))
    return tf.where(frames > 0, tf.stack([height, width]),
                    tf.constant([UNKNOWN_SIZE] * 2, tf.int64))
