"""The spatial ranking module as one component (paper section 3.2): the SRM layer, the choice
between its every-pixel and data-sized paths, its loss (Eq. 2) and the ranking scores of
detections (Eq. 3)."""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.modeling import srm as srm_lib


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
        self.module = srm_lib.SpatialRankingModule(self.num_things, self.kernel,
                                                   self.kernel_size, self.stride, name="module")

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
        channels, count = srm_lib.srm_inputs(gt_masks, gt_classes, self.num_things)
        if self.static_shapes:
            return srm_lib.srm_loss(self.module(channels), owner, count, self.stride)
        return srm_lib.srm_loss_on_conflicts(self.module, channels, owner, count)

    def ranking_map(self, channels):
        """The ranking score map S on the cells some instance covers, 0 elsewhere.
        channels [B, H, W, T] (0/1) -> [B, H/stride, W/stride, T] float32"""
        if self.static_shapes:  # S everywhere, kept where an instance lies
            covered = tf.cast(self.module.covered_cells(channels), tf.float32)[..., tf.newaxis]
            return covered * tf.nn.softmax(tf.cast(self.module(channels), tf.float32))
        return self.module.covered_score_map(channels)

    def rank(self, masks, classes):
        """Eq. 3 for detections: masks [B, D, H, W] 0/1, classes [B, D] (1..T, 0 = none) ->
        (ranking scores [B, D], ranking map [B, h, w, T])."""
        channels, _ = srm_lib.srm_inputs(masks, classes, self.num_things)
        score_map = self.ranking_map(channels)
        return srm_lib.ranking_scores(score_map, masks, classes, self.stride), score_map

    def get_config(self):
        return {**super().get_config(), "num_things": self.num_things, "kernel": self.kernel,
                "kernel_size": self.kernel_size, "stride": self.stride,
                "static_shapes": self.static_shapes, "loss_weight": self.loss_weight}
