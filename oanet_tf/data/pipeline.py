"""The tf.data input pipeline: parallel decode, resize with scale jitter, flip, pad, batch.

Images are decoded by `PanopticDataset.load_example` (numpy, inside `tf.numpy_function`) on
several threads; the geometry runs as TensorFlow ops. Batches have the static shapes of the
table "A training batch" in docs/ARCHITECTURE.md. With a seed the output is reproducible:
element order is kept, and the random scale and flip of an element come from stateless ops
seeded by (seed, input pipeline, position in the stream).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from oanet_tf.config import DataConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.panoptic_format import IGNORE_LABEL

AUTOTUNE_SETTING = -1  # data.num_parallel_calls value meaning tf.data.AUTOTUNE
FLIP_PROBABILITY = 0.5

# What the decode step yields: name, dtype, shape (an image of any size).
_DECODED = (
    ("image", tf.uint8, [None, None, 3]),
    ("boxes", tf.float32, [None, 4]),
    ("classes", tf.int32, [None]),
    ("masks", tf.uint8, [None, None, None]),
    ("semantic", tf.int32, [None, None]),
    ("owner", tf.int32, [None, None]),
    ("image_id", tf.int64, []),
    ("original_size", tf.int32, [2]),
)
_PLACEHOLDER = {  # stands in for a skipped bad image until the filter drops it
    "image": np.zeros((1, 1, 3), np.uint8),
    "boxes": np.zeros((0, 4), np.float32),
    "classes": np.zeros((0,), np.int32),
    "masks": np.zeros((0, 1, 1), np.uint8),
    "semantic": np.zeros((1, 1), np.int32),
    "owner": np.zeros((1, 1), np.int32),
    "image_id": np.int64(0),
    "original_size": np.ones((2,), np.int32),
}


def build_dataset(dataset: PanopticDataset, data_config: DataConfig, training: bool,
                  batch_size: int, seed: int | None = 0,
                  input_context: tf.distribute.InputContext | None = None,
                  repeat: bool | None = None) -> tf.data.Dataset:
    """Batches of `dataset` as dicts (see docs/ARCHITECTURE.md, "A training batch"):
    images float32 [B, H, W, 3], gt_boxes float32 [B, M, 4], gt_classes int32 [B, M],
    gt_masks uint8 [B, M, H, W], gt_count int32 [B], semantic / owner int32 [B, H, W],
    image_id int64 [B], original_size / image_size int32 [B, 2]; (H, W) = padded_size,
    M = max_instances.

    Training shuffles, repeats (unless `repeat` says otherwise), jitters the scale, flips and
    drops the last partial batch (so B is static); evaluation keeps the files' order and
    every image. With `input_context` (tf.distribute) this pipeline reads its shard of the
    images and `batch_size` is the global batch, split over the replicas. `seed=None` gives
    fresh randomness and lets elements come out of order for speed.
    """
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    parallel = (tf.data.AUTOTUNE if data_config.num_parallel_calls == AUTOTUNE_SETTING
                else data_config.num_parallel_calls)
    deterministic = seed is not None
    if seed is None:
        seed = int(np.random.default_rng().integers(np.iinfo(np.int32).max))
    repeat = training if repeat is None else repeat

    ds = tf.data.Dataset.range(len(dataset))
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, pipeline_id)
    if training and data_config.shuffle_buffer > 1:
        ds = ds.shuffle(data_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(_decoder(dataset, data_config.max_instances), num_parallel_calls=parallel,
                deterministic=deterministic)
    if dataset.skip_bad_images:
        ds = ds.filter(lambda example: example["ok"])
    # The position in the stream seeds each element's augmentation.
    ds = ds.enumerate()
    augment = _augmenter(data_config, training, tf.constant([seed, pipeline_id], tf.int64))
    ds = ds.map(augment, num_parallel_calls=parallel, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------- decoding

def _keep_largest(example: dict, max_instances: int) -> dict:
    """At most `max_instances` instances: the largest by mask area, in their file order."""
    if len(example["classes"]) <= max_instances:
        return example
    areas = example["masks"].sum(axis=(1, 2), dtype=np.int64)
    keep = np.sort(np.argsort(-areas, kind="stable")[:max_instances])
    return {**example, "boxes": example["boxes"][keep], "classes": example["classes"][keep],
            "masks": example["masks"][keep]}


def _decoder(dataset: PanopticDataset, max_instances: int):
    """index -> decoded example dict (plus "ok": False for a skipped bad image)."""

    def decode_numpy(index):
        example = dataset.load_or_skip(int(index))
        ok = example is not None
        example = _keep_largest(example, max_instances) if ok else _PLACEHOLDER
        return tuple(example[name] for name, _, _ in _DECODED) + (np.bool_(ok),)

    def decode(index):
        values = tf.numpy_function(decode_numpy, [index],
                                   [dtype for _, dtype, _ in _DECODED] + [tf.bool])
        example = {"ok": tf.ensure_shape(values[-1], [])}
        for (name, _, shape), value in zip(_DECODED, values):
            example[name] = tf.ensure_shape(value, shape)
        return example

    return decode


# ---------------------------------------------------------------------------- geometry

def resized_size(height, width, data_config: DataConfig, jitter=1.0):
    """(new_h, new_w) int32 scalars: shorter side to short_side * jitter, longer side at
    most max_side * jitter, and never beyond padded_size (shrunk to fit, never cropped)."""
    padded_h, padded_w = data_config.padded_size
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = tf.minimum(data_config.short_side / tf.minimum(h, w),
                       data_config.max_side / tf.maximum(h, w)) * tf.cast(jitter, tf.float64)
    scale = tf.minimum(scale, tf.minimum(padded_h / h, padded_w / w))
    new_h = tf.clip_by_value(tf.cast(tf.floor(h * scale + 0.5), tf.int32), 1, padded_h)
    new_w = tf.clip_by_value(tf.cast(tf.floor(w * scale + 0.5), tf.int32), 1, padded_w)
    return new_h, new_w


def _nearest_indices(in_size, out_size):
    """[out_size] int32 source index of each output pixel, floor((i + 0.5) * in / out)
    computed in integers (pixel centres, as tf.image.resize's nearest neighbour)."""
    i = tf.range(out_size, dtype=tf.int64)
    return tf.cast((2 * i + 1) * tf.cast(in_size, tf.int64) // (2 * tf.cast(out_size, tf.int64)),
                   tf.int32)


def _resize_nearest(x, rows, cols, row_axis: int):
    """Nearest-neighbour resize of x along (row_axis, row_axis + 1); any dtype, any count
    of leading masks (including none)."""
    return tf.gather(tf.gather(x, rows, axis=row_axis), cols, axis=row_axis + 1)


def _augmenter(data_config: DataConfig, training: bool, base_seed):
    """(position, decoded example) -> padded example with the batch keys."""
    padded_h, padded_w = data_config.padded_size
    max_instances = data_config.max_instances
    low, high = data_config.scale_jitter
    jitter_scale = training and (low, high) != (1.0, 1.0)
    flip = training and data_config.horizontal_flip

    def augment(position, example):
        seed = tf.random.experimental.stateless_fold_in(base_seed, position)
        jitter_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        jitter = (tf.random.stateless_uniform([], jitter_seed, low, high, tf.float64)
                  if jitter_scale else 1.0)
        height, width = example["original_size"][0], example["original_size"][1]
        new_h, new_w = resized_size(height, width, data_config, jitter)

        image = tf.image.resize(example["image"], [new_h, new_w], method="bilinear")
        rows, cols = _nearest_indices(height, new_h), _nearest_indices(width, new_w)
        semantic = _resize_nearest(example["semantic"], rows, cols, 0)
        owner = _resize_nearest(example["owner"], rows, cols, 0)
        masks = _resize_nearest(example["masks"], rows, cols, 1)
        ratio_y = tf.cast(new_h, tf.float32) / tf.cast(height, tf.float32)
        ratio_x = tf.cast(new_w, tf.float32) / tf.cast(width, tf.float32)
        boxes = example["boxes"] * tf.stack([ratio_y, ratio_x, ratio_y, ratio_x])
        # An instance too small to survive the resize has no mask left: drop it.
        keep = tf.reduce_any(masks > 0, axis=[1, 2])
        boxes, masks = tf.boolean_mask(boxes, keep), tf.boolean_mask(masks, keep)
        classes = tf.boolean_mask(example["classes"], keep)

        if flip:
            flipped = tf.random.stateless_uniform([], flip_seed) < FLIP_PROBABILITY
            image, semantic, owner, masks, boxes = tf.cond(
                flipped,
                lambda: (tf.reverse(image, [1]), tf.reverse(semantic, [1]),
                         tf.reverse(owner, [1]), tf.reverse(masks, [2]),
                         _flip_boxes(boxes, new_w)),
                lambda: (image, semantic, owner, masks, boxes))

        pad_h, pad_w = padded_h - new_h, padded_w - new_w
        count = tf.shape(classes)[0]
        pad_n = max_instances - count
        batch = {
            "images": tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]]),
            "gt_boxes": tf.pad(boxes, [[0, pad_n], [0, 0]]),
            "gt_classes": tf.pad(classes, [[0, pad_n]]),
            "gt_masks": tf.pad(masks, [[0, pad_n], [0, pad_h], [0, pad_w]]),
            "gt_count": count,
            "semantic": tf.pad(semantic, [[0, pad_h], [0, pad_w]], constant_values=IGNORE_LABEL),
            "owner": tf.pad(owner, [[0, pad_h], [0, pad_w]], constant_values=IGNORE_LABEL),
            "image_id": example["image_id"],
            "original_size": example["original_size"],
            "image_size": tf.stack([new_h, new_w]),
        }
        shapes = {"images": [padded_h, padded_w, 3], "gt_boxes": [max_instances, 4],
                  "gt_classes": [max_instances], "gt_masks": [max_instances, padded_h, padded_w],
                  "gt_count": [], "semantic": [padded_h, padded_w], "owner": [padded_h, padded_w],
                  "image_id": [], "original_size": [2], "image_size": [2]}
        return {key: tf.ensure_shape(value, shapes[key]) for key, value in batch.items()}

    return augment


def _flip_boxes(boxes, width):
    """Mirror (y1, x1, y2, x2) boxes [n, 4] in an image `width` pixels wide."""
    width = tf.cast(width, boxes.dtype)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
    return tf.stack([y1, width - x2, y2, width - x1], axis=1)
