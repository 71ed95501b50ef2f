"""OANet (Liu et al., CVPR 2019), the meta-architecture of the paper's Figure 2.

    images -> backbone -> FPN (P2..P6) --+--> instance branch: RPN -> proposals -> RoIAlign
                                         |      -> box head, mask head          (Mask R-CNN)
                                         +--> stuff branch (Figure 3) -> semantic logits
    instance masks (GT when training, predictions at inference) -> spatial ranking module

The dense part (images -> FPN maps, RPN maps, semantic logits) is a Keras functional graph;
the RoI heads and the SRM are layers called on boxes and masks by `train_step` and `detect`.
Components are built once (see `builder.py`) and handed in.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.training import guarded_update
from oanet_tf.modeling import rpn as rpn_lib
from oanet_tf.modeling import srm as srm_lib
from oanet_tf.ops import anchors as anchors_lib
from oanet_tf.ops import box_coder, iou, mask_ops, matcher, nms, roi_align, sampling
from oanet_tf.ops.mask_ops import MASK_THRESHOLD

LOSS_NAMES = ("rpn_cls", "rpn_box", "cls", "box", "mask", "seg", "srm")
ROI_LEVELS = (2, 5)  # RoIAlign reads P2..P5; P6 feeds the RPN only
SEMANTIC_STRIDE = 4  # the stuff branch predicts at 1/4 of the input
# Independent random streams of one training step (stateless, keyed by seed and step).
RPN_SAMPLING_STREAM, ROI_SAMPLING_STREAM = 0, 1


@keras.saving.register_keras_serializable(package="oanet_tf")
class OANet(keras.Model):
    """The end-to-end panoptic network with its multi-loss `train_step` (paper Eq. 1)."""

    def __init__(self, backbone, fpn, rpn_head, box_head, mask_head, stuff_head, srm, *,
                 image_size, num_things, num_stuff, stuff_backbone=None, stuff_fpn=None,
                 semantic_supervision="all", anchor_sizes=(32, 64, 128, 256, 512),
                 anchor_aspect_ratios=(0.5, 1.0, 2.0), rpn_iou_thresholds=(0.3, 0.7),
                 rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
                 rpn_pre_nms_topk_train=2000, rpn_post_nms_topk_train=1000,
                 rpn_pre_nms_topk_test=1000, rpn_post_nms_topk_test=1000,
                 rpn_nms_threshold=0.7, roi_batch_size_per_image=512,
                 roi_positive_fraction=0.25, roi_iou_threshold=0.5,
                 box_coder_weights=(10.0, 10.0, 5.0, 5.0), box_pooler_resolution=7,
                 mask_pooler_resolution=14, pooler_sampling_ratio=2,
                 test_score_threshold=0.05, test_nms_threshold=0.5, detections_per_image=100,
                 seg_loss_weight=0.25, srm_loss_weight=1.0, seed=0, xla_ops=False, **kwargs):
        height, width = (int(s) for s in image_size)
        images = keras.Input(shape=(height, width, 3), name="images")
        c_features = backbone(images)
        features = fpn(c_features)
        if stuff_fpn is None:  # sharing "backbone_fpn": the stuff branch reads the same maps
            stuff_features = features
        else:
            stuff_c = c_features if stuff_backbone is None else stuff_backbone(images)
            stuff_features = stuff_fpn(stuff_c)
        rpn_logits, rpn_deltas = rpn_head(features)
        semantic_logits = stuff_head(stuff_features[:4])
        outputs = {"features": features, "rpn_logits": rpn_logits, "rpn_deltas": rpn_deltas,
                   "semantic_logits": semantic_logits}
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        self.backbone, self.fpn, self.rpn_head = backbone, fpn, rpn_head
        self.box_head, self.mask_head, self.stuff_head, self.srm = (
            box_head, mask_head, stuff_head, srm)
        self.stuff_backbone, self.stuff_fpn = stuff_backbone, stuff_fpn
        self.image_size = (height, width)
        self.num_things, self.num_stuff = int(num_things), int(num_stuff)
        self.semantic_supervision = semantic_supervision
        self.anchor_sizes = tuple(anchor_sizes)
        self.anchor_aspect_ratios = tuple(anchor_aspect_ratios)
        self.rpn_iou_thresholds = tuple(rpn_iou_thresholds)
        self.rpn_batch_size_per_image = int(rpn_batch_size_per_image)
        self.rpn_positive_fraction = float(rpn_positive_fraction)
        self.rpn_pre_nms_topk_train = int(rpn_pre_nms_topk_train)
        self.rpn_post_nms_topk_train = int(rpn_post_nms_topk_train)
        self.rpn_pre_nms_topk_test = int(rpn_pre_nms_topk_test)
        self.rpn_post_nms_topk_test = int(rpn_post_nms_topk_test)
        self.rpn_nms_threshold = float(rpn_nms_threshold)
        self.roi_batch_size_per_image = int(roi_batch_size_per_image)
        self.roi_positive_fraction = float(roi_positive_fraction)
        self.roi_iou_threshold = float(roi_iou_threshold)
        self.box_coder_weights = tuple(float(w) for w in box_coder_weights)
        self.box_pooler_resolution = int(box_pooler_resolution)
        self.mask_pooler_resolution = int(mask_pooler_resolution)
        self.pooler_sampling_ratio = int(pooler_sampling_ratio)
        self.test_score_threshold = float(test_score_threshold)
        self.test_nms_threshold = float(test_nms_threshold)
        self.detections_per_image = int(detections_per_image)
        self.seg_loss_weight = float(seg_loss_weight)
        self.srm_loss_weight = float(srm_loss_weight)
        self.seed = int(seed)
        # Static shapes for XLA: padded proposal NMS, RoIAlign by gathers, the mask head on
        # fixed slots and the SRM on every pixel. Without XLA the model picks the faster
        # data-sized paths (greedy NMS, crop_and_resize, positives only, SRM on the cells
        # its loss or Eq. 3 reads).
        self.xla_ops = bool(xla_ops)

        level_anchors = anchors_lib.multilevel_anchors(
            self.image_size, 2, 6, self.anchor_sizes, self.anchor_aspect_ratios)
        self._level_sizes = [int(a.shape[0]) for a in level_anchors]
        self._anchors = tf.concat(level_anchors, axis=0)  # [N, 4], a constant of the graph
        self.loss_trackers = {name: keras.metrics.Mean(name=f"{name}_loss")
                              for name in LOSS_NAMES + ("total",)}
        # Steps whose loss or gradients were not finite (their update was skipped).
        self.nonfinite_tracker = keras.metrics.Sum(name="nonfinite_steps")
        self._build_roi_heads_and_srm(fpn.channels)

    def _build_roi_heads_and_srm(self, channels: int):
        """Create the variables of the layers outside the functional graph, so that the
        optimizer (built from `trainable_variables`) covers them."""
        box, mask = self.box_pooler_resolution, self.mask_pooler_resolution
        shapes = ((self.box_head, (None, None, box, box, channels)),
                  (self.mask_head, (None, None, mask, mask, channels)),
                  (self.srm, (None,) + self.image_size + (self.num_things,)))
        for layer, shape in shapes:
            if not layer.built:  # a deserialized layer arrives built
                layer.build(shape)

    # ----------------------------------------------------------------------------- training
    @property
    def metrics(self):
        return list(self.loss_trackers.values()) + [self.nonfinite_tracker] + super().metrics

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """OANet creates its variables when constructed; only the optimizer is left to build.

        Keras' default draws a sample batch from the training iterator and reduces it across
        replicas with `strategy.reduce`, which fails under MultiWorkerMirroredStrategy
        (keras-team/keras#20585) and takes one batch out of the training stream, so a resumed
        run would read different data than the run it continues.
        """
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        self._post_build()

    def compute_losses(self, batch, training: bool, step=0) -> dict:
        """Every term of Eq. 1 for one (per-replica) batch -> {name: scalar float32}.

        `step` keys the random sampling of anchors and RoIs (stateless), so that a step gives
        the same losses whenever it is run: after a resume, on any worker layout, twice.
        """
        outputs = self(batch["images"], training=training)
        gt_boxes = batch["gt_boxes"]
        gt_classes = tf.cast(batch["gt_classes"], tf.int32)
        gt_valid = gt_classes > 0
        losses = {}
        losses["rpn_cls"], losses["rpn_box"] = self._rpn_losses(
            outputs, gt_boxes, gt_valid, self._sampling_seed(step, RPN_SAMPLING_STREAM))
        losses.update(self._roi_losses(outputs, batch, gt_boxes, gt_classes, gt_valid,
                                       self._sampling_seed(step, ROI_SAMPLING_STREAM)))
        losses["seg"] = self._semantic_loss(outputs["semantic_logits"], batch["semantic"])
        losses["srm"] = self._srm_loss(batch["gt_masks"], gt_classes, batch["owner"],
                                       training=training)
        return losses

    def total_loss(self, losses: dict):
        """Eq. 1: L = L_rpn_cls + L_rpn_box + L_cls + L_box + L_mask + lambda L_seg + L_srm."""
        weights = {"seg": self.seg_loss_weight, "srm": self.srm_loss_weight}
        return tf.add_n([weights.get(name, 1.0) * value for name, value in losses.items()])

    def train_step(self, data):
        step = self.optimizer.iterations
        state = [tf.identity(v) for v in self.non_trainable_variables]  # before the forward
        with tf.GradientTape() as tape:
            losses = self.compute_losses(data, training=True, step=step)
            total = self.total_loss(losses)
            # Each replica's gradient is summed across replicas: scale the mean once here.
            scaled = self.optimizer.scale_loss(total / _num_replicas())
        gradients = tape.gradient(scaled, self.trainable_variables)
        # A loss-scale optimizer skips overflowing gradients itself (and lowers its scale);
        # otherwise a non-finite gradient skips the step as a non-finite loss does.
        checked = [total] + ([] if _scales_loss(self.optimizer) else gradients)
        finite = guarded_update.all_replicas_finite(checked)
        guarded_update.apply_if(self.optimizer, finite, gradients, self.trainable_variables)
        guarded_update.restore_unless(finite, self.non_trainable_variables, state)
        return self._track(losses, total, finite)

    def test_step(self, data):
        losses = self.compute_losses(data, training=False)
        total = self.total_loss(losses)
        return self._track(losses, total, guarded_update.all_replicas_finite([total]))

    def _track(self, losses, total, finite):
        """Update the loss means with a finite step (a skipped one only counts as skipped)
        and return the logs of the step."""
        weight = tf.cast(finite, tf.float32)
        for name, value in list(losses.items()) + [("total", total)]:
            self.loss_trackers[name].update_state(tf.where(finite, value, 0.0), weight)
        self.nonfinite_tracker.update_state(1.0 - weight)
        logs = {f"{name}_loss" if name != "total" else "loss": tracker.result()
                for name, tracker in self.loss_trackers.items()}
        logs["nonfinite_steps"] = self.nonfinite_tracker.result()
        if _multi_worker(tf.distribute.get_strategy()):
            # Keras reduces step logs across workers with strategy.reduce(MEAN, axis=0),
            # which rejects scalars (keras-team/keras#20585): give each a batch axis of 1.
            logs = {name: value[tf.newaxis] for name, value in logs.items()}
        return logs

    def _sampling_seed(self, step, stream: int):
        """A stateless seed [2] for one random stream of one step on this replica."""
        seed = tf.constant([self.seed, stream], tf.int64)
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(step, tf.int64))
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        return tf.random.experimental.stateless_fold_in(seed, replica)

    def _rpn_losses(self, outputs, gt_boxes, gt_valid, seed):
        batch = tf.shape(gt_boxes)[0]
        anchors = tf.broadcast_to(self._anchors, [batch] + self._anchors.shape.as_list())
        overlaps = iou.pairwise_iou(anchors, gt_boxes)  # [B, N, M]
        matched, labels = matcher.match_boxes(overlaps, gt_valid, self.rpn_iou_thresholds[0],
                                              self.rpn_iou_thresholds[1], allow_low_quality=True)
        sampled = sampling.sample_balanced(labels, self.rpn_batch_size_per_image,
                                           self.rpn_positive_fraction, seed=seed)
        targets = box_coder.encode_boxes(tf.gather(gt_boxes, matched, batch_dims=1), anchors)
        return rpn_lib.rpn_losses(outputs["rpn_logits"], outputs["rpn_deltas"], sampled, labels,
                                  targets, self.rpn_batch_size_per_image)

    def _proposals(self, outputs, training: bool):
        pre = self.rpn_pre_nms_topk_train if training else self.rpn_pre_nms_topk_test
        post = self.rpn_post_nms_topk_train if training else self.rpn_post_nms_topk_test
        return rpn_lib.select_proposals(outputs["rpn_logits"], outputs["rpn_deltas"],
                                        self._anchors, self._level_sizes, self.image_size,
                                        pre, post, self.rpn_nms_threshold, xla=self.xla_ops)

    def _roi_losses(self, outputs, batch, gt_boxes, gt_classes, gt_valid, seed) -> dict:
        proposals, _, proposal_valid = self._proposals(outputs, training=True)
        # The ground-truth boxes join the proposals, as in Detectron2.
        rois = tf.concat([proposals, gt_boxes], axis=1)
        rois_valid = tf.concat([proposal_valid, gt_valid], axis=1)
        overlaps = iou.pairwise_iou(rois, gt_boxes)
        matched, labels = matcher.match_boxes(overlaps, gt_valid, self.roi_iou_threshold,
                                              self.roi_iou_threshold, allow_low_quality=False)
        labels = tf.where(rois_valid, labels, -1)
        index, valid = sampling.sample_balanced_indices(
            labels, self.roi_batch_size_per_image, self.roi_positive_fraction, seed=seed)
        rois = tf.gather(rois, index, batch_dims=1)  # [B, S, 4]
        labels = tf.gather(labels, index, batch_dims=1)
        matched = tf.gather(matched, index, batch_dims=1)
        positive = valid & tf.equal(labels, 1)
        classes = tf.where(positive, tf.gather(gt_classes, matched, batch_dims=1), 0)
        matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)

        features = outputs["features"][:4]
        pooled = self._roi_align(features, rois, self.box_pooler_resolution)
        class_logits, box_deltas = self.box_head(pooled, training=True)
        class_logits = tf.cast(class_logits, tf.float32)
        weights = tf.cast(valid, tf.float32)
        num_valid = tf.maximum(tf.reduce_sum(weights), 1.0)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=classes, logits=class_logits)
        cls_loss = tf.reduce_sum(ce * weights) / num_valid
        # Class-specific deltas of the ground-truth class, L1 over positives / sampled RoIs.
        class_deltas = tf.gather(tf.cast(box_deltas, tf.float32),
                                 tf.maximum(classes - 1, 0), batch_dims=2)
        targets = box_coder.encode_boxes(matched_boxes, rois, self.box_coder_weights)
        l1 = tf.reduce_sum(tf.abs(class_deltas - targets), axis=-1)
        box_loss = tf.reduce_sum(l1 * tf.cast(positive, tf.float32)) / num_valid

        mask_loss = self._mask_loss(features, batch["gt_masks"], rois, positive, classes,
                                    matched)
        return {"cls": cls_loss, "box": box_loss, "mask": mask_loss}

    def _mask_loss(self, features, gt_masks, rois, positive, classes, matched):
        """Per-pixel sigmoid BCE of the ground-truth class's 28x28 mask, positive RoIs only
        (static: up to roi_batch_size_per_image * roi_positive_fraction slots per image)."""
        max_positives = int(self.roi_batch_size_per_image * self.roi_positive_fraction)
        _, order = tf.math.top_k(tf.cast(positive, tf.int32), k=max_positives)  # positives first
        if not self.xla_ops:
            # Without XLA shapes may vary: run the head on the positives only (the most of
            # any image in the batch), as Detectron2 does, instead of on every slot.
            most = tf.reduce_max(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1))
            order = order[:, :tf.maximum(most, 1)]
        take = lambda t: tf.gather(t, order, batch_dims=1)  # noqa: E731
        pos_rois, pos_valid, pos_classes, pos_matched = (
            take(rois), take(positive), take(classes), take(matched))
        pooled = self._roi_align(features, pos_rois, self.mask_pooler_resolution)
        logits = tf.cast(self.mask_head(pooled, training=True), tf.float32)  # [B,P,28,28,T]
        logits = tf.gather(tf.transpose(logits, [0, 1, 4, 2, 3]),
                           tf.maximum(pos_classes - 1, 0), batch_dims=2)  # [B, P, 28, 28]
        targets = mask_ops.mask_targets(gt_masks, pos_matched, pos_rois,
                                        size=logits.shape[-1])
        bce = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), axis=[2, 3])
        weights = tf.cast(pos_valid, tf.float32)
        return tf.reduce_sum(bce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def _semantic_labels(self, semantic):
        """Semantic labels in the stuff head's class layout, at the head's 1/4 resolution."""
        offset = SEMANTIC_STRIDE // 2
        labels = tf.cast(semantic[:, offset::SEMANTIC_STRIDE, offset::SEMANTIC_STRIDE], tf.int32)
        if self.semantic_supervision == "stuff_plus_things":
            # One "things" class (0) followed by the stuff classes (1..S).
            labels = tf.where(labels == IGNORE_LABEL, labels,
                              tf.where(labels < self.num_things, 0,
                                       labels - self.num_things + 1))
        return labels

    def _semantic_loss(self, logits, semantic):
        labels = self._semantic_labels(semantic)
        valid = labels != IGNORE_LABEL
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.where(valid, labels, 0), logits=tf.cast(logits, tf.float32))
        weights = tf.cast(valid, tf.float32)
        return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def _srm_loss(self, gt_masks, gt_classes, owner, training):
        channels, count = srm_lib.srm_inputs(gt_masks, gt_classes, self.num_things)
        if self.xla_ops:  # static shapes: the ranking logits of every pixel
            return srm_lib.srm_loss(self.srm(channels, training=training), owner, count)
        # Eq. 2 reads the conflicting pixels only: compute the logits there alone.
        return srm_lib.srm_loss_on_conflicts(self.srm, channels, owner, count)

    def _roi_align(self, features, boxes, size):
        return roi_align.multilevel_roi_align(
            features, boxes, size, sampling_ratio=self.pooler_sampling_ratio,
            min_level=ROI_LEVELS[0], method="gather" if self.xla_ops else "crop_and_resize")

    # ---------------------------------------------------------------------------- inference
    def detect(self, images) -> dict:
        """Inference outputs before the merge.

        images [B, H, W, 3] ->
          boxes [B, D, 4], classes [B, D] (1..T, 0 = none), scores [B, D], masks [B, D, 28, 28]
          (probabilities), num_detections [B], stuff_probs [B, H, W, S] (softmax over stuff),
          instance_masks [B, D, H, W] (pasted probabilities), ranking_scores [B, D] (Eq. 3),
          ranking_map [B, h, w, T] (the SRM's score map on the cells detections cover, 0 on
          the others).
        """
        outputs = self(images, training=False)
        proposals, _, proposal_valid = self._proposals(outputs, training=False)
        features = outputs["features"][:4]
        class_logits, box_deltas = self.box_head(
            self._roi_align(features, proposals, self.box_pooler_resolution), training=False)
        probs = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)[..., 1:]  # [B,R,T]
        probs = probs * tf.cast(proposal_valid, tf.float32)[..., tf.newaxis]
        boxes = box_coder.decode_boxes(tf.cast(box_deltas, tf.float32),
                                       proposals[:, :, tf.newaxis, :], self.box_coder_weights)
        boxes = box_coder.clip_boxes(boxes, self.image_size)  # [B, R, T, 4]
        det_boxes, det_scores, det_classes, count = nms.multiclass_nms(
            boxes, probs, self.detections_per_image, self.detections_per_image,
            self.test_nms_threshold, self.test_score_threshold)
        det_valid = tf.range(self.detections_per_image)[tf.newaxis, :] < count[:, tf.newaxis]
        det_classes = tf.where(det_valid, det_classes + 1, 0)
        det_scores = tf.where(det_valid, det_scores, 0.0)

        mask_logits = self.mask_head(
            self._roi_align(features, det_boxes, self.mask_pooler_resolution), training=False)
        mask_logits = tf.gather(tf.transpose(tf.cast(mask_logits, tf.float32), [0, 1, 4, 2, 3]),
                                tf.maximum(det_classes - 1, 0), batch_dims=2)
        masks = tf.sigmoid(mask_logits) * tf.cast(det_valid, tf.float32)[..., None, None]

        instance_masks = mask_ops.paste_masks(masks, det_boxes, self.image_size)
        binary = tf.cast(instance_masks >= MASK_THRESHOLD, tf.float32)
        channels, _ = srm_lib.srm_inputs(binary, det_classes, self.num_things)
        ranking_map = self._ranking_map(channels)
        ranking = srm_lib.ranking_scores(ranking_map, binary, det_classes)
        return {"boxes": det_boxes, "classes": det_classes, "scores": det_scores,
                "masks": masks, "num_detections": count,
                "stuff_probs": self.stuff_probabilities(outputs["semantic_logits"]),
                "instance_masks": instance_masks, "ranking_scores": ranking,
                "ranking_map": ranking_map}

    def _ranking_map(self, channels):
        """The SRM's score map where detections lie, 0 elsewhere: [B, H, W, T] -> [B, h, w, T]
        float32."""
        if self.xla_ops:  # static shapes: S everywhere, kept where an instance lies
            covered = tf.cast(self.srm.covered_cells(channels), tf.float32)[..., tf.newaxis]
            return covered * tf.nn.softmax(
                tf.cast(self.srm(channels, training=False), tf.float32))
        return self.srm.covered_score_map(channels)

    def stuff_probabilities(self, semantic_logits):
        """Stuff channels only, upsampled to the input size, softmax-normalised.

        semantic_logits [B, H/4, W/4, C] -> [B, H, W, S]
        """
        first = self.num_things if self.semantic_supervision == "all" else 1
        stuff = tf.cast(semantic_logits[..., first:first + self.num_stuff], tf.float32)
        stuff = tf.image.resize(stuff, self.image_size, method="bilinear")
        return tf.nn.softmax(stuff, axis=-1)

    def predict_step(self, data):
        images = data["images"] if isinstance(data, dict) else data
        return self.detect(images)

    # -------------------------------------------------------------------------- serializing
    def get_config(self):
        components = {name: keras.saving.serialize_keras_object(getattr(self, name))
                      for name in ("backbone", "fpn", "rpn_head", "box_head", "mask_head",
                                   "stuff_head", "srm", "stuff_backbone", "stuff_fpn")}
        settings = {name: getattr(self, name) for name in (
            "image_size", "num_things", "num_stuff", "semantic_supervision", "anchor_sizes",
            "anchor_aspect_ratios", "rpn_iou_thresholds", "rpn_batch_size_per_image",
            "rpn_positive_fraction", "rpn_pre_nms_topk_train", "rpn_post_nms_topk_train",
            "rpn_pre_nms_topk_test", "rpn_post_nms_topk_test", "rpn_nms_threshold",
            "roi_batch_size_per_image", "roi_positive_fraction", "roi_iou_threshold",
            "box_coder_weights", "box_pooler_resolution", "mask_pooler_resolution",
            "pooler_sampling_ratio", "test_score_threshold", "test_nms_threshold",
            "detections_per_image", "seg_loss_weight", "srm_loss_weight", "seed", "xla_ops")}
        return {"name": self.name, "trainable": self.trainable, **components, **settings}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("backbone", "fpn", "rpn_head", "box_head", "mask_head", "stuff_head",
                     "srm", "stuff_backbone", "stuff_fpn"):
            if config.get(name) is not None:
                config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def _scales_loss(optimizer) -> bool:
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def _multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several worker processes (Keras then reduces step logs with
    collectives)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")) > 1


def _num_replicas() -> float:
    """Replicas whose gradients are summed (1 outside tf.distribute)."""
    context = tf.distribute.get_replica_context()
    return float(context.num_replicas_in_sync) if context is not None else 1.0
