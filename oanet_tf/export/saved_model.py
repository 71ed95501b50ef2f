"""A trained OANet as a SavedModel for TF Serving: images in, panoptic segmentations out.

Signatures (all self-contained: loading needs TensorFlow only, not oanet_tf):
  serving_default(images: string [B])        encoded JPEG or PNG (GIF, BMP too) of any size;
                                             grayscale and RGBA are converted to RGB.
  serving_tensor(images: uint8 [B, H, W, 3]) RGB pixels, one size for the whole batch.
  categories()                               ids, names, isthing, colors of the categories.

Each image is resized as at evaluation (`oanet_tf.data.pipeline`), run through
`OANet.detect` and the panoptic merge (`PanopticPredictor`, eval config: merge order,
thresholds, minimum stuff area in original pixels), and its map is returned at its original
size. Outputs of both image signatures, N = detections_per_image + number of stuff classes:
  panoptic        int32 [B, Hmax, Wmax]  segment ids (0 void); -1 beyond the image's own size
  height, width   int32 [B]              original size of each image
  num_segments    int32 [B]              the first num_segments entries below are segments
  segment_ids     int32 [B, N]           ids in `panoptic`; 0 in padding
  category_ids    int32 [B, N]           dataset category ids; -1 in padding
  is_thing        bool  [B, N]
  detection_scores, ranking_scores float32 [B, N]  detector score and the score the merge
                                         ordered by (SRM ranking score with merge_order
                                         "ranking"); 0 for stuff and padding
  areas           int32 [B, N]           pixels at the original size
  boxes           float32 [B, N, 4]      (x, y, w, h) at the original size
Segments are measured on the original-size map; one that no original pixel keeps (an image
shrunk by the resize) is dropped, as `oanet_tf.inference.writer.segments_info` does.

EXIF orientation is not applied (TensorFlow has no op for it): send upright pixels, as the
training pipeline sees them after applying it.

Bad input fails the call with INVALID_ARGUMENT naming the item: undecodable bytes, an image
side above `max_image_side` (checked from the JPEG/PNG header before decoding), an empty image.
An empty batch returns empty outputs (B = 0, panoptic [0, 0, 0]).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import tensorflow as tf
from keras.export import ExportArchive

from oanet_tf.config import DataConfig, EvalConfig, ExportConfig
from oanet_tf.data import pipeline
from oanet_tf.data.panoptic_format import VOID_ID, CategoryMap
from oanet_tf.fileio import write_json
from oanet_tf.inference.panoptic_merge import segment_extents, to_original_size
from oanet_tf.inference.predictor import PanopticPredictor

IMAGES_SIGNATURE = "serving_default"
TENSOR_SIGNATURE = "serving_tensor"
CATEGORIES_SIGNATURE = "categories"
INPUT_NAME = "images"
CATEGORIES_ASSET = "categories.json"
ASSETS_DIR = "assets"
OUTSIDE_IMAGE = -1  # panoptic value beyond an image's own size, in the batch padding
NO_CATEGORY = -1  # category id of padding segments
UNKNOWN_SIZE = -1  # header size of a format whose header is not parsed
JPEG_DCT_METHOD = "INTEGER_ACCURATE"  # as libjpeg's default, which PIL uses
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_SIZE_OFFSET = 16  # IHDR width, height: two big-endian uint32 at bytes 16..23
PNG_SIZE_BYTES = 8
BIG_ENDIAN_WEIGHTS = (1 << 24, 1 << 16, 1 << 8, 1)
# Colors of categories that have none in the dataset: a fixed spread over the RGB cube.
COLOR_MULTIPLIERS = (73, 151, 211)
COLOR_LEVELS = 256


def export_saved_model(model, categories: CategoryMap, data_config: DataConfig,
                       eval_config: EvalConfig, export_dir: str,
                       max_image_side: int = ExportConfig.max_image_side) -> str:
    """Write the SavedModel of `model` to `export_dir` and return its absolute path.

    The model is written to a temporary directory beside `export_dir` and renamed into place
    when complete, so an existing export is replaced only by a finished one.
    """
    graph = ServingGraph(model, categories, data_config, eval_config, max_image_side)
    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint(IMAGES_SIGNATURE, graph.from_encoded,
                         input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
    archive.add_endpoint(TENSOR_SIGNATURE, graph.from_pixels, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)])
    archive.add_endpoint(CATEGORIES_SIGNATURE, graph.categories, input_signature=[])

    export_dir = os.path.abspath(export_dir)
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(export_dir)}-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        write_json(os.path.join(staging, ASSETS_DIR, CATEGORIES_ASSET),
                   [dict(c, color=_color(c)) for c in categories.categories], indent=2)
        _replace_directory(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return export_dir


def _replace_directory(source: str, target: str):
    """Rename `source` to `target`; an existing `target` is removed only once replaced."""
    if os.path.exists(target) and not os.path.isdir(target):
        raise FileExistsError(f"export directory {target} exists and is not a directory")
    if not os.path.exists(target):
        os.rename(source, target)
        return
    retired = tempfile.mkdtemp(prefix=f".old-{os.path.basename(target)}-",
                               dir=os.path.dirname(target))
    os.rmdir(retired)
    os.rename(target, retired)
    try:
        os.rename(source, target)
    except BaseException:
        os.rename(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _color(category: dict) -> list:
    """The category's RGB color, or a fixed one derived from its id when it has none."""
    if "color" in category:
        return [int(c) for c in category["color"]]
    return [(int(category["id"]) * m) % COLOR_LEVELS for m in COLOR_MULTIPLIERS]


