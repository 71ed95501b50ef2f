"""The tf.data input pipeline: decode, resize with scale jitter, flip, group, batch, pad.

It reads any `source.Source`: the COCO files (`PanopticDataset`: image indices, decoded by
`load_example` in numpy inside `tf.numpy_function` on several threads) or converted shards
(`TFRecordSource`: records, decoded by `parse_example` in TensorFlow ops); both give the same
batches. The geometry runs as TensorFlow ops. Batches have the shapes of the table "A
training batch" in docs/ARCHITECTURE.md: each is padded to its own images
(`image_sizes.padded_size`).

Grouping: the cheap stream (items, before decoding) is cut into chunks of GROUP_BATCHES
batches at fixed stream positions, and each chunk is stably reordered by a key known without
decoding (orientation from the image's size, or with `data.buckets` the bucket of its
resized size), so a batch holds one kind of image except the few made of the chunk's
leftovers.

Order: training reads each epoch in a new order seeded by (seed, epoch), so any epoch can be
started without replaying the ones before: a full permutation (`epoch_order`) of the
pipeline's members, which are the images of COCO files and the shard files of TFRecords
(read in sequence: TFRECORD_CYCLE_LENGTH files at once, one record from each in turn, and
`data.shuffle_buffer` records mixed further; shards hold consecutive images of the split, so
with one image per shard both sources give one order). Evaluation reads the files' order.
With an input context (tf.distribute) each input pipeline reads every n-th member.

The output is reproducible and resumable: the random scale and flip of an element are seeded
by (seed, input pipeline, its position in the stream before grouping). So a pipeline built
with `start_batch=k` starts directly at the chunk holding batch k (in the epoch holding that
chunk), reorders it, steps over its earlier batches on the cheap stream (records are read,
never decoded), and yields exactly what a fresh pipeline yields from batch k on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from oanet_tf.config import AUTOTUNE_SETTING, DataConfig
from oanet_tf.data.image_sizes import bucket_index, pad_images, padded_size, resized_size
from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.data.source import Source
from oanet_tf.errors import DatasetError, failed_assertion

FLIP_PROBABILITY = 0.5
# Batches per grouping chunk. A chunk mixes groups in at most (groups - 1) of its batches: a
# longer chunk mixes a smaller share, but holds more items (records, for a TFRecordSource)
# in memory and delays the first batch.
GROUP_BATCHES = 16
# Group keys without buckets: landscape (height <= width) or portrait.
LANDSCAPE, PORTRAIT = 0, 1
ORIENTATIONS = 2
# Batch key -> decoded example key of the ground truth at the original size (evaluation).
ORIGINAL_KEYS = {"original_image": "image", "original_panoptic": "panoptic",
                 "original_masks": "masks", "original_classes": "classes"}


def build_dataset(source: Source, data_config: DataConfig, training: bool, batch_size: int,
                  seed: int | None = 0, input_context: tf.distribute.InputContext | None = None,
                  repeat: bool | None = None, start_batch: int = 0,
                  ground_truth: bool = False) -> tf.data.Dataset:
    """Batches of `source` as dicts (see docs/ARCHITECTURE.md, "A training batch"):
    images float32 [B, H, W, 3], gt_boxes float32 [B, M, 4], gt_classes int32 [B, M],
    gt_masks uint8 [B, M, H, W], gt_count int32 [B], semantic / owner int32 [B, H, W]
    (IGNORE_LABEL in the padding), image_id int64 [B], original_size / image_size int32
    [B, 2]. (H, W) = `image_sizes.padded_size` of the batch's image sizes (with data.buckets
    the smallest bucket holding them). M: the most instances of an image in the batch (at
    least 1), or max_instances with buckets (static, as XLA wants).

    Training shuffles each epoch, repeats (unless `repeat` says otherwise), jitters the
    scale, flips and drops the last partial batch (so B is static); evaluation keeps every
    image, in the files' order within each group of a chunk (module docstring). With
    `input_context` `batch_size` is the global batch, split over the replicas. `seed=None`
    draws a fresh seed (the order stays deterministic: grouping needs it).

    `start_batch`: batches this pipeline already produced in an earlier run with the same
    arguments (resuming; under tf.distribute a step takes num_replicas_in_sync /
    num_input_pipelines batches from each pipeline); the dataset continues exactly where
    that run left off, without decoding the skipped images. Exact as long as no image failed
    to decode: a skipped bad image is filtered after grouping and decoding, so it shifts the
    batches after it by one image, and one in the skipped part makes the resumed stream
    start one image early.

    `ground_truth` (evaluation): each batch also carries what the image is scored against,
    at the original size, from the same decoding: original_image uint8 [B, h, w, 3],
    original_panoptic int32 [B, h, w] (segment ids), original_masks uint8 [B, n, h, w] and
    original_classes int32 [B, n] (every instance); zero-padded to the batch's largest
    (crop with original_size; class 0 marks a padding instance).
    """
    _check_arguments(training, seed, start_batch, ground_truth)
    plan = _plan(source, data_config, training, batch_size, seed, input_context, repeat,
                 start_batch)
    ds = _item_stream(source, plan, data_config.shuffle_buffer)
    ds = _grouped(ds, _group_key(source.image_size, data_config, training, plan.base_seed),
                  _num_groups(data_config), plan.batch_size, plan.parallel)
    ds = ds.skip(start_batch % GROUP_BATCHES * plan.batch_size)
    ds = _examples(ds, source, data_config, plan, ground_truth)
    return _batched(ds, data_config, plan, source.skip_bad_images).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one input pipeline reads, settled before any dataset is built."""

    training: bool
    repeat: bool
    batch_size: int  # per replica
    seed: int
    pipeline_id: int
    parallel: int  # tf.data's num_parallel_calls
    members: tf.Tensor  # this pipeline's share of the source's members
    epoch_length: int  # images in that share
    start_batch: int

    @property
    def base_seed(self) -> tf.Tensor:
        return tf.constant([self.seed, self.pipeline_id], tf.int64)

    @property
    def chunk_start(self) -> int:
        """Stream position of the chunk holding batch start_batch: batch k lies in chunk
        k // GROUP_BATCHES, which starts at a fixed position."""
        return self.start_batch // GROUP_BATCHES * GROUP_BATCHES * self.batch_size

    @property
    def first_epoch(self) -> int:
        """The epoch holding chunk_start."""
        return self.chunk_start // self.epoch_length if self.repeat and self.epoch_length else 0


