"""Matching of predictions (anchors, RoIs) to ground truth by IoU (Detectron2's Matcher).

Each prediction takes its highest-IoU valid ground-truth box. Its label is 1 (positive) when
that IoU >= high, 0 (negative) when < low, and -1 (ignored) in between. With
`allow_low_quality`, every ground-truth box also makes positive the predictions with which it
has its highest IoU (all of them when tied), so that no box is left without an anchor;
the matched index stays the prediction's own best ground truth, as in Detectron2. One
deviation: a box whose best IoU is 0 promotes nothing (Detectron2 would promote every
prediction that does not touch it). Without any valid ground truth, all predictions are
negative.
"""

from __future__ import annotations

import tensorflow as tf

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1
INVALID_IOU = -1.0  # IoU given to padding ground truth so that it never matches


def match_boxes(iou, gt_valid, low: float, high: float, allow_low_quality: bool):
    """Match predictions to ground truth.

    iou [B, N, M] (predictions x ground truth), gt_valid [B, M] bool ->
    matched_index [B, N] int32 (into M; 0 when nothing is valid), labels [B, N] int32 in
    {1, 0, -1}.
    """
    if low > high:
        raise ValueError(f"matcher thresholds need low <= high, got low={low}, high={high}")
    valid = tf.cast(gt_valid, tf.bool)[:, None, :]  # [B, 1, M]
    iou = tf.where(valid, tf.cast(iou, tf.float32), INVALID_IOU)
    best_iou = tf.reduce_max(iou, axis=2)  # [B, N]
    matched_index = tf.argmax(iou, axis=2, output_type=tf.int32)
    labels = tf.where(best_iou >= high, POSITIVE, tf.where(best_iou < low, NEGATIVE, IGNORE))
    if allow_low_quality:
        best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)  # [B, 1, M]
        is_best = valid & (best_per_gt > 0.0) & tf.equal(iou, best_per_gt)
        labels = tf.where(tf.reduce_any(is_best, axis=2), POSITIVE, labels)
    return matched_index, tf.cast(labels, tf.int32)
