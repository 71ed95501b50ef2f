"""Config -> OANet: the one place where config values become constructor arguments."""

from __future__ import annotations

from oanet_tf.config import ModelConfig, TrainConfig
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.modeling.backbone import build_resnet_backbone, build_small_resnet_backbone
from oanet_tf.modeling.fpn import FPN
from oanet_tf.modeling.oanet import OANet
from oanet_tf.modeling.roi_heads import BoxHead, MaskHead
from oanet_tf.modeling.rpn import RPNHead
from oanet_tf.modeling.srm import SpatialRankingModule
from oanet_tf.modeling.stuff_head import StuffHead

NUM_FPN_INPUTS = 4


def build_backbone(model_config: ModelConfig, image_size, name: str):
    shape = (int(image_size[0]), int(image_size[1]), 3)
    if model_config.backbone == "small_resnet":
        return build_small_resnet_backbone(model_config.small_resnet_widths,
                                           model_config.small_resnet_blocks, shape, name)
    return build_resnet_backbone(model_config.backbone, model_config.backbone_weights, shape,
                                 name)


def semantic_classes(model_config: ModelConfig, categories: CategoryMap) -> int:
    """Classes of the stuff branch: all categories, or stuff plus one "things" class."""
    if model_config.semantic_supervision == "all":
        return categories.num_semantic
    return categories.num_stuff + 1


def build_oanet(model_config: ModelConfig, train_config: TrainConfig, categories: CategoryMap,
                image_size) -> OANet:
    """Build every component once and hand them to the meta-architecture."""
    m = model_config
    backbone = build_backbone(m, image_size, "backbone")
    stuff_backbone = build_backbone(m, image_size, "stuff_backbone") if m.sharing == "none" \
        else None
    stuff_fpn = FPN(m.fpn_channels, NUM_FPN_INPUTS, name="stuff_fpn") \
        if m.sharing != "backbone_fpn" else None
    return OANet(
        backbone=backbone,
        fpn=FPN(m.fpn_channels, NUM_FPN_INPUTS, name="fpn"),
        rpn_head=RPNHead(len(m.anchor_aspect_ratios), m.rpn_conv_channels, name="rpn_head"),
        box_head=BoxHead(categories.num_things, m.box_head_fc_dim, m.box_head_num_fc,
                         name="box_head"),
        mask_head=MaskHead(categories.num_things, m.mask_head_conv_dim, m.mask_head_num_conv,
                           name="mask_head"),
        stuff_head=StuffHead(semantic_classes(m, categories), m.stuff_head_channels,
                             name="stuff_head"),
        srm=SpatialRankingModule(categories.num_things, m.srm_kernel, m.srm_kernel_size,
                                 m.srm_stride, name="srm"),
        stuff_backbone=stuff_backbone,
        stuff_fpn=stuff_fpn,
        image_size=tuple(image_size),
        num_things=categories.num_things,
        num_stuff=categories.num_stuff,
        semantic_supervision=m.semantic_supervision,
        anchor_sizes=m.anchor_sizes,
        anchor_aspect_ratios=m.anchor_aspect_ratios,
        rpn_iou_thresholds=m.rpn_iou_thresholds,
        rpn_batch_size_per_image=m.rpn_batch_size_per_image,
        rpn_positive_fraction=m.rpn_positive_fraction,
        rpn_pre_nms_topk_train=m.rpn_pre_nms_topk_train,
        rpn_post_nms_topk_train=m.rpn_post_nms_topk_train,
        rpn_pre_nms_topk_test=m.rpn_pre_nms_topk_test,
        rpn_post_nms_topk_test=m.rpn_post_nms_topk_test,
        rpn_nms_threshold=m.rpn_nms_threshold,
        roi_batch_size_per_image=m.roi_batch_size_per_image,
        roi_positive_fraction=m.roi_positive_fraction,
        roi_iou_threshold=m.roi_iou_threshold,
        box_coder_weights=m.box_coder_weights,
        box_pooler_resolution=m.box_pooler_resolution,
        mask_pooler_resolution=m.mask_pooler_resolution,
        pooler_sampling_ratio=m.pooler_sampling_ratio,
        test_score_threshold=m.test_score_threshold,
        test_nms_threshold=m.test_nms_threshold,
        detections_per_image=m.detections_per_image,
        xla_ops=train_config.jit_compile == "true",
        seg_loss_weight=train_config.seg_loss_weight,
        srm_loss_weight=train_config.srm_loss_weight,
        seed=train_config.seed,
        name="oanet",
    )