def _check_arguments(training: bool, seed, start_batch: int, ground_truth: bool):
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    if ground_truth and training:
        raise ValueError("ground_truth is for evaluation (it decodes the segment ids)")
    if start_batch and seed is None:
        raise ValueError("start_batch needs a fixed seed: without one the earlier run's "
                         "order cannot be reproduced")


def _plan(source: Source, data_config: DataConfig, training: bool, batch_size: int, seed,
          input_context, repeat, start_batch: int) -> _Plan:
    """The per-replica batch, this pipeline's share of the members, the resolved seed and
    repeat; refuses a repeated share without images."""
    num_pipelines, pipeline_id = 1, 0
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
    members, epoch_length = source.pipeline_share(num_pipelines, pipeline_id)
    repeat = training if repeat is None else repeat
    if repeat and epoch_length == 0:
        raise DatasetError(f"input pipeline {pipeline_id} of {num_pipelines} gets no image "
                           f"({len(source)} in all): nothing to repeat")
    if seed is None:
        seed = int(np.random.default_rng().integers(np.iinfo(np.int32).max))
    parallel = (tf.data.AUTOTUNE if data_config.num_parallel_calls == AUTOTUNE_SETTING
                else data_config.num_parallel_calls)
    return _Plan(training=training, repeat=repeat, batch_size=batch_size, seed=seed,
                 pipeline_id=pipeline_id, parallel=parallel, members=members,
                 epoch_length=epoch_length, start_batch=start_batch)


def _item_stream(source: Source, plan: _Plan, shuffle_buffer: int) -> tf.data.Dataset:
    """(position, item) pairs from the chunk holding batch start_batch on, epoch after epoch
    (one epoch unless repeating); the position in the stream, counted before anything is
    skipped, grouped or decoded, seeds each element's augmentation."""
    first_epoch = plan.first_epoch
    epochs = (tf.data.Dataset.counter(first_epoch) if plan.repeat
              else tf.data.Dataset.range(first_epoch, first_epoch + 1))
    ds = epochs.flat_map(_epoch_stream(source, plan.members, plan.training, shuffle_buffer,
                                       plan.seed))
    ds = ds.enumerate(start=first_epoch * plan.epoch_length)
    if plan.chunk_start > first_epoch * plan.epoch_length:
        ds = ds.skip(plan.chunk_start - first_epoch * plan.epoch_length)
    return ds


