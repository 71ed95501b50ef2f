"""Images of any size in, panoptic segmentations at their original sizes out, in TensorFlow.

The functions behind the SavedModel's image signatures (`oanet_tf.export`) and behind
`predict --model-dir`, which runs them in process: the same decoding, resizing and
post-processing, so both give what TF Serving gives.

`ImageInputs` turns a request into the model's inputs: each image is resized as at evaluation
(`oanet_tf.data.image_sizes.resized_size`, bilinear, no jitter) and the batch is zero-padded
to its own padded size (`image_sizes.padded_size`: its largest image rounded up to a multiple
of 32, or the smallest of `data.buckets` that holds it), never to a fixed canvas.
`ImagePredictor` runs those inputs through `PanopticPredictor` with the eval config's merge
order; the outputs are those of `oanet_tf.inference.postprocessor`.

EXIF orientation is not applied (TensorFlow has no op for it): send upright pixels, as the
training pipeline sees them after applying it.

Bad input fails the call with INVALID_ARGUMENT naming the item: undecodable bytes, an image
side above `max_image_side`, an empty image; a request whose images hold more than
`max_request_pixels` together fails it too. Sizes are read from the headers (JPEG, PNG, BMP,
and every frame descriptor of a GIF, whose canvas TensorFlow sizes to its frames) before
anything is decoded; bytes of another format are refused undecoded.
An empty batch returns empty outputs (B = 0, panoptic [0, 0, 0]).
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.config import DataConfig, EvalConfig, ExportConfig
from oanet_tf.data import image_sizes
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.data.tfrecords import JPEG_DCT_METHOD, PNG_SIGNATURE
from oanet_tf.inference.postprocessor import empty_outputs
from oanet_tf.inference.predictor import PanopticPredictor

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


class ImagePredictor:
    """Encoded images or pixel arrays -> the post-processor's outputs of the eval config's
    merge order (traced once by `ExportArchive`, or wrapped in a tf.function)."""

    def __init__(self, model, categories: CategoryMap, data_config: DataConfig,
                 eval_config: EvalConfig, max_image_side: int,
                 max_request_pixels: int = ExportConfig.max_request_pixels):
        self.predictor = PanopticPredictor(model, categories, eval_config)
        self.merge_order = eval_config.merge_order
        self.inputs = ImageInputs(data_config, max_image_side, max_request_pixels)
        self.num_segments = model.detections_per_image + model.num_stuff

    def from_encoded(self, images):
        """string [B] encoded JPEG, PNG, GIF or BMP images (grayscale and RGBA converted to
        RGB), of any sizes -> the outputs."""
        return tf.cond(tf.shape(images)[0] > 0,
                       lambda: self._predict(*self.inputs.from_encoded(images)), self._empty)

    def from_pixels(self, images):
        """uint8 [B, H, W, 3] RGB pixels, one size for the batch -> the outputs."""
        return tf.cond(tf.shape(images)[0] > 0,
                       lambda: self._predict(*self.inputs.from_pixels(images)), self._empty)

    def _predict(self, pixels, image_size, original_size) -> dict:
        _, outputs = self.predictor(pixels, image_size, original_size)
        return outputs[self.merge_order]

    def _empty(self) -> dict:
        return empty_outputs(self.num_segments)


class ImageInputs:
    """A request -> the model's inputs (pixels float32 [B, H, W, 3] zero-padded to the batch's
    padded size, image_size int32 [B, 2] each image's resized size before padding,
    original_size int32 [B, 2]), after the checks of bad input. B >= 1: `ImagePredictor`
    answers an empty batch without them."""

    def __init__(self, data_config: DataConfig, max_image_side: int,
                 max_request_pixels: int = ExportConfig.max_request_pixels):
        self.data_config = data_config
        self.max_image_side = int(max_image_side)
        self.max_request_pixels = int(max_request_pixels)

    def from_encoded(self, images):
        """string [B] encoded images of any sizes: each resized on its own, the batch padded
        to its largest, then to its padded size."""
        count = tf.shape(images)[0]
        indices = tf.range(count)
        # Undecodable items are dropped by ignore_errors and reported below by index: a
        # decode error alone would fail the call without saying which item was bad.
        dataset = tf.data.Dataset.from_tensor_slices((indices, images)).map(
            self._load_encoded, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.ignore_errors().padded_batch(tf.cast(tf.maximum(count, 1), tf.int64))
        # When no item decodes, the batch above is missing: an empty one takes its place.
        nothing = tf.data.Dataset.from_tensors((
            tf.zeros([0], tf.int32), tf.zeros([0, 0, 0, 3], tf.float32),
            tf.zeros([0, 2], tf.int32), tf.zeros([0, 2], tf.int32)))
        with tf.control_dependencies([self._check_request(self._header_pixels(images))]):
            loaded, pixels, image_size, original_size = \
                dataset.concatenate(nothing).take(1).get_single_element()
        decoded = tf.reduce_any(indices[:, tf.newaxis] == loaded[tf.newaxis, :], axis=1)
        first_bad = tf.argmin(tf.cast(decoded, tf.int32), output_type=tf.int32)
        undecodable = tf.debugging.Assert(tf.reduce_all(decoded), [tf.strings.format(
            "images[{}] is not a decodable JPEG, PNG, GIF or BMP image", first_bad)],
            name="check_decodable")
        with tf.control_dependencies([undecodable]):
            size_check = self._check_sizes(original_size)
        with tf.control_dependencies([size_check]):
            return (self._pad(pixels, image_size), tf.identity(image_size),
                    tf.identity(original_size))

    def from_pixels(self, images):
        """uint8 [B, H, W, 3], one size for the batch: every image resized alike."""
        count = tf.shape(images)[0]
        original = tf.shape(images)[1:3]
        original_size = tf.tile(original[tf.newaxis], [count, 1])
        pixels = tf.cast(count, tf.int64) * tf.reduce_prod(tf.cast(original, tf.int64))
        with tf.control_dependencies([self._check_sizes(original_size),
                                      self._check_request(pixels)]):
            new_h, new_w = image_sizes.resized_size(original[0], original[1], self.data_config)
            resized = tf.image.resize(images, [new_h, new_w], method="bilinear")
        image_size = tf.tile(tf.stack([new_h, new_w])[tf.newaxis], [count, 1])
        return self._pad(resized, image_size), image_size, original_size

    def _pad(self, pixels, image_size):
        """float32 [B, h, w, 3] (h, w: the largest resized sides) -> padded at the bottom
        and right to image_sizes.padded_size of the batch with data.pad_value (zero by
        default)."""
        target = image_sizes.padded_size(image_size, self.data_config.buckets)
        shape = tf.shape(pixels)
        padded = image_sizes.pad_images(pixels, target[0] - shape[1], target[1] - shape[2],
                                        image_size, self.data_config.pad_value)
        padded.set_shape([None, None, None, 3])
        return padded

    def _load_encoded(self, index, data):
        """One encoded image -> (index, resized float32 [h, w, 3], resized size [2], original
        size [2]); an image larger than allowed is not decoded, its header size is passed on
        for `_check_sizes` to report; bytes of no known format fail (and are reported as
        undecodable)."""
        header_size = _header_size(data)
        known = tf.debugging.Assert(tf.reduce_all(header_size > UNKNOWN_SIZE),
                                    ["not a JPEG, PNG, GIF or BMP image"])
        with tf.control_dependencies([known]):
            too_large = tf.reduce_any(header_size > self.max_image_side)
        image = tf.cond(too_large, lambda: tf.zeros([1, 1, 3], tf.uint8),
                        lambda: _decode(data))
        original_size = tf.where(too_large, tf.cast(header_size, tf.int32),
                                 tf.shape(image)[:2])
        new_h, new_w = image_sizes.resized_size(tf.shape(image)[0], tf.shape(image)[1],
                                                self.data_config)
        resized = tf.image.resize(image, [new_h, new_w], method="bilinear")
        return index, resized, tf.stack([new_h, new_w]), original_size

    def _header_pixels(self, images):
        """int64 []: the pixels the headers of string [B] `images` announce, summed over the
        images that would be decoded (bytes without a readable header, or with a side above
        max_image_side, count 0: they are reported by item, undecoded)."""
        def pixels(data):
            size = _header_size(data)
            decoded = tf.reduce_all((size >= 1) & (size <= self.max_image_side))
            return tf.where(decoded, size[0] * size[1], tf.constant(0, tf.int64))

        return tf.data.Dataset.from_tensor_slices(images).map(pixels).ignore_errors().reduce(
            tf.constant(0, tf.int64), lambda total, count: total + count)

    def _check_request(self, pixels):
        """Assert the `pixels` (int64 []) of one request's images together are at most
        max_request_pixels: the bound on what one request may take in memory."""
        return tf.debugging.Assert(pixels <= self.max_request_pixels, [tf.strings.format(
            "the request holds {} pixels (height x width, summed over its images); at most {} "
            "are allowed (export.max_request_pixels): send fewer or smaller images per request",
            (pixels, self.max_request_pixels))], name="check_request_size")

    def _check_sizes(self, original_size):
        """Assert every image side lies in [1, max_image_side]; the message names the item."""
        sides = tf.cast(original_size, tf.int64)
        valid = tf.reduce_all((sides >= 1) & (sides <= self.max_image_side), axis=1)
        first_bad = tf.argmin(tf.cast(valid, tf.int32), output_type=tf.int32)
        return tf.debugging.Assert(tf.reduce_all(valid), [tf.strings.format(
            "images[{}] is {}x{} pixels (height x width); each side must be between 1 and {} "
            "(export.max_image_side)", (first_bad, sides[first_bad, 0], sides[first_bad, 1],
                                        self.max_image_side))], name="check_image_size")


def _decode(data):
    """Encoded bytes -> uint8 [h, w, 3] RGB (grayscale replicated, alpha dropped).

    JPEGs use the accurate integer DCT: the pixels then equal PIL's, which decodes the
    training and evaluation images (TensorFlow's default fast DCT differs by up to 20 levels).
    """
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def _header_size(data):
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
