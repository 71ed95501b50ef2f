"""What the input pipeline reads: the interface of a source, and the example it decodes.

`pipeline.build_dataset` reads any `Source`. Two implement it: `PanopticDataset` (the COCO
JSON and PNG files, coco_panoptic.py) and `TFRecordSource` (converted shards, tfrecords.py).
A source hands out cheap members (image indices, or shard files) that the pipeline permutes
each epoch and shares out between input pipelines; a member gives one or more items (an
image index, a record) whose image size is known without decoding, for grouping; decoding
an item gives the example dict of EXAMPLE_SPEC, the same from either source.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import tensorflow as tf

from oanet_tf.errors import DatasetError

# The decoded example (`PanopticDataset.load_example`'s dict) as tensors: name, dtype,
# shape (an image of any size). Both sources decode to exactly this.
EXAMPLE_SPEC = (
    ("image", tf.uint8, [None, None, 3]),
    ("boxes", tf.float32, [None, 4]),
    ("classes", tf.int32, [None]),
    ("masks", tf.uint8, [None, None, None]),
    ("semantic", tf.int32, [None, None]),
    ("owner", tf.int32, [None, None]),
    ("image_id", tf.int64, []),
    ("original_size", tf.int32, [2]),
)
# The panoptic PNG's segment ids, decoded with the example when evaluation needs the ground
# truth.
PANOPTIC_SPEC = ("panoptic", tf.int32, [None, None])


class Source(Protocol):
    """A split as the input pipeline reads it (see the module docstring)."""

    categories: object  # the split's CategoryMap
    # True: a bad image is dropped after decoding (its example's "ok" is False); False: every
    # item decodes or stops the stream.
    skip_bad_images: bool

    def __len__(self) -> int:
        """Images in the split."""

    def pipeline_share(self, num_pipelines: int, pipeline_id: int) -> tuple:
        """(members, images): the 1-D tensor of members input pipeline `pipeline_id` of
        `num_pipelines` reads, each epoch in a new order, and how many images they hold."""

    def epoch_items(self, members: tf.data.Dataset, shuffle_key,
                    shuffle_buffer: int) -> tf.data.Dataset:
        """The items of `members`, read in their order. `shuffle_key` (int64 [2], seed and
        epoch) when training shuffles, else None; a source read in sequence mixes its items
        further in a buffer of `shuffle_buffer` seeded by it."""

    def image_size(self, item) -> tf.Tensor:
        """int32 [2] (height, width) of an item's image, without decoding it."""

    def decoder(self, ground_truth: bool = False):
        """item -> the example dict of EXAMPLE_SPEC, plus PANOPTIC_SPEC with `ground_truth`,
        plus "ok" (bool []) when the source skips bad images."""

    def record(self, image_id: int):
        """The `coco_panoptic.ImageRecord` of an image (evaluation: its files, segments)."""

    def report_bad_images(self) -> int:
        """Log the images left out; returns how many."""


_PLACEHOLDER = {  # stands in for a skipped bad image until the pipeline drops it
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


def numpy_decoder(load_or_skip, skip_bad_images: bool, with_panoptic: bool = False):
    """index -> decoded example dict (EXAMPLE_SPEC, plus PANOPTIC_SPEC with `with_panoptic`,
    plus "ok": False for a skipped bad image), of `load_or_skip(index, with_panoptic)`: a
    numpy example, None for a skipped bad image, or a DatasetError.

    A bad image never raises inside `tf.numpy_function`: an exception there reaches the
    iterator as an untyped error while other decodes are in flight, and a process exiting
    with it waits forever for them. Its message comes out as a string instead, and unless
    bad images are skipped a failed assertion stops the stream with it
    (`pipeline.batches` turns that back into the DatasetError)."""
    spec = EXAMPLE_SPEC + ((PANOPTIC_SPEC,) if with_panoptic else ())

    def decode_numpy(index):
        try:
            example, problem = load_or_skip(int(index), with_panoptic), ""
        except DatasetError as err:
            example, problem = None, str(err)
        ok = example is not None
        example = example if ok else _PLACEHOLDER
        return tuple(example[name] for name, _, _ in spec) + (np.bool_(ok), problem)

    def decode(index):
        values = tf.numpy_function(decode_numpy, [index],
                                   [dtype for _, dtype, _ in spec] + [tf.bool, tf.string])
        ok = tf.ensure_shape(values[-2], [])
        checks = [] if skip_bad_images else [tf.debugging.Assert(ok, [values[-1]])]
        with tf.control_dependencies(checks):
            example = {"ok": tf.identity(ok)}
            for (name, _, shape), value in zip(spec, values):
                example[name] = tf.ensure_shape(value, shape)
        return example

    return decode
