"""OANet (Liu et al., CVPR 2019), the meta-architecture of the paper's Figure 2.

    images -> backbone -> FPN (P2..P6) --+--> instance branch: RPN -> proposals -> RoI heads
                                         |      (boxes, classes, masks)        (Mask R-CNN)
                                         +--> stuff branch (Figure 3) -> semantic logits
    instance masks (GT when training, detections at inference) -> spatial ranking module

The dense part (images -> FPN maps, RPN maps, semantic logits) is a Keras functional graph;
the RoI heads and the SRM work on boxes and masks in `compute_losses` and `detect`. Each
component owns its hyperparameters, losses and post-processing; they are built once (see
`builder.py`) and handed in. The Keras train and test steps are `train_step.py`'s, beside
this module, so that `model.fit` runs them under any strategy.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.modeling import legacy_weights
from oanet_tf.modeling.train_step import StepLog, build_optimizer, run_test_step, run_train_step
from oanet_tf.ops import mask_ops
from oanet_tf.ops.mask_ops import MASK_THRESHOLD
from oanet_tf.ops.sampling import step_seed
from oanet_tf.ops.shapes import image_canvas

LOSS_NAMES = ("rpn_cls", "rpn_box", "cls", "box", "mask", "seg", "srm")
# Independent random streams of one training step (stateless, keyed by seed and step).
RPN_SAMPLING_STREAM, ROI_SAMPLING_STREAM = 0, 1
COMPONENTS = ("backbone", "fpn", "rpn", "roi_heads", "stuff_branch", "srm", "stuff_backbone",
              "stuff_fpn")


@keras.saving.register_keras_serializable(package="oanet_tf")
class OANet(keras.Model):
    """The end-to-end panoptic network with its multi-loss train step (paper Eq. 1).

    stuff_backbone / stuff_fpn: the stuff branch's own backbone and FPN (Table 4's sharing
    modes); None to read the instance branch's.
    """

    def __init__(self, backbone, fpn, rpn, roi_heads, stuff_branch, srm, *, seed: int,
                 stuff_backbone=None, stuff_fpn=None, **kwargs):
        # Any padded size that is a multiple of SIZE_DIVISIBILITY: the batch's own.
        images = keras.Input(shape=(None, None, 3), name="images")
        c_features = backbone(images)
        features = fpn(c_features)
        stuff_features = features
        if stuff_fpn is not None:
            stuff_features = stuff_fpn(c_features if stuff_backbone is None
                                       else stuff_backbone(images))
        rpn_logits, rpn_deltas = rpn(features)
        outputs = {"features": features, "rpn_logits": rpn_logits, "rpn_deltas": rpn_deltas,
                   "semantic_logits": stuff_branch(stuff_features)}
        super().__init__(inputs=images, outputs=outputs, **kwargs)
        self.backbone, self.fpn, self.rpn, self.roi_heads = backbone, fpn, rpn, roi_heads
        self.stuff_branch, self.srm = stuff_branch, srm
        self.stuff_backbone, self.stuff_fpn = stuff_backbone, stuff_fpn
        self.seed = int(seed)
        self.step_log = StepLog(LOSS_NAMES)
        # The layers outside the functional graph create their variables now, so that the
        # optimizer (built from `trainable_variables`) covers them.
        roi_heads.build(features[0].shape)
        srm.build((None, None, None, srm.num_things))

    def compute_losses(self, batch, training: bool, step=0) -> dict:
        """Every term of Eq. 1 for one (per-replica) batch -> {name: scalar float32}.

        `step` keys the random sampling of anchors and RoIs (stateless), so that a step gives
        the same losses whenever it is run. `batch["image_size"]` [B, 2] is each image's size
        within the padded batch.
        """
        outputs = self(batch["images"], training=training)
        canvas, image_size = image_canvas(batch["images"]), batch["image_size"]
        gt_classes = tf.cast(batch["gt_classes"], tf.int32)
        gt_boxes, gt_valid = batch["gt_boxes"], gt_classes > 0
        logits, deltas = outputs["rpn_logits"], outputs["rpn_deltas"]
        losses = self.rpn.losses(logits, deltas, gt_boxes, gt_valid, canvas, image_size,
                                 step_seed(self.seed, RPN_SAMPLING_STREAM, step))
        proposals, _, proposal_valid = self.rpn.proposals(logits, deltas, canvas, image_size,
                                                          training=True)
        losses.update(self.roi_heads.losses(
            outputs["features"], proposals, proposal_valid, gt_boxes, gt_classes,
            batch["gt_masks"], step_seed(self.seed, ROI_SAMPLING_STREAM, step)))
        losses["seg"] = self.stuff_branch.loss(outputs["semantic_logits"], batch["semantic"])
        losses["srm"] = self.srm.loss(batch["gt_masks"], gt_classes, batch["owner"])
        return losses

    def total_loss(self, losses: dict):
        """Eq. 1: L = L_rpn_cls + L_rpn_box + L_cls + L_box + L_mask + lambda L_seg + L_srm."""
        weights = {"seg": self.stuff_branch.loss_weight, "srm": self.srm.loss_weight}
        return tf.add_n([weights.get(name, 1.0) * value for name, value in losses.items()])

    def detect(self, images, image_size=None, srm_min_score=None) -> dict:
        """Inference outputs before the merge.

        images [B, H, W, 3] padded, image_size [B, 2] each image's size before padding
        (detections stay inside it; None: the whole canvas), srm_min_score: detections scoring
        below it are left out of the SRM's input and get ranking score 0 (None: the SRM reads
        every detection) -> the RoI heads' detections: boxes [B, D, 4], classes [B, D]
          (1..T, 0 = none), scores [B, D], masks [B, D, 28, 28] (probabilities),
          num_detections [B]; and stuff_probs [B, H, W, S] (softmax over stuff),
          instance_masks [B, D, H, W] (pasted probabilities), ranking_scores [B, D] (Eq. 3),
          ranking_map [B, h, w, T] (the SRM's score map where detections lie, 0 elsewhere).
        """
        outputs = self(images, training=False)
        canvas = image_canvas(images)
        if image_size is None:
            image_size = tf.tile(tf.stack(canvas)[tf.newaxis], [tf.shape(images)[0], 1])
        proposals, _, proposal_valid = self.rpn.proposals(
            outputs["rpn_logits"], outputs["rpn_deltas"], canvas, image_size, training=False)
        detections = self.roi_heads.detect(outputs["features"], proposals, proposal_valid,
                                           image_size)
        instance_masks = self.roi_heads.paste_masks(detections, canvas)
        srm_classes = detections["classes"]
        if srm_min_score is not None:
            srm_classes = tf.where(detections["scores"] >= srm_min_score, srm_classes, 0)
        if self.srm.static_shapes:
            ranking_scores, ranking_map = self.srm.rank(instance_masks >= MASK_THRESHOLD,
                                                        srm_classes)
        else:  # from each mask pasted into its box alone: serving never pastes them all
            pixels = mask_ops.RoIMasks(detections["masks"], detections["boxes"],
                                       canvas).pixels(srm_classes > 0)
            ranking_scores, ranking_map = self.srm.rank_pixels(pixels, srm_classes, canvas)
        stuff_probs = self.stuff_branch.probabilities(outputs["semantic_logits"], canvas)
        return {**detections, "stuff_probs": stuff_probs, "instance_masks": instance_masks,
                "ranking_scores": ranking_scores, "ranking_map": ranking_map}

    # The properties the inference and export code reads of any trained model.
    num_things = property(lambda self: self.roi_heads.num_things)
    num_stuff = property(lambda self: self.stuff_branch.num_stuff)
    detections_per_image = property(lambda self: self.roi_heads.detections_per_image)
    test_score_threshold = property(lambda self: self.roi_heads.test_score_threshold)
    static_shapes = property(lambda self: self.roi_heads.static_shapes)

    # ------------------------------------------------------------- the Keras train step
    @property
    def metrics(self):
        return self.step_log.metrics + super().metrics

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        build_optimizer(self)
        self._post_build()

    def train_step(self, data):
        return run_train_step(self, data)

    def test_step(self, data):
        return run_test_step(self, data)

    def predict_step(self, data):
        if isinstance(data, dict):
            return self.detect(data["images"], data.get("image_size"))
        return self.detect(data)

    # -------------------------------------------------------------------------- serializing
    def load_weights(self, filepath, *args, **kwargs):
        """Keras' load_weights; also reads files saved before the components existed."""
        with legacy_weights.current_layout(str(filepath)) as path:
            super().load_weights(path, *args, **kwargs)

    def get_config(self):
        components = {name: keras.saving.serialize_keras_object(getattr(self, name))
                      for name in COMPONENTS}
        return {"name": self.name, "trainable": self.trainable, "seed": self.seed, **components}

    @classmethod
    def from_config(cls, config):
        # The components' classes register with Keras when their modules are imported; the
        # builder imports every one, so that a `.keras` file loads after `import
        # oanet_tf.modeling.oanet` alone.
        from oanet_tf.modeling import builder  # noqa: F401

        config = dict(config)
        config.pop("image_size", None)  # saved before the input took any size
        for name in COMPONENTS:
            if config.get(name) is not None:
                config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)
