"""Panoptic Quality as a streaming Keras metric, computed in-graph.

The same rules as `oanet_tf.evaluation.pq` (pq_compute's semantics) on padded, batched id
maps, so PQ can be tracked inside `model.evaluate` / a `tf.distribute` strategy without
writing PNGs. Per-class IoU sums and TP / FP / FN counts are metric variables (summed across
replicas); `result()` averages over the classes that occur.

Differences from the file evaluator, which follow from padded inputs: a listed segment with no
pixel (cropped away, or padding) is ignored instead of being an error, pixel ids not listed
among the valid segments count as void, and a ground-truth area is always its pixel count.
Segment ids must be unique within an image. With a float32 metric, pixel counts and the
per-class counts are exact up to 2^24.
"""

from __future__ import annotations

import keras
import tensorflow as tf

GROUPS = (("", None), ("_things", True), ("_stuff", False))


def _pixel_slots(id_maps, segment_ids, valid):
    """[B, H*W] int32 slot of every pixel: 1 + index of its segment, 0 for void / unlisted.

    id_maps [B, H, W], segment_ids [B, S], valid [B, S] bool.
    """
    num_segments = segment_ids.shape[1]
    batch = tf.shape(id_maps)[0]
    pixels = tf.reshape(id_maps, [batch, -1])
    keys = tf.where(valid & (segment_ids != 0), segment_ids, tf.int32.max)
    order = tf.argsort(keys, axis=1, stable=True)
    sorted_keys = tf.gather(keys, order, batch_dims=1)
    position = tf.searchsorted(sorted_keys, pixels, side="left", out_type=tf.int32)
    position = tf.minimum(position, num_segments - 1)
    found = (tf.gather(sorted_keys, position, batch_dims=1) == pixels) & (pixels != 0)
    found &= pixels != tf.int32.max
    return tf.where(found, tf.gather(order, position, batch_dims=1) + 1, 0)


def _per_class_sum(values, classes, valid, num_classes):
    """[C] sum of values [B, S] over the valid segments of each class (classes [B, S])."""
    ids = tf.reshape(tf.where(valid, classes, num_classes), [-1])
    sums = tf.math.unsorted_segment_sum(tf.reshape(values, [-1]), ids, num_classes + 1)
    return sums[:num_classes]


def panoptic_statistics(gt_ids, gt_segment_ids, gt_segment_classes, gt_segment_iscrowd,
                        pred_ids, pred_segment_ids, pred_segment_classes, num_classes: int,
                        dtype="float32"):
    """Per-class (iou_sum, tp, fp, fn), each [C] of `dtype`, of one batch.

    gt_ids, pred_ids [B, H, W] int32 id maps (0 = void); gt_segment_ids [B, S],
    gt_segment_classes [B, S] (contiguous class, -1 = padding), gt_segment_iscrowd [B, S];
    pred_segment_ids [B, S2], pred_segment_classes [B, S2] (-1 = padding).
    """
    gt_ids = tf.cast(gt_ids, tf.int32)
    pred_ids = tf.cast(pred_ids, tf.int32)
    gt_seg = tf.cast(gt_segment_ids, tf.int32)
    pred_seg = tf.cast(pred_segment_ids, tf.int32)
    gt_cls = tf.cast(gt_segment_classes, tf.int32)
    pred_cls = tf.cast(pred_segment_classes, tf.int32)
    gt_crowd = tf.cast(gt_segment_iscrowd, tf.bool)
    num_gt, num_pred = gt_seg.shape[1], pred_seg.shape[1]
    if not num_gt or not num_pred or gt_ids.shape[1:].num_elements() is None:
        raise ValueError("panoptic_statistics needs static, non-zero segment counts and static "
                         f"image sizes, got {gt_seg.shape}, {pred_seg.shape}, {gt_ids.shape}")
    batch = tf.shape(gt_ids)[0]

    gt_slot = _pixel_slots(gt_ids, gt_seg, gt_cls >= 0)  # [B, HW]
    pred_slot = _pixel_slots(pred_ids, pred_seg, pred_cls >= 0)  # [B, HW]
    cells = (num_gt + 1) * (num_pred + 1)
    joint_index = tf.reshape(tf.range(batch)[:, None] * cells + gt_slot * (num_pred + 1)
                             + pred_slot, [-1])  # [B*HW]
    joint = tf.math.unsorted_segment_sum(tf.ones_like(joint_index), joint_index, batch * cells)
    joint = tf.reshape(joint, [batch, num_gt + 1, num_pred + 1])  # int32 pixel counts

    inter = joint[:, 1:, 1:]  # [B, S, S2]
    pred_on_void = joint[:, 0, 1:]  # [B, S2]
    pred_area = tf.reduce_sum(joint[:, :, 1:], axis=1)  # [B, S2]
    gt_area = tf.reduce_sum(joint[:, 1:, :], axis=2)  # [B, S]
    gt_valid = (gt_cls >= 0) & (gt_area > 0)
    pred_valid = (pred_cls >= 0) & (pred_area > 0)

    union = pred_area[:, None, :] + gt_area[:, :, None] - inter - pred_on_void[:, None, :]
    same_class = gt_cls[:, :, None] == pred_cls[:, None, :]
    candidate = ((inter > 0) & same_class & (gt_valid & ~gt_crowd)[:, :, None]
                 & pred_valid[:, None, :])
    # IoU > 1/2 <=> 2 * intersection > union, decided exactly on the integer counts.
    match = candidate & (2 * inter > union)
    iou = tf.where(match, tf.cast(inter, dtype) / tf.cast(tf.maximum(union, 1), dtype),
                   tf.zeros([], dtype))
    gt_matched = tf.reduce_any(match, axis=2)  # [B, S]
    pred_matched = tf.reduce_any(match, axis=1)  # [B, S2]

    # The crowd GT segment of each prediction's class: the last one listed, as in pq_compute.
    slots = tf.range(num_gt)[None, :, None]
    crowd_same = (gt_crowd & gt_valid)[:, :, None] & same_class  # [B, S, S2]
    crowd_slot = tf.reduce_max(tf.where(crowd_same, slots, -1), axis=1)  # [B, S2]
    on_crowd = tf.reduce_sum(tf.where(slots == crowd_slot[:, None, :], inter, 0), axis=1)
    ignored = pred_on_void + on_crowd  # [B, S2]
    # Not a false positive when ignored / area > 1/2 <=> 2 * ignored > area.
    false_positive = pred_valid & ~pred_matched & ~(2 * ignored > pred_area)
    false_negative = gt_valid & ~gt_crowd & ~gt_matched

    def count(flags):
        return tf.cast(flags, dtype)

    iou_sum = _per_class_sum(tf.reduce_sum(iou, axis=2), gt_cls, gt_valid, num_classes)
    tp = _per_class_sum(count(gt_matched), gt_cls, gt_valid, num_classes)
    fp = _per_class_sum(count(false_positive), pred_cls, pred_valid, num_classes)
    fn = _per_class_sum(count(false_negative), gt_cls, gt_valid, num_classes)
    return iou_sum, tp, fp, fn


