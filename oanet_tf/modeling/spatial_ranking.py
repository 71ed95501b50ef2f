"""The spatial ranking module as one component (paper section 3.2): the SRM layer
(`srm_layer`), the choice between its every-pixel and data-sized paths, its loss (Eq. 2)
and the ranking scores of detections (Eq. 3).

Eq. 2: cross-entropy of the ranking score map against the thing category that owns each pixel
in the panoptic ground truth, on pixels covered by two or more instances only (paper 4.2).
With an SRM stride s > 1 the owner and count are sampled at the centre pixel of each s x s
cell (nearest). Without static shapes the loss computes the logits at the conflicting cells
only, from the list of mask pixels.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.modeling import srm_layer
from oanet_tf.modeling.srm_layer import static_stride
from oanet_tf.ops.shapes import dims

MIN_CONFLICT_COUNT = 2  # a pixel covered by this many instances or more is a conflict


@keras.saving.register_keras_serializable(package="oanet_tf")
class SpatialRanking(keras.layers.Layer):
    """Instance masks -> ranking loss (training) or ranking scores (inference).

    `static_shapes`: the SRM on every pixel, which XLA compiles; otherwise only on the cells
    that Eq. 2 or Eq. 3 read (equal up to float rounding). `loss_weight` weighs L_srm in
    Eq. 1.
    """

    def __init__(self, *, num_things: int, kernel: str, kernel_size: int, stride: int,
                 static_shapes: bool, loss_weight: float, **kwargs):
        super().__init__(**kwargs)
        self.num_things = int(num_things)
        self.kernel, self.kernel_size, self.stride = kernel, int(kernel_size), int(stride)
        self.static_shapes = bool(static_shapes)
        self.loss_weight = float(loss_weight)
        self.module = srm_layer.SpatialRankingModule(self.num_things, self.kernel,
                                                     self.kernel_size, self.stride,
                                                     name="module")

    def build(self, channels_shape):
        """channels_shape: [B, H, W, T], the thing-channel tensor of an input image size."""
        if not self.module.built:  # a deserialized module arrives built
            self.module.build(channels_shape)
        self.built = True

    def loss(self, gt_masks, gt_classes, owner):
        """Eq. 2 on the ground-truth instances of a batch.

        gt_masks [B, M, H, W], gt_classes [B, M] (1..T, 0 = padding), owner [B, H, W] (thing
        index owning each pixel, IGNORE_LABEL elsewhere) -> scalar float32
        """
        if not self.static_shapes:
            return self._loss_on_pixels(gt_masks, gt_classes, owner)
        channels, count = srm_layer.srm_inputs(gt_masks, gt_classes, self.num_things)
        return srm_loss(self.module(channels), owner, count, self.stride)

    def _loss_on_pixels(self, gt_masks, gt_classes, owner):
        """`loss` from the list of mask pixels and the categories present, the logits at the
        conflicting cells alone, without the full-size tensor with a channel per category."""
        batch, _, height, width = dims(gt_masks)
        pixels = srm_layer.instance_pixels(gt_masks, gt_classes, self.num_things)
        channels, present = srm_layer.present_inputs(pixels, gt_classes, self.num_things,
                                                     (batch, height, width))
        count = tf.scatter_nd(tf.gather(pixels, [0, 2, 3], axis=1),
                              tf.ones_like(pixels[:, 0], tf.int32),
                              tf.cast(tf.stack([batch, height, width]), tf.int64))
        conflict, labels = conflict_targets(owner, count, self.stride, self.num_things)
        cells = tf.where(conflict)
        return srm_loss_at(self.module.present_logits_at(channels, present, cells),
                           tf.gather_nd(labels, cells))

    def ranking_map(self, channels):
        """The ranking score map S on the cells some instance covers, 0 elsewhere.
        channels [B, H, W, T] (0/1) -> [B, H/stride, W/stride, T] float32"""
        if self.static_shapes:  # S everywhere, kept where an instance lies
            covered = tf.cast(self.module.covered_cells(channels), tf.float32)[..., tf.newaxis]
            return covered * tf.nn.softmax(tf.cast(self.module(channels), tf.float32))
        return self.module.covered_score_map(channels)

    def rank(self, masks, classes):
        """Eq. 3 for detections: masks [B, D, H, W] 0/1 or bool, classes [B, D] (1..T, 0 =
        none) -> (ranking scores [B, D], ranking map [B, h, w, T])."""
        if not self.static_shapes:
            pixels = srm_layer.instance_pixels(masks, classes, self.num_things)
            return self.rank_pixels(pixels, classes, dims(masks)[2:])
        masks = tf.cast(masks, tf.float32)
        channels, _ = srm_layer.srm_inputs(masks, classes, self.num_things)
        score_map = self.ranking_map(channels)
        return srm_layer.ranking_scores(score_map, masks, classes, self.stride), score_map

    def rank_pixels(self, pixels, classes, canvas_size):
        """`rank` from the list of mask pixels (`srm_layer.instance_pixels`, or
        `mask_ops.RoIMasks.pixels` without pasting the masks) and the categories present: no
        full-size tensor with a channel per category (the cost of the static path at stride
        1); not for XLA. pixels [M, 4], classes [B, D], canvas_size (H, W)"""
        size = (dims(classes)[0], *canvas_size)
        channels, present = srm_layer.present_inputs(pixels, classes, self.num_things, size)
        cells, probs = self.module.covered_probs(channels, present)
        grid = tuple(side // self.stride for side in canvas_size)
        scores = srm_layer.pixel_ranking_scores(pixels, cells, probs, classes, self.stride, grid)
        return scores, self.module.score_map(cells, probs, size)

    def get_config(self):
        return {**super().get_config(), "num_things": self.num_things, "kernel": self.kernel,
                "kernel_size": self.kernel_size, "stride": self.stride,
                "static_shapes": self.static_shapes, "loss_weight": self.loss_weight}


def srm_loss(logits, owner, instance_count, stride=None):
    """Eq. 2 on conflicting pixels: softmax cross-entropy against the panoptic owner.

    logits [B, h, w, T] (any float dtype; computed in float32), owner [B, H, W] int (thing
    index 0..T-1 of the pixel's panoptic owner, IGNORE_LABEL elsewhere), instance_count
    [B, H, W] -> scalar float32: the mean over the batch's conflicting pixels (covered by two
    or more instances, with an owner), 0 when there are none. When h < H (SRM stride s, given,
    or read from static shapes), owner and count are sampled at the centre pixel of each s x s
    cell. The mean is per replica batch; scaling across replicas is the caller's business.
    """
    logits = tf.cast(logits, tf.float32)
    stride = stride or static_stride(owner.shape[1], logits.shape[1])
    conflict, labels = conflict_targets(owner, instance_count, stride, logits.shape[-1])
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    weights = tf.cast(conflict, tf.float32)
    return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def srm_loss_at(logits, labels):
    """Eq. 2 from the logits of the conflicting cells alone (`SpatialRankingModule.logits_at`
    on the cells where `conflict_targets` is true): equal to `srm_loss`.

    logits [N, T], labels [N] int -> scalar float32 (0 when N = 0)
    """
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(ce) / tf.maximum(tf.cast(tf.size(ce), tf.float32), 1.0)


def conflict_targets(owner, instance_count, stride: int, num_things: int):
    """Where Eq. 2 applies, and its labels, on the SRM's output grid (1/stride).

    owner [B, H, W] int (see srm_loss), instance_count [B, H, W] -> conflict [B, h, w] bool
    (covered by two or more instances and owned by a thing), labels [B, h, w] int32 (the
    owner there, 0 elsewhere).
    """
    owner = _to_grid(tf.cast(owner, tf.int32), stride)
    count = _to_grid(tf.cast(instance_count, tf.int32), stride)
    owned = (owner != IGNORE_LABEL) & (owner >= 0) & (owner < num_things)
    conflict = (count >= MIN_CONFLICT_COUNT) & owned
    return conflict, tf.where(conflict, owner, 0)


def _to_grid(labels, stride: int):
    """Nearest (cell-centre) sampling of [B, H, W] labels onto the [B, H/s, W/s] grid."""
    if stride == 1:
        return labels
    offset = stride // 2
    return labels[:, offset::stride, offset::stride]
