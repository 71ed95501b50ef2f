"""The sizes an image takes on its way into the model, shared by training, evaluation and
serving: its resized size (`resized_size`), the bucket that holds it (`bucket_index`) and the
padded size of a batch (`padded_size`).

Without buckets a batch is padded to its largest image, each side rounded up to a multiple of
SIZE_DIVISIBILITY. With `data.buckets` an image is resized to fit at least one bucket and a
batch is padded to the smallest bucket (by area) that holds all its images, so a run sees a
few static shapes.
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.config import ROUND_DOWN, SIZE_DIVISIBILITY, DataConfig

NO_BUCKET = -1  # bucket_index of a size no bucket holds


def resized_size(height, width, data_config: DataConfig, jitter=1.0):
    """(new_h, new_w) int32 scalars: shorter side to short_side * jitter, longer side at
    most max_side * jitter; with buckets, shrunk (never cropped) until some bucket holds it.
    Sides are side * scale in float64 rounded to the nearest integer, or down with
    data.resize_rounding floor (torchvision: 480 * (800 / 480) may give 799)."""
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = tf.minimum(data_config.short_side / tf.minimum(h, w),
                       data_config.max_side / tf.maximum(h, w)) * tf.cast(jitter, tf.float64)
    if data_config.buckets:
        buckets = tf.constant(data_config.buckets, tf.float64)  # [K, 2]
        fits = tf.minimum(buckets[:, 0] / h, buckets[:, 1] / w)  # largest scale per bucket
        scale = tf.minimum(scale, tf.reduce_max(fits))
    half = 0.0 if data_config.resize_rounding == ROUND_DOWN else 0.5
    new_h = tf.maximum(tf.cast(tf.floor(h * scale + half), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.floor(w * scale + half), tf.int32), 1)
    return new_h, new_w


def pad_images(images, pad_h, pad_w, image_size, pad_value):
    """images [B, h, w, 3], image b in its top-left image_size[b] -> [B, h + pad_h, w + pad_w,
    3]: padded at the bottom and right, everything outside each image set to the RGB
    `pad_value` (data.pad_value; zero by default)."""
    images = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    if not any(pad_value):
        return images
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    size = tf.cast(image_size, tf.int32)
    rows = tf.range(height)[tf.newaxis, :, tf.newaxis] < size[:, 0, tf.newaxis, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, tf.newaxis, :] < size[:, 1, tf.newaxis, tf.newaxis]
    inside = (rows & cols)[..., tf.newaxis]  # [B, H, W, 1]
    return tf.where(inside, images, tf.constant(pad_value, images.dtype))


def bucket_index(size, buckets):
    """size int [..., 2] (height, width) -> int32 [...]: the index of the smallest bucket (by
    area; the first of equal ones) that holds it, NO_BUCKET where none does."""
    size = tf.cast(size, tf.int32)
    table = tf.constant(buckets, tf.int32)  # [K, 2]
    holds = tf.reduce_all(size[..., tf.newaxis, :] <= table, axis=-1)  # [..., K]
    area = tf.reduce_prod(table, axis=-1)
    big = tf.reduce_max(area) + 1
    index = tf.argmin(tf.where(holds, area, big), axis=-1, output_type=tf.int32)
    return tf.where(tf.reduce_any(holds, axis=-1), index, NO_BUCKET)


def round_up(size, multiple: int = SIZE_DIVISIBILITY):
    """int size(s) -> the next multiple of `multiple` (int32)."""
    size = tf.cast(size, tf.int32)
    return -(-size // multiple) * multiple


def padded_size(image_sizes, buckets=()):
    """image_sizes int [B, 2] resized sizes of a batch (B >= 1) -> int32 [2] (H, W) the batch
    is padded to: the smallest bucket holding every image, or (no buckets, or none holds
    them all, as for a mixed batch at serving) the largest sides rounded up to
    SIZE_DIVISIBILITY."""
    largest = tf.reduce_max(tf.cast(image_sizes, tf.int32), axis=0)
    rounded = round_up(largest)
    if not buckets:
        return rounded
    index = bucket_index(largest, buckets)
    table = tf.constant(buckets, tf.int32)
    return tf.where(index >= 0, tf.gather(table, tf.maximum(index, 0)), rounded)
