"""The region proposal network (Ren et al., 2015) as one component: its head on P2..P6, the
anchors, matching and sampling behind its two losses, and proposal selection."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from oanet_tf.modeling.rpn_head import RPNHead
from oanet_tf.ops import anchors as anchors_lib
from oanet_tf.ops import box_coder, iou, matcher, nms, sampling
from oanet_tf.ops.shapes import dim

ANCHOR_LEVELS = (2, 6)  # one anchor size per FPN level P2..P6
# A proposal whose clipped box is this high or wide or less is empty and dropped before NMS
# (Detectron2's RPN min_box_size 0); `min_box_size` (torchvision: 1e-3) drops smaller ones too.
MIN_PROPOSAL_SIZE = 0.0
# Empty proposals get score -inf and NMS drops scores at or below this threshold (finite: the
# padded XLA kernel keeps -inf scores under a -inf threshold).
LOWEST_SCORE = float(np.finfo(np.float32).min)


@keras.saving.register_keras_serializable(package="oanet_tf")
class RPN(keras.layers.Layer):
    """Objectness and box deltas at every anchor (`call`), their losses, and the proposals.

    `static_shapes`: padded proposal NMS that XLA compiles, instead of the greedy C++ kernel.
    `anchor_offset`, `anchor_cells`: see `oanet_tf.ops.anchors`. `nms_per_level`: proposals
    of different levels never suppress each other. `min_box_size`: proposals with a side
    below it are dropped before NMS (besides empty ones).
    """

    def __init__(self, *, conv_channels: int, anchor_sizes, anchor_aspect_ratios,
                 iou_thresholds, batch_size_per_image: int, positive_fraction: float,
                 pre_nms_topk_train: int, post_nms_topk_train: int, pre_nms_topk_test: int,
                 post_nms_topk_test: int, nms_threshold: float, static_shapes: bool,
                 anchor_offset: float = anchors_lib.CENTER_OFFSET,
                 anchor_cells: str = anchors_lib.EXACT_CELLS, nms_per_level: bool = True,
                 min_box_size: float = MIN_PROPOSAL_SIZE, **kwargs):
        super().__init__(**kwargs)
        self.conv_channels = int(conv_channels)
        self.anchor_sizes = tuple(anchor_sizes)
        self.anchor_aspect_ratios = tuple(anchor_aspect_ratios)
        self.iou_thresholds = tuple(iou_thresholds)
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)
        self.pre_nms_topk_train = int(pre_nms_topk_train)
        self.post_nms_topk_train = int(post_nms_topk_train)
        self.pre_nms_topk_test = int(pre_nms_topk_test)
        self.post_nms_topk_test = int(post_nms_topk_test)
        self.nms_threshold = float(nms_threshold)
        self.static_shapes = bool(static_shapes)
        self.anchor_offset = float(anchor_offset)
        self.anchor_cells = str(anchor_cells)
        self.nms_per_level = bool(nms_per_level)
        self.min_box_size = float(min_box_size)
        self.head = RPNHead(anchors_lib.num_anchors_per_location(self.anchor_aspect_ratios),
                            self.conv_channels, name="head")

    def build(self, input_shapes):
        self.head.build(input_shapes)
        self.built = True

    def call(self, features):
        # [P2..P6] -> logits [B, N], deltas [B, N, 4] over the N anchors of `anchors`
        return self.head(features)

    def anchors(self, canvas_size):
        """canvas_size (H, W) of the padded batch, ints or scalar tensors -> (anchors [N, 4],
        anchors per level), in the head's output order."""
        levels = anchors_lib.multilevel_anchors(canvas_size, *ANCHOR_LEVELS, self.anchor_sizes,
                                                self.anchor_aspect_ratios, self.anchor_offset,
                                                self.anchor_cells)
        return tf.concat(levels, axis=0), [dim(a, 0) for a in levels]

    def losses(self, logits, deltas, gt_boxes, gt_valid, canvas_size, image_size,
               seed) -> dict:
        """Objectness BCE and L1 box loss over anchors sampled against the ground truth.

        logits [B, N], deltas [B, N, 4], gt_boxes [B, M, 4], gt_valid [B, M] bool,
        canvas_size (H, W) of the padded batch, image_size [B, 2] each image's size before
        padding, seed [2] (stateless sampling) -> {"rpn_cls", "rpn_box"} scalars, both
        divided by B * batch_size_per_image as in Detectron2. Anchors centred in an image's
        padding are ignored: they would be free negatives.
        """
        anchors, _ = self.anchors(canvas_size)
        batch = dim(gt_boxes, 0)
        anchors = tf.broadcast_to(anchors, tf.stack([batch, dim(anchors, 0), 4]))
        overlaps = iou.pairwise_iou(anchors, gt_boxes)  # [B, N, M]
        matched, labels = matcher.match_boxes(overlaps, gt_valid, self.iou_thresholds[0],
                                              self.iou_thresholds[1], allow_low_quality=True)
        centres = (anchors[..., :2] + anchors[..., 2:]) / 2  # [B, N, 2]
        size = tf.cast(image_size, tf.float32)[:, tf.newaxis, :]
        labels = tf.where(tf.reduce_all(centres < size, axis=-1), labels, -1)
        sampled = sampling.sample_balanced(labels, self.batch_size_per_image,
                                           self.positive_fraction, seed=seed)
        targets = box_coder.encode_boxes(tf.gather(gt_boxes, matched, batch_dims=1), anchors)

        logits, deltas = tf.cast(logits, tf.float32), tf.cast(deltas, tf.float32)
        normalizer = tf.cast(batch, tf.float32) * float(self.batch_size_per_image)
        weights = tf.cast(sampled, tf.float32)
        positive = tf.cast(tf.equal(labels, 1), tf.float32)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logits)
        l1 = tf.reduce_sum(tf.abs(deltas - targets), axis=-1)
        return {"rpn_cls": tf.reduce_sum(bce * weights) / normalizer,
                "rpn_box": tf.reduce_sum(l1 * weights * positive) / normalizer}

    def proposals(self, logits, deltas, canvas_size, image_size, training: bool):
        """Top-k anchors per level, decoded and clipped to their image; empty boxes (and
        those with a side below min_box_size) dropped; NMS per level (boxes of different
        levels never suppress each other; over all at once without nms_per_level), then the
        best post_nms_topk over all levels, as Detectron2's find_top_rpn_proposals and
        torchvision's filter_proposals.

        logits [B, N], deltas [B, N, 4], canvas_size (H, W) of the padded batch, image_size
        [B, 2] each image's size before padding -> boxes [B, P, 4], scores [B, P] (logits),
        valid [B, P] bool; P = post_nms_topk of the mode. No gradient flows into proposals
        (Faster R-CNN's approximate joint training).
        """
        pre_nms_topk = self.pre_nms_topk_train if training else self.pre_nms_topk_test
        post_nms_topk = self.post_nms_topk_train if training else self.post_nms_topk_test
        anchors, level_sizes = self.anchors(canvas_size)
        image_size = tf.cast(image_size, tf.float32)[:, tf.newaxis, :]  # [B, 1, 2]
        logits = tf.stop_gradient(tf.cast(logits, tf.float32))
        deltas = tf.stop_gradient(tf.cast(deltas, tf.float32))
        boxes_per_level, scores_per_level, level_ids = [], [], []
        start = 0
        for level, size in enumerate(level_sizes):
            k = _smaller(pre_nms_topk, size)
            top_scores, top_index = tf.math.top_k(logits[:, start:start + size], k=k,
                                                  sorted=False)
            level_deltas = tf.gather(deltas[:, start:start + size], top_index, batch_dims=1)
            level_anchors = tf.gather(anchors[start:start + size], top_index)
            boxes = box_coder.decode_boxes(level_deltas, level_anchors)
            boxes_per_level.append(box_coder.clip_boxes(boxes, image_size))
            scores_per_level.append(top_scores)
            level_ids.append(tf.fill(tf.reshape(k, [1]), level))
            start += size
        boxes = tf.concat(boxes_per_level, axis=1)
        sides = boxes[..., 2:] - boxes[..., :2]  # [B, N, 2] height, width
        nonempty = tf.reduce_all(sides > MIN_PROPOSAL_SIZE, axis=-1)
        if self.min_box_size > MIN_PROPOSAL_SIZE:
            nonempty &= tf.reduce_all(sides >= self.min_box_size, axis=-1)
        scores = tf.where(nonempty, tf.concat(scores_per_level, axis=1), -float("inf"))
        boxes, scores, _, count = nms.batched_nms(
            boxes, scores, max_output=post_nms_topk, iou_threshold=self.nms_threshold,
            score_threshold=LOWEST_SCORE, xla=self.static_shapes,
            groups=tf.concat(level_ids, axis=0) if self.nms_per_level else None)
        valid = tf.range(post_nms_topk)[tf.newaxis, :] < count[:, tf.newaxis]
        return boxes, scores, valid

    def get_config(self):
        return {**super().get_config(), "conv_channels": self.conv_channels,
                "anchor_sizes": self.anchor_sizes,
                "anchor_aspect_ratios": self.anchor_aspect_ratios,
                "iou_thresholds": self.iou_thresholds,
                "batch_size_per_image": self.batch_size_per_image,
                "positive_fraction": self.positive_fraction,
                "pre_nms_topk_train": self.pre_nms_topk_train,
                "post_nms_topk_train": self.post_nms_topk_train,
                "pre_nms_topk_test": self.pre_nms_topk_test,
                "post_nms_topk_test": self.post_nms_topk_test,
                "nms_threshold": self.nms_threshold, "static_shapes": self.static_shapes,
                "anchor_offset": self.anchor_offset, "anchor_cells": self.anchor_cells,
                "nms_per_level": self.nms_per_level, "min_box_size": self.min_box_size}


def _smaller(a, b):
    """min of two sizes, a Python int when both are (a static top-k)."""
    return min(a, b) if isinstance(b, int) else tf.minimum(a, b)