def epoch_order(count: int, seed: int, epoch) -> tf.Tensor:
    """int64 [count]: a permutation of 0..count-1 drawn from (seed, epoch) alone."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), key)


def _epoch_stream(source: Source, members, shuffle: bool, shuffle_buffer: int, seed: int):
    """epoch -> the items of that epoch: of the `members` in `epoch_order` when shuffling
    (the source mixes further with `shuffle_buffer`), else in their order."""
    count = int(members.shape[0])

    def stream(epoch):
        if not shuffle:
            return source.epoch_items(tf.data.Dataset.from_tensor_slices(members), None,
                                      shuffle_buffer)
        ordered = tf.data.Dataset.from_tensor_slices(
            tf.gather(members, epoch_order(count, seed, epoch)))
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        return source.epoch_items(ordered, key, shuffle_buffer)

    return stream


def _examples(ds: tf.data.Dataset, source: Source, data_config: DataConfig, plan: _Plan,
              ground_truth: bool) -> tf.data.Dataset:
    """(position, item) -> augmented examples, unpadded; bad images dropped where the
    source skips them."""
    process = _processor(source.decoder(ground_truth), data_config, plan.training,
                         plan.base_seed, keep_ok=source.skip_bad_images,
                         ground_truth=ground_truth)
    ds = ds.map(process, num_parallel_calls=plan.parallel, deterministic=True)
    if source.skip_bad_images:
        ds = ds.filter(lambda example: example["ok"]).map(
            lambda example: {k: v for k, v in example.items() if k != "ok"})
    return ds


def _batched(ds: tf.data.Dataset, data_config: DataConfig, plan: _Plan,
             filter_bad: bool) -> tf.data.Dataset:
    """Examples -> padded batches (the last partial one dropped when training); without
    repeating or filtering, with the batch count declared for Keras."""
    ds = ds.padded_batch(plan.batch_size, padding_values=_padding_values(ds.element_spec),
                         drop_remainder=plan.training)
    ds = ds.map(_batch_padder(data_config), num_parallel_calls=plan.parallel,
                deterministic=True)
    if not plan.repeat and not filter_bad:
        # The per-epoch stream hides the length; Keras needs it to end an evaluation quietly.
        remaining = max(plan.epoch_length - plan.start_batch * plan.batch_size, 0)
        batches = (remaining // plan.batch_size if plan.training
                   else -(-remaining // plan.batch_size))
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds


# ---------------------------------------------------------------------------- grouping

def _num_groups(data_config: DataConfig) -> int:
    return len(data_config.buckets) if data_config.buckets else ORIENTATIONS


def _group_key(size_of, data_config: DataConfig, training: bool, base_seed):
    """(position, item) -> int32 group, from the image's size before decoding (`size_of`:
    item -> int32 [2]): the bucket of its resized size (the jitter the augmenter will draw)
    with buckets, else LANDSCAPE or PORTRAIT."""

    def key(position, item):
        size = size_of(item)
        if not data_config.buckets:
            return tf.where(size[0] > size[1], PORTRAIT, LANDSCAPE)
        jitter = _scale_jitter(data_config, training, base_seed, position)
        new_h, new_w = resized_size(size[0], size[1], data_config, jitter)
        return bucket_index(tf.stack([new_h, new_w]), data_config.buckets)

    return key


def group_order(keys, num_groups: int, batch_size: int):
    """keys int32 [n] in 0..num_groups-1 -> int32 [n], the stable reordering that puts each
    group's whole batches first (groups in key order), then the leftovers (in key order),
    so at most num_groups - 1 batches of batch_size mix groups."""
    one_hot = tf.one_hot(keys, num_groups, dtype=tf.int32)  # [n, K]
    rank = tf.reduce_sum(tf.cumsum(one_hot, axis=0, exclusive=True) * one_hot, axis=1)
    whole = tf.reduce_sum(one_hot, axis=0) // batch_size * batch_size  # [K]
    leftover = tf.cast(rank >= tf.gather(whole, keys), tf.int32)
    return tf.argsort(leftover * num_groups + keys, stable=True)


def _grouped(ds: tf.data.Dataset, key, num_groups: int, batch_size: int, parallel):
    """(position, item) stream starting at a chunk boundary -> the same pairs, each chunk of
    GROUP_BATCHES * batch_size reordered by `group_order` of its keys."""
    ds = ds.map(lambda position, item: (position, item, key(position, item)),
                num_parallel_calls=parallel, deterministic=True)

    def reorder(positions, items, keys):
        order = group_order(keys, num_groups, batch_size)
        return tf.gather(positions, order), tf.gather(items, order)

    # One chunk prepared ahead, so reading the next one does not stall decoding.
    return ds.batch(GROUP_BATCHES * batch_size).map(reorder).prefetch(1).unbatch()


def _processor(decode, data_config: DataConfig, training: bool, base_seed, keep_ok: bool,
               ground_truth: bool):
    """(position, index or record) -> augmented example with the batch keys, unpadded
    (plus "ok" with `keep_ok`, False for a skipped bad image; plus ORIGINAL_KEYS with
    `ground_truth`)."""
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


# ---------------------------------------------------------------------------- batching

_LABEL_KEYS = ("semantic", "owner")  # padded with IGNORE_LABEL, everything else with 0


def _padding_values(element_spec: dict) -> dict:
    """padded_batch's padding value of each key of `element_spec`."""
    return {key: tf.constant(IGNORE_LABEL if key in _LABEL_KEYS else 0, spec.dtype)
            for key, spec in element_spec.items()}


