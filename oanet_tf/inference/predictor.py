"""Panoptic inference: OANet.detect followed by the merge, in one tf.function per batch.

One detection pass can be merged in several orders (ranking, detection, product), which is
how the heuristic baseline and the SRM are compared on the same trained model.
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.config import EvalConfig
from oanet_tf.inference.panoptic_merge import merge_order_scores, panoptic_merge


class PanopticPredictor:
    """images -> detections and one merged panoptic result per merge order."""

    def __init__(self, model, eval_config: EvalConfig, orders=None):
        self.model = model
        self.eval_config = eval_config
        self.orders = tuple(orders or (eval_config.merge_order,))
        self._predict = tf.function(self._predict_batch, reduce_retracing=True)

    def _predict_batch(self, images, image_size, original_size):
        detections = self.model.detect(images)
        # The minimum stuff area is in original pixels; the merge runs at the resized size.
        scale = (tf.reduce_prod(tf.cast(image_size, tf.float32), axis=-1)
                 / tf.reduce_prod(tf.cast(original_size, tf.float32), axis=-1))
        min_area = float(self.eval_config.min_stuff_area) * scale  # [B]
        merged = {}
        for order in self.orders:
            merged[order] = panoptic_merge(
                detections["instance_masks"], detections["classes"], detections["scores"],
                merge_order_scores(order, detections["scores"], detections["ranking_scores"]),
                detections["stuff_probs"], self.model.num_things,
                overlap_threshold=self.eval_config.overlap_threshold,
                instance_score_threshold=self.eval_config.instance_score_threshold,
                min_stuff_area=min_area, image_size=image_size)
        return detections, merged

    def __call__(self, images, image_size, original_size):
        """images [B, H, W, 3], image_size [B, 2], original_size [B, 2] ->
        (detections dict of OANet.detect, {order: panoptic_merge outputs})."""
        return self._predict(images, image_size, original_size)
