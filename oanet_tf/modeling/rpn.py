"""Region Proposal Network: the head, its losses, and proposal selection (Ren et al., 2015)."""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.ops import box_coder, nms

HEAD_INIT_STDDEV = 0.01


@keras.saving.register_keras_serializable(package="oanet_tf")
class RPNHead(keras.layers.Layer):
    """A 3x3 conv shared over levels, then 1x1 objectness and box-delta predictors."""

    def __init__(self, num_anchors: int, channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = num_anchors
        self.channels = channels
        init = keras.initializers.RandomNormal(stddev=HEAD_INIT_STDDEV)
        self.conv = keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                        kernel_initializer=init, name="conv")
        self.objectness = keras.layers.Conv2D(num_anchors, 1, kernel_initializer=init,
                                              name="objectness")
        self.deltas = keras.layers.Conv2D(num_anchors * 4, 1, kernel_initializer=init,
                                          name="deltas")

    def build(self, input_shapes):
        self.conv.build(input_shapes[0])
        hidden = tuple(input_shapes[0][:-1]) + (self.channels,)
        self.objectness.build(hidden)
        self.deltas.build(hidden)
        self.built = True

    def call(self, features):
        # [P2..P6] each [B, H_l, W_l, C] -> logits [B, N], deltas [B, N, 4]; N = sum H_l*W_l*A,
        # ordered level by level, row-major over (y, x), then anchors (ops.anchors order).
        logits, deltas = [], []
        for feature in features:
            hidden = self.conv(feature)
            h, w = feature.shape[1], feature.shape[2]
            count = h * w * self.num_anchors
            logits.append(tf.reshape(self.objectness(hidden), [-1, count]))
            deltas.append(tf.reshape(self.deltas(hidden), [-1, count, 4]))
        return tf.concat(logits, axis=1), tf.concat(deltas, axis=1)

    def get_config(self):
        return {**super().get_config(), "num_anchors": self.num_anchors,
                "channels": self.channels}


def rpn_losses(logits, deltas, sampled, labels, target_deltas, batch_size_per_image):
    """Objectness BCE and L1 box loss over the sampled anchors, Detectron2's normalisation.

    logits [B, N], deltas [B, N, 4], sampled [B, N] bool, labels [B, N] (1 pos, 0 neg),
    target_deltas [B, N, 4] -> (cls_loss, box_loss) scalars, both divided by
    B * batch_size_per_image.
    """
    logits = tf.cast(logits, tf.float32)
    deltas = tf.cast(deltas, tf.float32)
    batch = tf.cast(tf.shape(logits)[0], tf.float32)
    normalizer = batch * float(batch_size_per_image)
    weights = tf.cast(sampled, tf.float32)
    targets = tf.cast(tf.equal(labels, 1), tf.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    cls_loss = tf.reduce_sum(bce * weights) / normalizer
    positive = weights * targets
    l1 = tf.reduce_sum(tf.abs(deltas - target_deltas), axis=-1)
    box_loss = tf.reduce_sum(l1 * positive) / normalizer
    return cls_loss, box_loss


def select_proposals(logits, deltas, anchors, level_sizes, image_size, pre_nms_topk: int,
                     post_nms_topk: int, nms_threshold: float, xla: bool = False):
    """Top-k anchors per level, decoded and clipped, then NMS over all levels.

    logits [B, N], deltas [B, N, 4], anchors [N, 4], level_sizes: anchors per level ->
    boxes [B, post_nms_topk, 4], scores [B, post_nms_topk] (logits), valid [B, post] bool.
    Gradients do not flow into proposals (as in Faster R-CNN's approximate joint training).
    """
    logits = tf.stop_gradient(tf.cast(logits, tf.float32))
    deltas = tf.stop_gradient(tf.cast(deltas, tf.float32))
    boxes_per_level, scores_per_level = [], []
    start = 0
    for size in level_sizes:
        level_logits = logits[:, start:start + size]
        k = min(pre_nms_topk, size)
        top_scores, top_index = tf.math.top_k(level_logits, k=k, sorted=False)
        level_deltas = tf.gather(deltas[:, start:start + size], top_index, batch_dims=1)
        level_anchors = tf.gather(anchors[start:start + size], top_index)
        boxes = box_coder.decode_boxes(level_deltas, level_anchors)
        boxes_per_level.append(box_coder.clip_boxes(boxes, image_size))
        scores_per_level.append(top_scores)
        start += size
    boxes = tf.concat(boxes_per_level, axis=1)
    scores = tf.concat(scores_per_level, axis=1)
    boxes, scores, _, count = nms.batched_nms(boxes, scores, max_output=post_nms_topk,
                                              iou_threshold=nms_threshold, xla=xla)
    valid = tf.range(post_nms_topk)[tf.newaxis, :] < count[:, tf.newaxis]
    return boxes, scores, valid