def _batch_padder(data_config: DataConfig):
    """A batch padded to its largest image and instance count -> padded to
    `padded_size(image_size, buckets)` and M instances (see `build_dataset`)."""
    buckets, max_instances = data_config.buckets, data_config.max_instances

    def pad(batch):
        target = padded_size(batch["image_size"], buckets)  # [2]
        pad_h = target[0] - tf.shape(batch["images"])[1]
        pad_w = target[1] - tf.shape(batch["images"])[2]
        count = tf.shape(batch["gt_classes"])[1]
        pad_n = (max_instances if buckets else tf.maximum(count, 1)) - count
        out = dict(batch)
        out["images"] = pad_images(batch["images"], pad_h, pad_w, batch["image_size"],
                                   data_config.pad_value)
        out["gt_boxes"] = tf.pad(batch["gt_boxes"], [[0, 0], [0, pad_n], [0, 0]])
        out["gt_classes"] = tf.pad(batch["gt_classes"], [[0, 0], [0, pad_n]])
        out["gt_masks"] = tf.pad(batch["gt_masks"], [[0, 0], [0, pad_n], [0, pad_h], [0, pad_w]])
        for key in _LABEL_KEYS:
            out[key] = tf.pad(batch[key], [[0, 0], [0, pad_h], [0, pad_w]],
                              constant_values=IGNORE_LABEL)
        if buckets:  # static where known: M always, (H, W) when one bucket is all there is
            side = buckets[0] if len(buckets) == 1 else (None, None)
            shapes = {"images": [*side, 3], "gt_boxes": [max_instances, 4],
                      "gt_classes": [max_instances], "gt_masks": [max_instances, *side],
                      "semantic": list(side), "owner": list(side)}
            out.update({key: tf.ensure_shape(out[key], [None] + shape)
                        for key, shape in shapes.items()})
        return out

    return pad


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


def batches(dataset: tf.data.Dataset):
    """Iterate `dataset`; an input check that fails inside it (a bad image of the COCO
    files) ends the iteration with a DatasetError carrying its message, raised
    once the iterator and TensorFlow's error are released."""
    iterator = iter(dataset)
    while True:
        problem = None
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as err:
            problem = failed_assertion(err.message)
            if problem is None:
                raise
        if problem is not None:
            del iterator
            raise DatasetError(problem)
        yield batch


# ---------------------------------------------------------------------------- geometry

def _element_seeds(base_seed, position):
    """(jitter seed, flip seed) of the element at stream `position`."""
    seed = tf.random.experimental.stateless_fold_in(base_seed, position)
    return tf.unstack(tf.random.experimental.stateless_split(seed, 2))


def _scale_jitter(data_config: DataConfig, training: bool, base_seed, position):
    """float64 scale factor of the element at `position`: uniform in scale_jitter when
    training, else 1. The augmenter and the bucket grouping both draw it here."""
    low, high = data_config.scale_jitter
    if not training or (low, high) == (1.0, 1.0):
        return tf.constant(1.0, tf.float64)
    jitter_seed, _ = _element_seeds(base_seed, position)
    return tf.random.stateless_uniform([], jitter_seed, low, high, tf.float64)


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
    """(position, decoded example) -> example with the batch keys at its resized size
    (h, w): images [h, w, 3], gt_boxes [m, 4], gt_classes [m], gt_masks [m, h, w],
    semantic / owner [h, w]; padding happens when batching."""
    flip = training and data_config.horizontal_flip

    def augment(position, example):
        jitter = _scale_jitter(data_config, training, base_seed, position)
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
            _, flip_seed = _element_seeds(base_seed, position)
            flipped = tf.random.stateless_uniform([], flip_seed) < FLIP_PROBABILITY
            image, semantic, owner, masks, boxes = tf.cond(
                flipped,
                lambda: (tf.reverse(image, [1]), tf.reverse(semantic, [1]),
                         tf.reverse(owner, [1]), tf.reverse(masks, [2]),
                         _flip_boxes(boxes, new_w)),
                lambda: (image, semantic, owner, masks, boxes))

        return {
            "images": image,
            "gt_boxes": boxes,
            "gt_classes": classes,
            "gt_masks": masks,
            "gt_count": tf.shape(classes)[0],
            "semantic": semantic,
            "owner": owner,
            "image_id": example["image_id"],
            "original_size": example["original_size"],
            "image_size": tf.stack([new_h, new_w]),
        }

    return augment


def _flip_boxes(boxes, width):
    """Mirror (y1, x1, y2, x2) boxes [n, 4] in an image `width` pixels wide."""
    width = tf.cast(width, boxes.dtype)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
    return tf.stack([y1, width - x2, y2, width - x1], axis=1)