class PanopticQualityMetric(keras.metrics.Metric):
    """Streaming PQ / SQ / RQ for All, Things and Stuff over contiguous classes.

    `update_state(gt_ids, gt_segment_ids, gt_segment_classes, gt_segment_iscrowd, pred_ids,
    pred_segment_ids, pred_segment_classes)` takes one padded batch (see
    `panoptic_statistics`); `result()` is {pq, sq, rq, pq_things, ..., rq_stuff}.
    """

    def __init__(self, num_classes: int, thing_classes, name: str = "panoptic_quality",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        num_classes = int(num_classes)
        things = sorted(int(c) for c in thing_classes)
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if len(set(things)) != len(things) or any(not 0 <= c < num_classes for c in things):
            raise ValueError(f"thing_classes must be distinct classes in [0, {num_classes}), "
                             f"got {list(thing_classes)}")
        self.num_classes = num_classes
        self.thing_classes = things
        self.iou_sum, self.tp, self.fp, self.fn = (
            self.add_variable(shape=(num_classes,), initializer="zeros", dtype=self.dtype,
                              name=stat) for stat in ("iou_sum", "tp", "fp", "fn"))

    def update_state(self, gt_ids, gt_segment_ids, gt_segment_classes, gt_segment_iscrowd,
                     pred_ids, pred_segment_ids, pred_segment_classes):
        stats = panoptic_statistics(gt_ids, gt_segment_ids, gt_segment_classes,
                                    gt_segment_iscrowd, pred_ids, pred_segment_ids,
                                    pred_segment_classes, self.num_classes, self.dtype)
        for variable, value in zip((self.iou_sum, self.tp, self.fp, self.fn), stats):
            variable.assign_add(value)

    def result(self):
        """Scalars pq, sq, rq (All) and the same with _things / _stuff suffixes."""
        iou, tp, fp, fn = (tf.convert_to_tensor(v) for v in
                           (self.iou_sum, self.tp, self.fp, self.fn))
        denominator = tp + 0.5 * fp + 0.5 * fn
        occurs = (tp + fp + fn) > 0
        per_class = {"pq": tf.math.divide_no_nan(iou, denominator),
                     "sq": tf.math.divide_no_nan(iou, tp),
                     "rq": tf.math.divide_no_nan(tp, denominator)}
        is_thing = tf.constant([c in self.thing_classes for c in range(self.num_classes)])
        results = {}
        for suffix, isthing in GROUPS:
            chosen = occurs if isthing is None else occurs & (is_thing == isthing)
            n = tf.reduce_sum(tf.cast(chosen, self.dtype))
            for key, values in per_class.items():
                total = tf.reduce_sum(tf.where(chosen, values, tf.zeros_like(values)))
                results[key + suffix] = tf.math.divide_no_nan(total, n)
        return results

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "thing_classes": list(self.thing_classes)}
