"""Tensor sizes as Python ints where the graph knows them, so that static shapes stay static
(XLA) while any size still works."""

from __future__ import annotations

import tensorflow as tf


def dim(tensor, axis: int):
    """Static size of an axis when known, else the dynamic one (a scalar int32 tensor)."""
    tensor = tf.convert_to_tensor(tensor)
    return tensor.shape[axis] if tensor.shape[axis] is not None else tf.shape(tensor)[axis]


def dims(tensor) -> list:
    """Every axis as `dim` gives it."""
    tensor = tf.convert_to_tensor(tensor)
    return [dim(tensor, axis) for axis in range(tensor.shape.rank)]


def image_canvas(images) -> tuple:
    """(H, W) of images [B, H, W, C]: the padded size every image of the batch shares."""
    return dim(images, 1), dim(images, 2)
