"""Faster R-CNN box deltas (dy, dx, dh, dw) relative to reference boxes, and clipping.

    dy = wy * (cy - cy_a) / h_a    dx = wx * (cx - cx_a) / w_a
    dh = wh * log(h / h_a)         dw = ww * log(w / w_a)

with centres and sizes of continuous (y1, x1, y2, x2) boxes (h = y2 - y1, no +1), as in
Detectron2's Box2BoxTransform. Weights are given in delta order (wy, wx, wh, ww).
"""

from __future__ import annotations

import math

import tensorflow as tf

# Largest dh / dw applied when decoding, so exp() cannot overflow (Detectron2's scale clamp).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
# Box sizes are floored here when encoding, so empty (e.g. padding) boxes give finite deltas.
MIN_BOX_SIZE = 1e-6
UNIT_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def _centers_and_sizes(boxes):
    """[..., 4] boxes -> (cy, cx, h, w), each [...]."""
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    h, w = y2 - y1, x2 - x1
    return y1 + 0.5 * h, x1 + 0.5 * w, h, w


def encode_boxes(boxes, anchors, weights=UNIT_WEIGHTS):
    """Deltas that turn `anchors` into `boxes`.

    boxes [..., 4], anchors broadcastable to boxes -> deltas [..., 4] float32 (dy, dx, dh, dw).
    """
    boxes = tf.cast(boxes, tf.float32)
    anchors = tf.cast(anchors, tf.float32)
    wy, wx, wh, ww = (float(w) for w in weights)
    cy, cx, h, w = _centers_and_sizes(boxes)
    cya, cxa, ha, wa = _centers_and_sizes(anchors)
    ha, wa = tf.maximum(ha, MIN_BOX_SIZE), tf.maximum(wa, MIN_BOX_SIZE)
    h, w = tf.maximum(h, MIN_BOX_SIZE), tf.maximum(w, MIN_BOX_SIZE)
    return tf.stack([wy * (cy - cya) / ha, wx * (cx - cxa) / wa,
                     wh * tf.math.log(h / ha), ww * tf.math.log(w / wa)], axis=-1)


def decode_boxes(deltas, anchors, weights=UNIT_WEIGHTS):
    """Boxes obtained by applying `deltas` to `anchors`; dh, dw are clamped at BBOX_XFORM_CLIP.

    deltas [..., 4], anchors broadcastable to deltas -> boxes [..., 4] float32.
    """
    deltas = tf.cast(deltas, tf.float32)
    anchors = tf.cast(anchors, tf.float32)
    wy, wx, wh, ww = (float(w) for w in weights)
    dy, dx, dh, dw = tf.unstack(deltas, axis=-1)
    dh = tf.minimum(dh / wh, BBOX_XFORM_CLIP)
    dw = tf.minimum(dw / ww, BBOX_XFORM_CLIP)
    cya, cxa, ha, wa = _centers_and_sizes(anchors)
    cy = dy / wy * ha + cya
    cx = dx / wx * wa + cxa
    h = tf.exp(dh) * ha
    w = tf.exp(dw) * wa
    return tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip_boxes(boxes, image_size):
    """Clip boxes to [0, H] x [0, W].

    boxes [..., 4]; image_size (H, W) numbers, or a tensor [..., 2] broadcastable against
    boxes[..., :2] (e.g. per-image sizes [B, 1, 2] for boxes [B, N, 4]) -> [..., 4].
    """
    size = tf.cast(image_size, boxes.dtype)
    if size.shape.rank == 0 or size.shape[-1] != 2:
        raise ValueError(f"image_size must be (height, width), got shape {size.shape}")
    upper = tf.concat([size, size], axis=-1)  # (H, W, H, W)
    return tf.minimum(tf.maximum(boxes, 0.0), upper)
