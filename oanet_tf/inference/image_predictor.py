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
`max_request_pixels` together fails it too. Sizes are read from the headers
(`oanet_tf.data.image_headers`) before anything is decoded; bytes of another format are
refused undecoded.
An empty batch returns empty outputs (B = 0, panoptic [0, 0, 0]).

`png_outputs` turns the outputs into a REST client's: each panoptic map as COCO panoptic PNG
bytes at its image's own size, instead of one JSON number per pixel.
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.config import DataConfig, EvalConfig, ExportConfig
from oanet_tf.data import image_headers, image_sizes
from oanet_tf.data.panoptic_format import ID_BASE, CategoryMap
from oanet_tf.data.tfrecords import JPEG_DCT_METHOD
from oanet_tf.inference.postprocessor import empty_outputs
from oanet_tf.inference.predictor import PanopticPredictor

# The SavedModel's signatures (`oanet_tf.export`), named here for the readers of an export too.
IMAGES_SIGNATURE = "serving_default"
TENSOR_SIGNATURE = "serving_tensor"
PNG_SIGNATURE = "serving_png"
CATEGORIES_SIGNATURE = "categories"
INPUT_NAME = "images"

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

    def from_encoded_as_png(self, images):
        """string [B] encoded images, as `from_encoded` -> `png_outputs` of its outputs."""
        return png_outputs(self.from_encoded(images))

    def from_pixels(self, images):
        """uint8 [B, H, W, 3] RGB pixels, one size for the batch -> the outputs."""
        return tf.cond(tf.shape(images)[0] > 0,
                       lambda: self._predict(*self.inputs.from_pixels(images)), self._empty)

    def _predict(self, pixels, image_size, original_size) -> dict:
        return self.predictor.panoptic_outputs(pixels, image_size,
                                               original_size)[self.merge_order]

    def _empty(self) -> dict:
        return empty_outputs(self.num_segments)


# The output holding the PNG bytes: TF Serving's REST API writes a string output whose name
# ends in "_bytes" as {"b64": ...}, other strings as JSON text (where PNG bytes do not fit).
PANOPTIC_PNG = "panoptic_png_bytes"
DENSE_PANOPTIC = "panoptic"


def png_outputs(outputs: dict) -> dict:
    """The post-processor's outputs -> the same without the dense `panoptic` map, with
    PANOPTIC_PNG: string [B], each map cropped to its image's own size (height, width) and
    encoded as a COCO panoptic PNG (id = R + 256 G + 256^2 B, 0 void)."""

    def encode(args):
        segments, height, width = args
        ids = segments[:height, :width]
        rgb = tf.stack([ids % ID_BASE, ids // ID_BASE % ID_BASE, ids // ID_BASE ** 2], axis=-1)
        return tf.io.encode_png(tf.cast(rgb, tf.uint8))

    pngs = tf.map_fn(encode, (outputs[DENSE_PANOPTIC], outputs["height"], outputs["width"]),
                     fn_output_signature=tf.TensorSpec([], tf.string))
    table = {k: v for k, v in outputs.items() if k != DENSE_PANOPTIC}
    return {PANOPTIC_PNG: pngs, **table}


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
        header_size = image_headers.header_size(data)
        known = tf.debugging.Assert(tf.reduce_all(header_size > image_headers.UNKNOWN_SIZE),
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
            size = image_headers.header_size(data)
            decoded = tf.reduce_all((size >= 1) & (size <= self.max_image_side))
            return tf.where(decoded, size[0] * size[1], tf.constant(0, tf.int64))

        # One batch of every readable item's count (Dataset.reduce has a fixed cost per call
        # hundreds of times larger); an empty batch stands in when none is readable.
        counts = tf.data.Dataset.from_tensor_slices(images).map(pixels).ignore_errors().batch(
            tf.cast(tf.maximum(tf.shape(images)[0], 1), tf.int64))
        nothing = tf.data.Dataset.from_tensors(tf.zeros([0], tf.int64))
        return tf.reduce_sum(counts.concatenate(nothing).take(1).get_single_element())

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
