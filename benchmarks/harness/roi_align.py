"""RoIAlign as the benchmarks time it: a random FPN pyramid P2..P5 and proposal-like boxes
(sides log-uniform between MIN_BOX_SIDE and the shorter image side, clipped to the image, so
every level gets boxes), and multilevel_roi_align with one method as a tf.function (no
AutoGraph, no XLA, as the model calls it), forward alone or forward plus the gradient
w.r.t. the features; how far two outputs differ, the boxes per level, and whether a method
compiles under XLA (the ops suite's notes)."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from oanet_tf.ops import roi_align

MODES = ("forward", "forward+backward")
LEVELS = (2, 3, 4, 5)
MIN_BOX_SIDE = 8.0
ASPECT_RANGE = (0.5, 2.0)


def make_case(seed: int, size: tuple, batch: int, channels: int, num_boxes: int, dtype):
    """Random pyramid [B, ceil(H / 2^l), ceil(W / 2^l), C] per level, boxes [B, N, 4] and a
    cotangent [B, N, 1, 1, C] (the backward pass's output gradient)."""
    rng = np.random.default_rng(seed)
    features = [tf.constant(rng.normal(size=(batch, math.ceil(size[0] / 2 ** l),
                                             math.ceil(size[1] / 2 ** l), channels)), dtype)
                for l in LEVELS]
    side = np.exp(rng.uniform(math.log(MIN_BOX_SIDE), math.log(min(size)),
                              size=(batch, num_boxes, 1)))
    aspect = np.sqrt(rng.uniform(*ASPECT_RANGE, size=(batch, num_boxes, 1)))
    half = np.concatenate([side * aspect, side / aspect], -1) / 2
    centre = rng.uniform(0.0, 1.0, size=(batch, num_boxes, 2)) * np.array(size)
    corners = np.concatenate([centre - half, centre + half], -1)
    boxes = np.clip(corners, 0.0, np.array(size * 2, np.float64))
    cotangent = rng.normal(size=(batch, num_boxes, 1, 1, channels))
    return features, tf.constant(boxes, tf.float32), tf.constant(cotangent, dtype)


def make_function(method: str, mode: str, output_size: int, sampling_ratio: int,
                  jit_compile: bool = False):
    """A tf.function of (features, boxes, cotangent): the pooled features, or those and the
    gradients w.r.t. the features (mode "forward+backward")."""

    def forward(features, boxes, cotangent):
        del cotangent
        return roi_align.multilevel_roi_align(features, boxes, output_size, sampling_ratio,
                                              method=method)

    def backward(features, boxes, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = forward(features, boxes, None)
            total = tf.reduce_sum(pooled * cotangent)
        # The gradient of a linear op does not need its output: return it too, or the
        # forward pass would be pruned from the graph.
        return pooled, tape.gradient(total, features)

    return tf.function(forward if mode == "forward" else backward, autograph=False,
                       jit_compile=jit_compile)


def boxes_per_level(boxes) -> dict:
    """{"P2": count, ...}: how many of `boxes` each FPN level pools."""
    levels = roi_align.assign_levels(boxes).numpy().ravel()
    return {f"P{level}": int((levels == level).sum()) for level in LEVELS}


def max_difference(a, b) -> tuple:
    """Largest |a - b| over all outputs, and largest |a| (its scale)."""
    pairs = [(tf.cast(x, tf.float32), tf.cast(y, tf.float32))
             for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b))]
    return (max(float(tf.reduce_max(tf.abs(x - y))) for x, y in pairs),
            max(float(tf.reduce_max(tf.abs(x))) for x, _ in pairs))


def compiles_under_xla(method: str, inputs, output_size: int, sampling_ratio: int) -> str:
    """'compiles', or why `method`'s forward pass does not under jit_compile=True."""
    try:
        make_function(method, "forward", output_size, sampling_ratio,
                      jit_compile=True)(*inputs)
    except (tf.errors.OpError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"does not compile ({type(err).__name__}: {first[:80]})"
    return "compiles"
