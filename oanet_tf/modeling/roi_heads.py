"""The RoI heads of Mask R-CNN (He et al., 2017) as one component: RoIAlign over P2..P5, the
box and mask heads, RoI sampling and the class, box and mask losses, and detection
post-processing (class-wise NMS, then masks of the kept boxes)."""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.modeling.box_head import BoxHead
from oanet_tf.modeling.mask_head import MaskHead
from oanet_tf.ops import box_coder, iou, mask_ops, matcher, nms, roi_align, sampling

ROI_LEVELS = (2, 5)  # RoIAlign reads P2..P5; P6 feeds the RPN only


@keras.saving.register_keras_serializable(package="oanet_tf")
class RoIHeads(keras.layers.Layer):
    """Proposals -> losses (training) or detections with masks (inference).

    `static_shapes`: RoIAlign by gathers and the mask head on a fixed number of slots, which
    XLA compiles; otherwise crop_and_resize and the mask head on the positive RoIs only.
    `roi_align_aligned`: RoIAlign's half-pixel shift (False: torchvision's pooler).
    `test_min_box_size`: detections with a side below it are dropped before NMS.
    `unused_class_slots`: class logits after the things that share the softmax but are never
    detected (a converted torchvision model's "N/A" classes).
    """

    def __init__(self, *, num_things: int, box_head_fc_dim: int, box_head_num_fc: int,
                 mask_head_conv_dim: int, mask_head_num_conv: int, batch_size_per_image: int,
                 positive_fraction: float, iou_threshold: float, box_coder_weights,
                 box_pooler_resolution: int, mask_pooler_resolution: int,
                 pooler_sampling_ratio: int, test_score_threshold: float,
                 test_nms_threshold: float, detections_per_image: int, static_shapes: bool,
                 roi_align_aligned: bool = True, test_min_box_size: float = 0.0,
                 unused_class_slots: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_things = int(num_things)
        self.box_head_fc_dim, self.box_head_num_fc = int(box_head_fc_dim), int(box_head_num_fc)
        self.mask_head_conv_dim = int(mask_head_conv_dim)
        self.mask_head_num_conv = int(mask_head_num_conv)
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)
        self.iou_threshold = float(iou_threshold)
        self.box_coder_weights = tuple(float(w) for w in box_coder_weights)
        self.box_pooler_resolution = int(box_pooler_resolution)
        self.mask_pooler_resolution = int(mask_pooler_resolution)
        self.pooler_sampling_ratio = int(pooler_sampling_ratio)
        self.test_score_threshold = float(test_score_threshold)
        self.test_nms_threshold = float(test_nms_threshold)
        self.detections_per_image = int(detections_per_image)
        self.static_shapes = bool(static_shapes)
        self.roi_align_aligned = bool(roi_align_aligned)
        self.test_min_box_size = float(test_min_box_size)
        self.unused_class_slots = int(unused_class_slots)
        self.box_head = BoxHead(self.num_things, self.box_head_fc_dim, self.box_head_num_fc,
                                unused_class_slots=self.unused_class_slots, name="box_head")
        self.mask_head = MaskHead(self.num_things, self.mask_head_conv_dim,
                                  self.mask_head_num_conv, name="mask_head")

    def build(self, feature_shape):
        """feature_shape: one FPN map's shape [B, H, W, C]; the heads read C channels."""
        channels = feature_shape[-1]
        for head, size in ((self.box_head, self.box_pooler_resolution),
                           (self.mask_head, self.mask_pooler_resolution)):
            if not head.built:  # a deserialized head arrives built
                head.build((None, None, size, size, channels))
        self.built = True

    def roi_align(self, features, boxes, resolution: int):
        """features: the FPN maps [P2..P6] (P2..P5 are read), boxes [B, K, 4] (y1, x1, y2, x2
        in input pixels) -> pooled [B, K, resolution, resolution, C]."""
        return roi_align.multilevel_roi_align(
            features[:ROI_LEVELS[1] - ROI_LEVELS[0] + 1], boxes, resolution,
            sampling_ratio=self.pooler_sampling_ratio, min_level=ROI_LEVELS[0],
            aligned=self.roi_align_aligned,
            method="gather" if self.static_shapes else "crop_and_resize")

    # ----------------------------------------------------------------------------- training
    def losses(self, features, proposals, proposal_valid, gt_boxes, gt_classes, gt_masks,
               seed) -> dict:
        """Class, box and mask losses on RoIs sampled from the proposals and ground truth.

        proposals [B, P, 4], proposal_valid [B, P] bool, gt_boxes [B, M, 4], gt_classes
        [B, M] int (1..T, 0 = padding), gt_masks [B, M, H, W], seed [2] -> {"cls", "box",
        "mask"} scalars. The class and box terms are averaged over the sampled RoIs
        (Detectron2), the mask term over the positive ones.
        """
        rois, sampled, positive, classes, matched = self._sample_rois(
            proposals, proposal_valid, gt_boxes, gt_classes, seed)
        class_logits, box_deltas = self.box_head(
            self.roi_align(features, rois, self.box_pooler_resolution), training=True)
        weights = tf.cast(sampled, tf.float32)
        num_rois = tf.maximum(tf.reduce_sum(weights), 1.0)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=classes, logits=tf.cast(class_logits, tf.float32))
        # Class-specific deltas of the ground-truth class, L1 over positives / sampled RoIs.
        class_deltas = tf.gather(tf.cast(box_deltas, tf.float32),
                                 tf.maximum(classes - 1, 0), batch_dims=2)
        targets = box_coder.encode_boxes(tf.gather(gt_boxes, matched, batch_dims=1), rois,
                                         self.box_coder_weights)
        l1 = tf.reduce_sum(tf.abs(class_deltas - targets), axis=-1)
        return {"cls": tf.reduce_sum(ce * weights) / num_rois,
                "box": tf.reduce_sum(l1 * tf.cast(positive, tf.float32)) / num_rois,
                "mask": self._mask_loss(features, gt_masks, rois, positive, classes, matched)}

    def _sample_rois(self, proposals, proposal_valid, gt_boxes, gt_classes, seed):
        """Proposals plus ground-truth boxes (as in Detectron2), matched and sampled.

        -> rois [B, S, 4], sampled [B, S] bool (a real sample, not padding), positive [B, S]
        bool, classes [B, S] int (ground-truth class of positives, 0 otherwise), matched
        [B, S] int (index of the matched ground truth); S = batch_size_per_image.
        """
        gt_valid = gt_classes > 0
        rois = tf.concat([proposals, gt_boxes], axis=1)
        rois_valid = tf.concat([proposal_valid, gt_valid], axis=1)
        matched, labels = matcher.match_boxes(iou.pairwise_iou(rois, gt_boxes), gt_valid,
                                              self.iou_threshold, self.iou_threshold,
                                              allow_low_quality=False)
        labels = tf.where(rois_valid, labels, -1)
        index, sampled = sampling.sample_balanced_indices(
            labels, self.batch_size_per_image, self.positive_fraction, seed=seed)
        take = lambda t: tf.gather(t, index, batch_dims=1)  # noqa: E731
        rois, labels, matched = take(rois), take(labels), take(matched)
        positive = sampled & tf.equal(labels, 1)
        classes = tf.where(positive, tf.gather(gt_classes, matched, batch_dims=1), 0)
        return rois, sampled, positive, classes, matched

    def _mask_loss(self, features, gt_masks, rois, positive, classes, matched):
        """Per-pixel sigmoid BCE of the ground-truth class's 28x28 mask, positive RoIs only
        (static: up to batch_size_per_image * positive_fraction slots per image)."""
        max_positives = int(self.batch_size_per_image * self.positive_fraction)
        _, order = tf.math.top_k(tf.cast(positive, tf.int32), k=max_positives)  # positives first
        if not self.static_shapes:
            # Shapes may vary: run the head on the positives only (the most of any image in
            # the batch), as Detectron2 does, instead of on every slot.
            most = tf.reduce_max(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1))
            order = order[:, :tf.maximum(most, 1)]
        take = lambda t: tf.gather(t, order, batch_dims=1)  # noqa: E731
        rois, positive, classes, matched = take(rois), take(positive), take(classes), take(matched)
        logits = self._class_mask_logits(
            self.mask_head(self.roi_align(features, rois, self.mask_pooler_resolution),
                           training=True), classes)  # [B, P, 28, 28]
        targets = mask_ops.mask_targets(gt_masks, matched, rois, size=logits.shape[-1])
        bce = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), axis=[2, 3])
        weights = tf.cast(positive, tf.float32)
        return tf.reduce_sum(bce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    # ---------------------------------------------------------------------------- inference
    def detect(self, features, proposals, proposal_valid, image_size) -> dict:
        """Scored, class-wise NMS-ed detections and their mask probabilities.

        features [P2..P6], proposals [B, P, 4], proposal_valid [B, P] bool, image_size [B, 2]
        each image's size before padding (boxes are clipped to it) -> boxes [B, D, 4],
        classes [B, D] (1..T, 0 = none), scores [B, D], masks [B, D, 28, 28] (probabilities
        of the detected class), num_detections [B]; D = detections_per_image.
        """
        class_logits, box_deltas = self.box_head(
            self.roi_align(features, proposals, self.box_pooler_resolution), training=False)
        probs = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)
        probs = probs[..., 1:self.num_things + 1]  # [B, P, T]
        probs = probs * tf.cast(proposal_valid, tf.float32)[..., tf.newaxis]
        boxes = box_coder.decode_boxes(tf.cast(box_deltas, tf.float32),
                                       proposals[:, :, tf.newaxis, :], self.box_coder_weights)
        boxes = box_coder.clip_boxes(  # [B, P, T, 4]
            boxes, tf.cast(image_size, tf.float32)[:, tf.newaxis, tf.newaxis, :])
        if self.test_min_box_size > 0:  # too small: below any score threshold
            sides = boxes[..., 2:] - boxes[..., :2]
            probs = tf.where(tf.reduce_all(sides >= self.test_min_box_size, axis=-1), probs, 0.0)
        boxes, scores, classes, count = nms.multiclass_nms(
            boxes, probs, self.detections_per_image, self.detections_per_image,
            self.test_nms_threshold, self.test_score_threshold)
        valid = tf.range(self.detections_per_image)[tf.newaxis, :] < count[:, tf.newaxis]
        classes = tf.where(valid, classes + 1, 0)
        mask_logits = self._class_mask_logits(
            self.mask_head(self.roi_align(features, boxes, self.mask_pooler_resolution),
                           training=False), classes)
        masks = tf.sigmoid(mask_logits) * tf.cast(valid, tf.float32)[..., None, None]
        return {"boxes": boxes, "classes": classes, "scores": tf.where(valid, scores, 0.0),
                "masks": masks, "num_detections": count}

    @staticmethod
    def paste_masks(detections: dict, canvas_size):
        """The detections' mask probabilities pasted into their boxes on the padded batch:
        canvas_size (H, W) -> [B, D, H, W] float32."""
        return mask_ops.paste_masks(detections["masks"], detections["boxes"], canvas_size)

    @staticmethod
    def _class_mask_logits(mask_logits, classes):
        """The mask of each RoI's class: [B, K, S, S, T], classes [B, K] (1..T) ->
        [B, K, S, S] float32."""
        per_class = tf.transpose(tf.cast(mask_logits, tf.float32), [0, 1, 4, 2, 3])
        return tf.gather(per_class, tf.maximum(classes - 1, 0), batch_dims=2)

    def get_config(self):
        return {**super().get_config(), "num_things": self.num_things,
                "box_head_fc_dim": self.box_head_fc_dim,
                "box_head_num_fc": self.box_head_num_fc,
                "mask_head_conv_dim": self.mask_head_conv_dim,
                "mask_head_num_conv": self.mask_head_num_conv,
                "batch_size_per_image": self.batch_size_per_image,
                "positive_fraction": self.positive_fraction,
                "iou_threshold": self.iou_threshold, "box_coder_weights": self.box_coder_weights,
                "box_pooler_resolution": self.box_pooler_resolution,
                "mask_pooler_resolution": self.mask_pooler_resolution,
                "pooler_sampling_ratio": self.pooler_sampling_ratio,
                "test_score_threshold": self.test_score_threshold,
                "test_nms_threshold": self.test_nms_threshold,
                "detections_per_image": self.detections_per_image,
                "static_shapes": self.static_shapes, "roi_align_aligned": self.roi_align_aligned,
                "test_min_box_size": self.test_min_box_size,
                "unused_class_slots": self.unused_class_slots}
