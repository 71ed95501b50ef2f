"""The tf.data input pipeline: decode, resize with scale jitter, flip, group, batch, pad.

Two sources give the same batches. A `PanopticDataset` streams image indices, decoded by
`load_example` (numpy, inside `tf.numpy_function`) on several threads; a `TFRecordSource`
streams records, decoded by `parse_example` in TensorFlow ops. The geometry runs as
TensorFlow ops. Batches have the shapes of the table "A training batch" in
docs/ARCHITECTURE.md: each is padded to its own images (`image_sizes.padded_size`).

Grouping: the cheap stream (indices or records, before decoding) is cut into chunks of
GROUP_BATCHES batches at fixed stream positions, and each chunk is stably reordered by a key
known without decoding (orientation from the image's size, or with `data.buckets` the bucket
of its resized size), so a batch holds one kind of image except the few made of the chunk's
leftovers.

Order: training reads each epoch in a new order seeded by (seed, epoch), so any epoch can be
started without replaying the ones before. From COCO files that is a full permutation of the
pipeline's images (`epoch_order`). TFRecords can only be read in sequence, so there the full
permutation is of the pipeline's shard files; TFRECORD_CYCLE_LENGTH of them are read at once,
one record from each in turn, and `data.shuffle_buffer` records are mixed further (shards hold
consecutive images of the split, so with one image per shard both sources give one order).
Evaluation reads the files' order.

The output is reproducible and resumable: the random scale and flip of an element are seeded
by (seed, input pipeline, its position in the stream before grouping). So a pipeline built
with `start_batch=k` starts directly at the chunk holding batch k (in the epoch holding that
chunk), reorders it, steps over its earlier batches on the cheap stream (records are read,
never decoded), and yields exactly what a fresh pipeline yields from batch k on.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from oanet_tf.config import AUTOTUNE_SETTING, DataConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.image_sizes import bucket_index, pad_images, padded_size, resized_size
from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.data.tfrecords import EXAMPLE_SPEC, TFRecordSource, parse_example, parse_image_size
from oanet_tf.errors import DatasetError, failed_assertion

FLIP_PROBABILITY = 0.5
# Graph-level seed of the per-epoch record buffer (TFRecords): with it fixed, the order
# depends on `seed` and the epoch only, not on the process's global seed.
SHUFFLE_GRAPH_SEED = 1
# TFRecord shard files read at once in training, one record from each in turn: neighbouring
# records come from different shards. Each open file buffers tfrecords.READ_BUFFER_BYTES.
TFRECORD_CYCLE_LENGTH = 8
# Batches per grouping chunk. A chunk mixes groups in at most (groups - 1) of its batches: a
# longer chunk mixes a smaller share, but holds more items (records, for a TFRecordSource)
# in memory and delays the first batch.
GROUP_BATCHES = 16
# Group keys without buckets: landscape (height <= width) or portrait.
LANDSCAPE, PORTRAIT = 0, 1
ORIENTATIONS = 2

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
    gt_masks uint8 [B, M, H, W], gt_count int32 [B], semantic / owner int32 [B, H, W]
    (IGNORE_LABEL in the padding), image_id int64 [B], original_size / image_size int32
    [B, 2]. (H, W) = `image_sizes.padded_size` of the batch's image sizes: its largest sides
    rounded up to SIZE_DIVISIBILITY, or with data.buckets the smallest bucket holding them.
    M: the most instances of an image in the batch (at least 1), or max_instances with
    buckets (static, as XLA wants).

    `source` is a `PanopticDataset` (COCO files) or a `TFRecordSource` (converted shards);
    both give identical batches in evaluation, and in training when each shard holds one
    image (the module docstring says how each source is shuffled). Training shuffles each
    epoch, repeats (unless `repeat` says otherwise), jitters the scale, flips and drops the
    last partial batch (so B is static); evaluation keeps every image, in the files' order
    within each group of a chunk. Either way a batch holds images of one orientation (or one
    bucket) except at most (groups - 1) batches per chunk of GROUP_BATCHES, which mix the
    chunk's leftovers. With
    `input_context` (tf.distribute) this pipeline reads its share of the images (COCO: every
    n-th image; TFRecords: every n-th shard file) and `batch_size` is the global batch,
    split over the replicas. `seed=None` draws a fresh seed (the order stays deterministic:
    grouping needs it).

    `start_batch`: batches this pipeline already produced in an earlier run with the same
    arguments (resuming after a crash; under tf.distribute a step takes
    num_replicas_in_sync / num_input_pipelines batches from each pipeline, so steps done
    times that); the dataset continues exactly where that run left off, without decoding
    the skipped images. Exact as long as no image failed to decode: a COCO source skipping
    bad images filters them after grouping and decoding, so each one shifts the batches
    after it by one image (a batch at a group's edge may then mix groups), and one in the
    skipped part makes the resumed stream start one image early.

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
    if seed is None:
        seed = int(np.random.default_rng().integers(np.iinfo(np.int32).max))
    repeat = training if repeat is None else repeat
    base_seed = tf.constant([seed, pipeline_id], tf.int64)

    if isinstance(source, TFRecordSource):
        files, epoch_length = source.shard_files(num_pipelines, pipeline_id)
        members = tf.constant(files)
        size_of = parse_image_size
        decode = parse_example
        filter_bad = False
    else:
        members = tf.range(pipeline_id, len(source), num_pipelines, dtype=tf.int64)
        epoch_length = len(range(pipeline_id, len(source), num_pipelines))
        sizes = tf.constant(source.image_sizes, tf.int32)  # [N, 2]

        def size_of(index):
            return tf.gather(sizes, index)

        decode = index_decoder(source, with_panoptic=ground_truth)
        filter_bad = source.skip_bad_images

    if repeat and epoch_length == 0:
        raise DatasetError(f"input pipeline {pipeline_id} of {num_pipelines} gets no image "
                           f"({len(source)} in all): nothing to repeat")
    # Batch k lies in chunk k // GROUP_BATCHES, which starts at a fixed stream position.
    chunk_size = GROUP_BATCHES * batch_size
    chunk_start = start_batch // GROUP_BATCHES * chunk_size
    first_epoch = chunk_start // epoch_length if repeat and epoch_length else 0
    epochs = (tf.data.Dataset.counter(first_epoch) if repeat
              else tf.data.Dataset.range(first_epoch, first_epoch + 1))
    read = source.reader() if isinstance(source, TFRecordSource) else None
    ds = epochs.flat_map(_epoch_stream(members, read, training, data_config.shuffle_buffer, seed))
    # The position in the stream, counted before anything is skipped, grouped or decoded,
    # seeds each element's augmentation.
    ds = ds.enumerate(start=first_epoch * epoch_length)
    if chunk_start > first_epoch * epoch_length:
        ds = ds.skip(chunk_start - first_epoch * epoch_length)
    ds = _grouped(ds, _group_key(size_of, data_config, training, base_seed),
                  _num_groups(data_config), batch_size, parallel)
    ds = ds.skip(start_batch % GROUP_BATCHES * batch_size)
    process = _processor(decode, data_config, training, base_seed, keep_ok=filter_bad,
                         ground_truth=ground_truth)
    ds = ds.map(process, num_parallel_calls=parallel, deterministic=True)
    if filter_bad:
        ds = ds.filter(lambda example: example["ok"]).map(
            lambda example: {k: v for k, v in example.items() if k != "ok"})
    ds = ds.padded_batch(batch_size, padding_values=_padding_values(ds.element_spec),
                         drop_remainder=training)
    ds = ds.map(_batch_padder(data_config), num_parallel_calls=parallel, deterministic=True)
    if not repeat and not filter_bad:
        # The per-epoch stream hides the length; Keras needs it to end an evaluation quietly.
        remaining = max(epoch_length - start_batch * batch_size, 0)
        batches = remaining // batch_size if training else -(-remaining // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_order(count: int, seed: int, epoch) -> tf.Tensor:
    """int64 [count]: a permutation of 0..count-1 drawn from (seed, epoch) alone."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), key)


