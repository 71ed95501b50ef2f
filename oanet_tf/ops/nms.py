"""Greedy non-maximum suppression on batched, padded inputs.

batched_nms: per image, class-agnostic or per group (`groups`: boxes of different groups
never suppress each other, e.g. proposals of different FPN levels). `xla=True` runs
tf.image.non_max_suppression_padded (a tiled pure-TF algorithm that compiles with XLA); the
default runs the greedy C++ kernel of tf.image.non_max_suppression once per image (1.2-1.3x faster at 4000 -> 1000 boxes,
benchmarks/benchmark.py --suites ops). multiclass_nms: per class, on
tf.image.combined_non_max_suppression (C++ kernel, no XLA kernel): the one op of
`oanet_tf.ops` that does not compile with jit_compile=True (it serves inference only). One
class-agnostic pass over class-shifted boxes was measured at 0.74-0.87x its speed, so it
stays. All suppress a box whose IoU with a kept higher-scoring box exceeds the threshold,
as torchvision's nms. Boxes are pixel coordinates; no op needs them normalised.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# non_max_suppression_padded treats a kept box whose coordinates are all <= 0 as padding;
# boxes are moved so that their smallest coordinate is this value (IoU is unchanged).
NMS_COORDINATE_FLOOR = 1.0


def _gather_padded(values, indices, valid):
    """values [B, N, ...] gathered at indices [B, K]; zeros where valid [B, K] is False."""
    gathered = tf.gather(values, indices, batch_dims=1)
    for _ in range(gathered.shape.rank - valid.shape.rank):
        valid = valid[..., None]
    return tf.where(valid, gathered, tf.zeros_like(gathered))


def batched_nms(boxes, scores, max_output: int, iou_threshold: float,
                score_threshold: float = float("-inf"), xla: bool = False, groups=None):
    """Greedy NMS per image, kept boxes in descending score order over all groups.

    boxes [B, N, 4], scores [B, N] (boxes with score <= score_threshold are dropped), groups
    None (class-agnostic) or int [N] / [B, N] (a box suppresses only boxes of its own group)
    -> boxes [B, K, 4], scores [B, K], indices [B, K] int32 (into N), count [B] int32, with
    K = max_output and zeros after the first count[b] entries of image b. With groups this is
    NMS per group followed by the best K over all groups (torchvision's batched_nms).
    """
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    separated = boxes if groups is None else _separate_groups(boxes, groups)
    if not xla:
        indices, count = _greedy_per_image(separated, scores, max_output, iou_threshold,
                                           score_threshold)
        valid = tf.range(max_output)[None, :] < count[:, None]
        return (_gather_padded(boxes, indices, valid), _gather_padded(scores, indices, valid),
                indices, count)
    shift = NMS_COORDINATE_FLOOR - tf.reduce_min(separated, axis=[1, 2], keepdims=True)
    # non_max_suppression_padded suppresses at IoU >= threshold; the next float32 up gives >.
    above = float(np.nextafter(np.float32(iou_threshold), np.float32(np.inf)))
    indices, count = tf.image.non_max_suppression_padded(
        separated + shift, scores, max_output, iou_threshold=above,
        score_threshold=score_threshold, pad_to_max_output_size=True,
        canonicalized_coordinates=True)
    indices = tf.reshape(tf.cast(indices, tf.int32), [-1, max_output])
    count = tf.cast(count, tf.int32)
    valid = tf.range(max_output)[None, :] < count[:, None]
    # The padded kernel does not always return far-apart boxes (other groups) best first.
    kept_scores = tf.where(valid, tf.gather(scores, indices, batch_dims=1), -float("inf"))
    by_score = tf.argsort(kept_scores, axis=1, direction="DESCENDING", stable=True)
    indices = tf.gather(indices, by_score, batch_dims=1)
    return (_gather_padded(boxes, indices, valid), _gather_padded(scores, indices, valid),
            tf.where(valid, indices, 0), count)


def multiclass_nms(boxes, scores, max_per_class: int, max_total: int, iou_threshold: float,
                   score_threshold: float):
    """Class-aware NMS (per class, as Detectron2's batched_nms), then the best max_total.

    boxes [B, N, C, 4] (one box per class), scores [B, N, C] (kept only when
    > score_threshold) -> boxes [B, K, 4], scores [B, K], classes [B, K] int32 (0-based index
    into C), count [B] int32, with K = max_total, in descending score order, zeros after
    count[b]. Not XLA-compilable (see module docstring).
    """
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    out_boxes, out_scores, out_classes, count = tf.image.combined_non_max_suppression(
        boxes, scores, max_output_size_per_class=max_per_class, max_total_size=max_total,
        iou_threshold=iou_threshold, score_threshold=score_threshold, pad_per_class=False,
        clip_boxes=False)
    count = tf.cast(count, tf.int32)
    valid = tf.range(max_total)[None, :] < count[:, None]
    classes = tf.where(valid, tf.cast(out_classes, tf.int32), 0)
    return out_boxes, out_scores, classes, count


def _separate_groups(boxes, groups):
    """Boxes moved apart by group so that boxes of different groups never overlap.

    boxes [B, N, 4], groups int [N] or [B, N] -> [B, N, 4]: group g of image b shifted along
    both axes by g times (the image's coordinate extent + 1). Within a group IoU is unchanged
    up to float rounding of the shifted coordinates.
    """
    low = tf.reduce_min(boxes, axis=[1, 2], keepdims=True)  # [B, 1, 1]
    extent = tf.reduce_max(boxes, axis=[1, 2], keepdims=True) - low + 1.0
    offset = tf.cast(groups, tf.float32)[..., tf.newaxis] * extent  # [B, N, 1]
    return boxes - low + offset


def _greedy_per_image(boxes, scores, max_output: int, iou_threshold: float,
                      score_threshold: float):
    """The C++ greedy kernel on each image.

    boxes [B, N, 4], scores [B, N] -> indices [B, K] int32 (0 after count), count [B] int32.
    """
    def one_image(inputs):
        image_boxes, image_scores = inputs
        keep = tf.image.non_max_suppression(image_boxes, image_scores, max_output,
                                            iou_threshold=iou_threshold,
                                            score_threshold=score_threshold)
        count = tf.shape(keep)[0]
        return tf.pad(keep, [[0, max_output - count]]), count

    return tf.map_fn(one_image, (boxes, scores), parallel_iterations=1,
                     fn_output_signature=(tf.TensorSpec([max_output], tf.int32),
                                          tf.TensorSpec([], tf.int32)))
