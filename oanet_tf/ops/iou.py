"""Pairwise intersection over union of two batched box sets."""

from __future__ import annotations

import tensorflow as tf


def box_area(boxes):
    """[..., 4] -> [...] area; inverted boxes count as empty."""
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    return tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)


def pairwise_iou(boxes1, boxes2):
    """IoU of every box of boxes1 with every box of boxes2; 0 where a box is empty (no NaN).

    boxes1 [B, N, 4], boxes2 [B, M, 4] -> [B, N, M] float32.
    """
    boxes1 = tf.cast(boxes1, tf.float32)
    boxes2 = tf.cast(boxes2, tf.float32)
    y1a, x1a, y2a, x2a = (t[:, :, None] for t in tf.unstack(boxes1, axis=-1))  # [B, N, 1]
    y1b, x1b, y2b, x2b = (t[:, None, :] for t in tf.unstack(boxes2, axis=-1))  # [B, 1, M]
    inter_h = tf.maximum(tf.minimum(y2a, y2b) - tf.maximum(y1a, y1b), 0.0)
    inter_w = tf.maximum(tf.minimum(x2a, x2b) - tf.maximum(x1a, x1b), 0.0)
    inter = inter_h * inter_w
    union = box_area(boxes1)[:, :, None] + box_area(boxes2)[:, None, :] - inter
    return tf.math.divide_no_nan(inter, union)