def _epoch_stream(members, read, shuffle: bool, record_buffer: int, seed: int):
    """epoch -> the items of that epoch. `members`: this pipeline's image indices int64 [n],
    or its TFRecord shard files string [n], whose records `read` (file -> records) gives.
    Shuffled: the members in `epoch_order`; shard files are then read TFRECORD_CYCLE_LENGTH
    at a time, one record from each in turn, and mixed in a buffer of `record_buffer` records
    (if > 1) seeded by (seed, epoch). Not shuffled: the members, and the records of each
    file, in order."""
    count = int(members.shape[0])

    def stream(epoch):
        if not shuffle:
            items = tf.data.Dataset.from_tensor_slices(members)
            return items.flat_map(read) if read else items
        items = tf.data.Dataset.from_tensor_slices(
            tf.gather(members, epoch_order(count, seed, epoch)))
        if not read:
            return items
        items = items.interleave(read, cycle_length=TFRECORD_CYCLE_LENGTH, block_length=1)
        if record_buffer <= 1:
            return items
        tf.random.set_seed(SHUFFLE_GRAPH_SEED)  # inside this function's graph only
        buffer_seed = tf.random.stateless_uniform(
            [], tf.stack([tf.constant(seed, tf.int64), epoch]), minval=None, maxval=None,
            dtype=tf.int64)
        return items.shuffle(record_buffer, seed=buffer_seed)

    return stream


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


def index_decoder(dataset: PanopticDataset, with_panoptic: bool = False):
    """index -> decoded example dict (EXAMPLE_SPEC, plus PANOPTIC_SPEC with `with_panoptic`,
    plus "ok": False for a skipped bad image).

    A bad image never raises inside `tf.numpy_function`: an exception there reaches the
    iterator as an untyped error while other decodes are in flight, and a process exiting
    with it waits forever for them. Its message comes out as a string instead, and unless
    the dataset skips bad images a failed assertion stops the stream with it (`batches`
    turns that back into the DatasetError)."""
    spec = EXAMPLE_SPEC + ((PANOPTIC_SPEC,) if with_panoptic else ())

    def decode_numpy(index):
        try:
            example, problem = dataset.load_or_skip(int(index), with_panoptic), ""
        except DatasetError as err:
            example, problem = None, str(err)
        ok = example is not None
        example = example if ok else _PLACEHOLDER
        return tuple(example[name] for name, _, _ in spec) + (np.bool_(ok), problem)

    def decode(index):
        values = tf.numpy_function(decode_numpy, [index],
                                   [dtype for _, dtype, _ in spec] + [tf.bool, tf.string])
        ok = tf.ensure_shape(values[-2], [])
        checks = [] if dataset.skip_bad_images else [tf.debugging.Assert(ok, [values[-1]])]
        with tf.control_dependencies(checks):
            example = {"ok": tf.identity(ok)}
            for (name, _, shape), value in zip(spec, values):
                example[name] = tf.ensure_shape(value, shape)
        return example

    return decode


def batches(dataset: tf.data.Dataset):
    """Iterate `dataset`; an input check that fails inside it (a bad image of a
    `PanopticDataset`) ends the iteration with a DatasetError carrying its message, raised
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