class ServingGraph:
    """The TensorFlow functions behind the signatures (traced once by `ExportArchive`)."""

    def __init__(self, model, categories: CategoryMap, data_config: DataConfig,
                 eval_config: EvalConfig, max_image_side: int):
        if categories.num_things != model.num_things or categories.num_stuff != model.num_stuff:
            raise ValueError(
                f"categories ({categories.num_things} things, {categories.num_stuff} stuff) "
                f"do not match the model ({model.num_things} things, {model.num_stuff} stuff)")
        if tuple(data_config.padded_size) != tuple(model.image_size):
            raise ValueError(f"data.padded_size {tuple(data_config.padded_size)} differs from "
                             f"the model's image size {tuple(model.image_size)}")
        self.model = model
        self.categories_map = categories
        self.data_config = data_config
        self.merge_order = eval_config.merge_order
        self.predictor = PanopticPredictor(model, eval_config)
        self.max_image_side = int(max_image_side)
        self.num_segments = model.detections_per_image + model.num_stuff
        self.padded_size = tuple(int(s) for s in model.image_size)

    # ------------------------------------------------------------------------- signatures
    def from_encoded(self, images):
        """string [B] encoded images -> the outputs of the module docstring."""
        count = tf.shape(images)[0]
        indices = tf.range(count)
        # Undecodable items are dropped by ignore_errors and reported below by index: a
        # decode error alone would fail the call without saying which item was bad.
        dataset = tf.data.Dataset.from_tensor_slices((indices, images)).map(
            self._load_encoded, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.ignore_errors().batch(tf.cast(tf.maximum(count, 1), tf.int64))
        # When no item decodes, the batch above is missing: an empty one takes its place.
        nothing = tf.data.Dataset.from_tensors((
            tf.zeros([0], tf.int32), tf.zeros((0,) + self.padded_size + (3,), tf.float32),
            tf.zeros([0, 2], tf.int32), tf.zeros([0, 2], tf.int32)))
        dataset = dataset.concatenate(nothing).take(1)

        def run():
            loaded, pixels, image_size, original_size = dataset.get_single_element()
            decoded = tf.reduce_any(indices[:, tf.newaxis] == loaded[tf.newaxis, :], axis=1)
            first_bad = tf.argmin(tf.cast(decoded, tf.int32), output_type=tf.int32)
            undecodable = tf.debugging.Assert(tf.reduce_all(decoded), [tf.strings.format(
                "images[{}] is not a decodable JPEG, PNG, GIF or BMP image", first_bad)],
                name="check_decodable")
            with tf.control_dependencies([undecodable]):
                size_check = self._check_sizes(original_size)
            with tf.control_dependencies([size_check]):
                return self._predict(pixels, image_size, original_size)

        return tf.cond(count > 0, run, self._empty_outputs)

    def from_pixels(self, images):
        """uint8 [B, H, W, 3] -> the outputs of the module docstring."""
        count = tf.shape(images)[0]
        original_size = tf.tile(tf.shape(images)[tf.newaxis, 1:3], [count, 1])

        def run():
            with tf.control_dependencies([self._check_sizes(original_size)]):
                pixels, image_size = tf.map_fn(
                    self._resize, images, fn_output_signature=(
                        tf.TensorSpec(self.padded_size + (3,), tf.float32),
                        tf.TensorSpec([2], tf.int32)))
            return self._predict(pixels, image_size, original_size)

        return tf.cond(count > 0, run, self._empty_outputs)

    def categories(self):
        """-> ids int32 [C], names string [C], isthing bool [C], colors int32 [C, 3]."""
        cats = self.categories_map.categories
        return {"ids": tf.constant([c["id"] for c in cats], tf.int32),
                "names": tf.constant([c["name"] for c in cats], tf.string),
                "isthing": tf.constant([bool(c["isthing"]) for c in cats], tf.bool),
                "colors": tf.constant([_color(c) for c in cats], tf.int32)}

    # ---------------------------------------------------------------------- preprocessing
    def _load_encoded(self, index, data):
        """One encoded image -> (index, resized and padded float32 [H, W, 3], resized size
        [2], original size [2]); an image larger than allowed is not decoded, its header
        size is passed on for `_check_sizes` to report."""
        header_size = _header_size(data)
        too_large = tf.reduce_any(header_size > self.max_image_side)
        image = tf.cond(too_large, lambda: tf.zeros([1, 1, 3], tf.uint8),
                        lambda: _decode(data))
        original_size = tf.where(too_large, tf.cast(header_size, tf.int32),
                                 tf.shape(image)[:2])
        pixels, image_size = self._resize(image)
        return index, pixels, image_size, original_size

    def _resize(self, image):
        """uint8 [h, w, 3] -> float32 [H, W, 3] resized as the evaluation pipeline does
        (its `resized_size`, bilinear, no jitter) and zero-padded, int32 [2] size before
        padding."""
        shape = tf.shape(image)
        new_h, new_w = pipeline.resized_size(shape[0], shape[1], self.data_config)
        resized = tf.image.resize(image, [new_h, new_w], method="bilinear")
        padded = tf.pad(resized, [[0, self.padded_size[0] - new_h],
                                  [0, self.padded_size[1] - new_w], [0, 0]])
        return tf.ensure_shape(padded, self.padded_size + (3,)), tf.stack([new_h, new_w])

    def _check_sizes(self, original_size):
        """Assert every image side lies in [1, max_image_side]; the message names the item."""
        sides = tf.cast(original_size, tf.int64)
        valid = tf.reduce_all((sides >= 1) & (sides <= self.max_image_side), axis=1)
        first_bad = tf.argmin(tf.cast(valid, tf.int32), output_type=tf.int32)
        return tf.debugging.Assert(tf.reduce_all(valid), [tf.strings.format(
            "images[{}] is {}x{} pixels (height x width); each side must be between 1 and {} "
            "(export.max_image_side)", (first_bad, sides[first_bad, 0], sides[first_bad, 1],
                                        self.max_image_side))], name="check_image_size")

    # ---------------------------------------------------------------------- inference
    def _predict(self, pixels, image_size, original_size) -> dict:
        """Padded batch -> the outputs of the module docstring, at the original sizes."""
        _, merged = self.predictor(pixels, image_size, original_size)
        merged = merged[self.merge_order]
        panoptic = self._to_original_sizes(merged["panoptic"], image_size, original_size)

        # Area and box of every segment id, measured on the original-size maps.
        num_ids = self.num_segments + 1
        areas, boxes = segment_extents(tf.maximum(panoptic, VOID_ID), num_ids)
        segment_ids = merged["segment_ids"]
        area = tf.gather(areas, segment_ids, batch_dims=1)
        present = (segment_ids != VOID_ID) & (area > 0)
        compact = tf.argsort(tf.cast(~present, tf.int32), axis=1, stable=True)
        present = tf.gather(present, compact, batch_dims=1)

        def pick(values, fill):
            picked = tf.gather(values, compact, batch_dims=1)
            keep = present if picked.shape.rank == 2 else present[..., tf.newaxis]
            return tf.where(keep, picked, tf.cast(fill, picked.dtype))

        semantic_ids = tf.constant(self.categories_map.semantic_ids, tf.int32)
        category = merged["category"]
        category_ids = tf.where(category >= 0, tf.gather(semantic_ids, tf.maximum(category, 0)),
                                NO_CATEGORY)
        y1, x1, y2, x2 = tf.unstack(tf.gather(boxes, segment_ids, batch_dims=1), axis=-1)
        return {
            "panoptic": panoptic,
            "height": original_size[:, 0],
            "width": original_size[:, 1],
            "num_segments": tf.reduce_sum(tf.cast(present, tf.int32), axis=1),
            "segment_ids": pick(segment_ids, VOID_ID),
            "category_ids": pick(category_ids, NO_CATEGORY),
            "is_thing": pick(merged["is_thing"], False),
            "detection_scores": pick(merged["detection_score"], 0.0),
            "ranking_scores": pick(merged["ranking_score"], 0.0),
            "areas": pick(area, 0),
            "boxes": pick(tf.stack([x1, y1, x2 - x1, y2 - y1], axis=-1), 0.0),
        }

    def _to_original_sizes(self, panoptic, image_size, original_size):
        """[B, H, W] padded maps -> [B, Hmax, Wmax] at each original size, OUTSIDE_IMAGE
        beyond it."""
        largest = tf.reduce_max(original_size, axis=0)

        def restore(args):
            segments, size, original = args
            restored = to_original_size(segments, size, original)
            padding = tf.stack([[0, largest[0] - original[0]], [0, largest[1] - original[1]]])
            return tf.pad(restored, padding, constant_values=OUTSIDE_IMAGE)

        return tf.map_fn(restore, (panoptic, image_size, original_size),
                         fn_output_signature=tf.TensorSpec([None, None], tf.int32))

    def _empty_outputs(self) -> dict:
        """The outputs of an empty batch: every array with B = 0."""
        n = self.num_segments
        return {
            "panoptic": tf.zeros([0, 0, 0], tf.int32),
            "height": tf.zeros([0], tf.int32),
            "width": tf.zeros([0], tf.int32),
            "num_segments": tf.zeros([0], tf.int32),
            "segment_ids": tf.zeros([0, n], tf.int32),
            "category_ids": tf.zeros([0, n], tf.int32),
            "is_thing": tf.zeros([0, n], tf.bool),
            "detection_scores": tf.zeros([0, n], tf.float32),
            "ranking_scores": tf.zeros([0, n], tf.float32),
            "areas": tf.zeros([0, n], tf.int32),
            "boxes": tf.zeros([0, n, 4], tf.float32),
        }


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
    """(height, width) int64 [2] read from a JPEG or PNG header without decoding the pixels;
    UNKNOWN_SIZE for other formats (their size is checked after decoding)."""
    def png_size():
        raw = tf.io.decode_raw(tf.strings.substr(data, PNG_SIZE_OFFSET, PNG_SIZE_BYTES),
                               tf.uint8)
        width_height = tf.reduce_sum(tf.reshape(tf.cast(raw, tf.int64), [2, 4])
                                     * BIG_ENDIAN_WEIGHTS, axis=1)
        return tf.reverse(width_height, [0])

    is_png = tf.equal(tf.strings.substr(data, 0, len(PNG_SIGNATURE)), PNG_SIGNATURE)
    return tf.case([
        (tf.io.is_jpeg(data), lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)),
        (is_png, png_size)], default=lambda: tf.constant([UNKNOWN_SIZE] * 2, tf.int64))
