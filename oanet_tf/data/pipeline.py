"""The tf.data input pipeline: decode, resize with scale jitter, flip, pad, batch.

Two sources give the same batches. A `PanopticDataset` streams image indices, decoded by
`load_example` (numpy, inside `tf.numpy_function`) on several threads; a `TFRecordSource`
streams records, decoded by `parse_example` in TensorFlow ops. The geometry runs as
TensorFlow ops. Batches have the static shapes of the table "A training batch" in
docs/ARCHITECTURE.md.

With a seed the output is reproducible and resumable: each epoch's shuffle is seeded by
(seed, epoch), and the random scale and flip of an element by (seed, input pipeline, its
position in the stream before decoding). So a pipeline built with `start_batch=k` starts
directly at the epoch holding batch k, steps over that epoch's earlier items on the cheap
index/record stream (records are read, never decoded), and yields exactly what a fresh
pipeline yields from batch k on.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from oanet_tf.config import DataConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.data.tfrecords import (EXAMPLE_SPEC, READ_BUFFER_BYTES, TFRecordSource,
                                     parse_example)
from oanet_tf.errors import DatasetError

AUTOTUNE_SETTING = -1  # data.num_parallel_calls value meaning tf.data.AUTOTUNE
FLIP_PROBABILITY = 0.5
# Graph-level seed of the per-epoch shuffle: with it fixed, the order depends on `seed` and
# the epoch only, not on the process's global seed.
SHUFFLE_GRAPH_SEED = 1

_PLACEHOLDER = {  # stands in for a skipped bad image until the filter drops it
    "image": np.zeros((1, 1, 3), np.uint8),
    "boxes": np.zeros((0, 4), np.float32),
    "classes": np.zeros((0,), np.int32),
    "masks": np.zeros((0, 1, 1), np.uint8),
    "semantic": np.zeros((1, 1), np.int32),
    "owner": np.zeros((1, 1), np.int32),
    "image_id": np.int64(0),
    "original_size": np.ones((2,), np.int32),
    "panoptic": np.zeros((1, 1), np.int32),
}
# The PNG's segment ids, decoded with the example when evaluation needs the ground truth.
PANOPTIC_SPEC = ("panoptic", tf.int32, [None, None])
# Batch key -> decoded example key of the ground truth at the original size (evaluation).
ORIGINAL_KEYS = {"original_image": "image", "original_panoptic": "panoptic",
                 "original_masks": "masks", "original_classes": "classes"}


def build_dataset(source: PanopticDataset | TFRecordSource, data_config: DataConfig,
                  training: bool, batch_size: int, seed: int | None = 0,
                  input_context: tf.distribute.InputContext | None = None,
                  repeat: bool | None = None, start_batch: int = 0,
                  ground_truth: bool = False) -> tf.data.Dataset:
    """Batches of `source` as dicts (see docs/ARCHITECTURE.md, "A training batch"):
    images float32 [B, H, W, 3], gt_boxes float32 [B, M, 4], gt_classes int32 [B, M],
    gt_masks uint8 [B, M, H, W], gt_count int32 [B], semantic / owner int32 [B, H, W],
    image_id int64 [B], original_size / image_size int32 [B, 2]; (H, W) = padded_size,
    M = max_instances.

    `source` is a `PanopticDataset` (COCO files) or a `TFRecordSource` (converted shards);
    both give identical batches. Training shuffles, repeats (unless `repeat` says
    otherwise), jitters the scale, flips and drops the last partial batch (so B is static);
    evaluation keeps the files' order and every image. With `input_context` (tf.distribute)
    this pipeline reads its share of the images (COCO: every n-th image; TFRecords: every
    n-th shard file) and `batch_size` is the global batch, split over the replicas.
    `seed=None` gives fresh randomness and lets elements come out of order for speed.

    `start_batch`: batches this pipeline already produced in an earlier run with the same
    arguments (resuming after a crash; under tf.distribute a step takes
    num_replicas_in_sync / num_input_pipelines batches from each pipeline, so steps done
    times that); the dataset continues exactly where that run left off, without decoding
    the skipped images. Exact as long as no image failed to decode in
    the skipped part (a COCO source skipping bad images filters them after decoding, so
    each one there makes the resumed stream start one image early).

    `ground_truth` (evaluation of a `PanopticDataset`): each batch also carries what the image
    is scored against, at the original size, from the same decoding of the files (so
    evaluation reads each image and PNG once): original_image uint8 [B, h, w, 3],
    original_panoptic int32 [B, h, w] (the PNG's segment ids), original_masks uint8
    [B, n, h, w] and original_classes int32 [B, n] (every instance, not only the largest
    max_instances); padded with zeros to the batch's largest (crop with original_size; class
    0 marks a padding instance).
    """
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    if ground_truth and (training or not isinstance(source, PanopticDataset)):
        raise ValueError("ground_truth is for evaluating a PanopticDataset (it reads the PNGs)")
    if start_batch and seed is None:
        raise ValueError("start_batch needs a fixed seed: without one the earlier run's "
                         "order cannot be reproduced")
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    num_pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    parallel = (tf.data.AUTOTUNE if data_config.num_parallel_calls == AUTOTUNE_SETTING
                else data_config.num_parallel_calls)
    deterministic = seed is not None
    if seed is None:
        seed = int(np.random.default_rng().integers(np.iinfo(np.int32).max))
    repeat = training if repeat is None else repeat

    if isinstance(source, TFRecordSource):
        files, epoch_length = source.shard_files(num_pipelines, pipeline_id)
        items = tf.data.TFRecordDataset(files, buffer_size=READ_BUFFER_BYTES)
        decode = parse_example
        filter_bad = False
    else:
        items = tf.data.Dataset.range(len(source))
        if num_pipelines > 1:
            items = items.shard(num_pipelines, pipeline_id)
        epoch_length = len(range(pipeline_id, len(source), num_pipelines))
        decode = index_decoder(source, with_panoptic=ground_truth)
        filter_bad = source.skip_bad_images

    if repeat and epoch_length == 0:
        raise DatasetError(f"input pipeline {pipeline_id} of {num_pipelines} gets no image "
                           f"({len(source)} in all): nothing to repeat")
    skipped = start_batch * batch_size
    first_epoch = skipped // epoch_length if repeat and epoch_length else 0
    epochs = (tf.data.Dataset.counter(first_epoch) if repeat
              else tf.data.Dataset.range(first_epoch, first_epoch + 1))
    shuffle_buffer = data_config.shuffle_buffer if training else 0
    ds = epochs.flat_map(_epoch_stream(items, shuffle_buffer, seed))
    # The position in the stream, counted before anything is skipped or decoded, seeds each
    # element's augmentation.
    ds = ds.enumerate(start=first_epoch * epoch_length)
    if skipped > first_epoch * epoch_length:
        ds = ds.skip(skipped - first_epoch * epoch_length)
    process = _processor(decode, data_config, training,
                         tf.constant([seed, pipeline_id], tf.int64), keep_ok=filter_bad,
                         ground_truth=ground_truth)
    ds = ds.map(process, num_parallel_calls=parallel, deterministic=deterministic)
    if filter_bad:
        ds = ds.filter(lambda example: example["ok"]).map(
            lambda example: {k: v for k, v in example.items() if k != "ok"})
    if ground_truth:  # images of several sizes: padded to the largest
        ds = ds.padded_batch(batch_size, drop_remainder=training)
    else:
        ds = ds.batch(batch_size, drop_remainder=training)
    if not repeat and not filter_bad:
        # The per-epoch stream hides the length; Keras needs it to end an evaluation quietly.
        remaining = max(epoch_length - skipped, 0)
        batches = remaining // batch_size if training else -(-remaining // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds.prefetch(tf.data.AUTOTUNE)


def _epoch_stream(items: tf.data.Dataset, shuffle_buffer: int, seed: int):
    """epoch -> the items of that epoch, shuffled (buffer > 1) with a seed drawn from
    (seed, epoch), so any epoch can be started without replaying the ones before."""

    def stream(epoch):
        if shuffle_buffer <= 1:
            return items
        tf.random.set_seed(SHUFFLE_GRAPH_SEED)  # inside this function's graph only
        epoch_seed = tf.random.stateless_uniform(
            [], tf.stack([tf.constant(seed, tf.int64), epoch]), minval=None, maxval=None,
            dtype=tf.int64)
        return items.shuffle(shuffle_buffer, seed=epoch_seed)

    return stream


def _processor(decode, data_config: DataConfig, training: bool, base_seed, keep_ok: bool,
               ground_truth: bool):
    """(position, index or record) -> padded example with the batch keys (plus "ok" with
    `keep_ok`, False for a skipped bad image; plus ORIGINAL_KEYS with `ground_truth`)."""
    augment = _augmenter(data_config, training, base_seed)

    def process(position, item):
        example = decode(item)
        output = augment(position, _keep_largest(example, data_config.max_instances))
        if keep_ok:
            output["ok"] = example["ok"]
        if ground_truth:
            output.update({key: example[name] for key, name in ORIGINAL_KEYS.items()})
        return output

    return process


# ---------------------------------------------------------------------------- decoding

def _keep_largest(example: dict, max_instances: int) -> dict:
    """At most `max_instances` instances: the largest by mask area (ties: the earlier), in
    their file order; boxes [m, 4], classes [m], masks [m, h, w]."""
    boxes, classes, masks = example["boxes"], example["classes"], example["masks"]

    def largest():
        areas = tf.math.count_nonzero(masks, axis=[1, 2])
        keep = tf.sort(tf.argsort(-areas, stable=True)[:max_instances])
        return tf.gather(boxes, keep), tf.gather(classes, keep), tf.gather(masks, keep)

    boxes, classes, masks = tf.cond(tf.shape(classes)[0] > max_instances, largest,
                                    lambda: (boxes, classes, masks))
    return {**example, "boxes": boxes, "classes": classes, "masks": masks}


def index_decoder(dataset: PanopticDataset, with_panoptic: bool = False):
    """index -> decoded example dict (EXAMPLE_SPEC, plus PANOPTIC_SPEC with `with_panoptic`,
    plus "ok": False for a skipped bad image)."""
    spec = EXAMPLE_SPEC + ((PANOPTIC_SPEC,) if with_panoptic else ())

    def decode_numpy(index):
        example = dataset.load_or_skip(int(index), with_panoptic)
        ok = example is not None
        example = example if ok else _PLACEHOLDER
        return tuple(example[name] for name, _, _ in spec) + (np.bool_(ok),)

    def decode(index):
        values = tf.numpy_function(decode_numpy, [index],
                                   [dtype for _, dtype, _ in spec] + [tf.bool])
        example = {"ok": tf.ensure_shape(values[-1], [])}
        for (name, _, shape), value in zip(spec, values):
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


def _resize_nearest(x, rows, cols):
    """Nearest-neighbour resize of the last two axes, [..., H, W] -> [..., h, w], any dtype
    (labels, or any count of masks). The columns are gathered with W moved to the front,
    where each gathered slice is a contiguous block instead of a single element (several
    times faster on full-size masks)."""
    rank = x.shape.rank
    columns_first = tf.transpose(x, [rank - 1] + list(range(rank - 1)))  # [W, ..., H]
    picked = tf.gather(columns_first, cols, axis=0)  # [w, ..., H]
    return tf.gather(tf.transpose(picked, list(range(1, rank)) + [0]), rows, axis=rank - 2)


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
        semantic = _resize_nearest(example["semantic"], rows, cols)
        owner = _resize_nearest(example["owner"], rows, cols)
        masks = _resize_nearest(example["masks"], rows, cols)
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
