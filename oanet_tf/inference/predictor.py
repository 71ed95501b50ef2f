"""Panoptic inference: OANet.detect followed by the post-processor, in one tf.function per batch.

One detection pass can be merged in several orders (ranking, detection, product), which is
how the heuristic baseline and the SRM are compared on the same trained model.
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.config import SRM_MERGEABLE, EvalConfig
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.inference.postprocessor import PanopticPostprocessor


class PanopticPredictor:
    """Padded images -> detections and, per merge order, panoptic maps at the original sizes
    with their segment tables (`oanet_tf.inference.postprocessor`)."""

    def __init__(self, model, categories: CategoryMap, eval_config: EvalConfig, orders=None):
        if categories.num_things != model.num_things or categories.num_stuff != model.num_stuff:
            raise ValueError(
                f"categories ({categories.num_things} things, {categories.num_stuff} stuff) "
                f"do not match the model ({model.num_things} things, {model.num_stuff} stuff)")
        self.model = model
        # eval.srm_input "mergeable": the SRM reads only the detections the merge may draw.
        self.srm_min_score = (eval_config.instance_score_threshold
                              if eval_config.srm_input == SRM_MERGEABLE else None)
        self.postprocessor = PanopticPostprocessor(categories, eval_config, orders)
        self.orders = self.postprocessor.orders
        self._predict = tf.function(self._predict_batch, reduce_retracing=True)
        self._panoptic = tf.function(self.panoptic_outputs, reduce_retracing=True)

    def _predict_batch(self, images, image_size, original_size):
        detections = self.model.detect(images, image_size, self.srm_min_score)
        return detections, self.postprocessor(detections, image_size, original_size)

    def __call__(self, images, image_size, original_size):
        """images [B, H, W, 3] padded, image_size [B, 2] before padding, original_size [B, 2]
        -> (OANet.detect's dict, {order: post-processor outputs})."""
        return self._predict(images, image_size, original_size)

    def panoptic(self, images, image_size, original_size):
        """As `__call__`, the post-processor's outputs alone: the detections' image-sized
        tensors (instance_masks, ranking_map) are then never computed."""
        return self._panoptic(images, image_size, original_size)

    def panoptic_outputs(self, images, image_size, original_size):
        """`panoptic` untraced, for a caller's own tf.function (the export's)."""
        return self._predict_batch(images, image_size, original_size)[1]
