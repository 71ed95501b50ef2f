"""Config -> OANet: the one place where config values become constructor arguments."""

from __future__ import annotations

from oanet_tf.config import (NO_BACKBONE_WEIGHTS, SEPARATE, SHARED_BACKBONE_FPN, SMALL_RESNET,
                             ModelConfig, TrainConfig)
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.modeling.backbone.resnet import build_resnet_backbone
from oanet_tf.modeling.backbone.small_resnet import build_small_resnet_backbone
from oanet_tf.modeling.fpn import FPN
from oanet_tf.modeling.oanet import OANet
from oanet_tf.modeling.roi_heads import RoIHeads
from oanet_tf.modeling.rpn import RPN
from oanet_tf.modeling.spatial_ranking import SpatialRanking
from oanet_tf.modeling.stuff_branch import StuffBranch

NUM_FPN_INPUTS = 4


def build_backbone(model_config: ModelConfig, name: str, load_weights: bool = True):
    """The configured backbone, for images of any padded size. A pretrained ResNet has its
    first `backbone_freeze_at` stages and its batch norm frozen, whether or not its weights
    are read (`load_weights` False: trained weights will replace them)."""
    m = model_config
    if m.backbone == SMALL_RESNET:
        return build_small_resnet_backbone(m.small_resnet_widths, m.small_resnet_blocks,
                                           model_name=name)
    from_file = m.backbone_weights not in ("", NO_BACKBONE_WEIGHTS)
    # A model dir to start from (model.init_from) holds trained weights: a pretrained start.
    pretrained = from_file or bool(m.init_from)
    return build_resnet_backbone(
        m.backbone, m.backbone_weights if from_file and load_weights else None,
        frozen_stages=m.backbone_freeze_at if pretrained else 0, frozen_norm=pretrained,
        model_name=name, stride_in=m.bottleneck_stride_in,
        pixel_normalization=m.pixel_normalization)


def build_oanet(model_config: ModelConfig, train_config: TrainConfig,
                categories: CategoryMap, load_backbone_weights: bool = True) -> OANet:
    """Build every component once and hand them to the meta-architecture.
    `load_backbone_weights`: False when a trained model's weights will be loaded over it
    (nothing is read or downloaded for the backbone then)."""
    m = model_config
    static_shapes = train_config.jit_compile == "true"  # XLA needs static shapes
    # Built in the order of Figure 2, which is also the order of their random initialisation.
    backbone = build_backbone(m, "backbone", load_backbone_weights)
    stuff_backbone = build_backbone(m, "stuff_backbone", load_backbone_weights) \
        if m.sharing == SEPARATE else None
    stuff_fpn = FPN(m.fpn_channels, NUM_FPN_INPUTS, name="stuff_fpn") \
        if m.sharing != SHARED_BACKBONE_FPN else None
    fpn = FPN(m.fpn_channels, NUM_FPN_INPUTS, name="fpn")
    rpn = RPN(conv_channels=m.rpn_conv_channels, anchor_sizes=m.anchor_sizes,
              anchor_aspect_ratios=m.anchor_aspect_ratios, iou_thresholds=m.rpn_iou_thresholds,
              batch_size_per_image=m.rpn_batch_size_per_image,
              positive_fraction=m.rpn_positive_fraction,
              pre_nms_topk_train=m.rpn_pre_nms_topk_train,
              post_nms_topk_train=m.rpn_post_nms_topk_train,
              pre_nms_topk_test=m.rpn_pre_nms_topk_test,
              post_nms_topk_test=m.rpn_post_nms_topk_test, nms_threshold=m.rpn_nms_threshold,
              static_shapes=static_shapes, anchor_offset=m.anchor_offset,
              anchor_cells=m.anchor_cells, nms_per_level=m.rpn_nms_per_level,
              min_box_size=m.rpn_min_box_size, name="rpn")
    roi_heads = RoIHeads(
        num_things=categories.num_things, box_head_fc_dim=m.box_head_fc_dim,
        box_head_num_fc=m.box_head_num_fc, mask_head_conv_dim=m.mask_head_conv_dim,
        mask_head_num_conv=m.mask_head_num_conv,
        batch_size_per_image=m.roi_batch_size_per_image,
        positive_fraction=m.roi_positive_fraction, iou_threshold=m.roi_iou_threshold,
        box_coder_weights=m.box_coder_weights, box_pooler_resolution=m.box_pooler_resolution,
        mask_pooler_resolution=m.mask_pooler_resolution,
        pooler_sampling_ratio=m.pooler_sampling_ratio,
        test_score_threshold=m.test_score_threshold, test_nms_threshold=m.test_nms_threshold,
        detections_per_image=m.detections_per_image, static_shapes=static_shapes,
        roi_align_aligned=m.roi_align_aligned, test_min_box_size=m.test_min_box_size,
        unused_class_slots=m.unused_class_slots, name="roi_heads")
    stuff_branch = StuffBranch(
        num_things=categories.num_things, num_stuff=categories.num_stuff,
        channels=m.stuff_head_channels, supervision=m.semantic_supervision,
        loss_weight=train_config.seg_loss_weight, name="stuff_branch")
    srm = SpatialRanking(num_things=categories.num_things, kernel=m.srm_kernel,
                         kernel_size=m.srm_kernel_size, stride=m.srm_stride,
                         static_shapes=static_shapes, loss_weight=train_config.srm_loss_weight,
                         name="srm")
    return OANet(backbone=backbone, fpn=fpn, rpn=rpn, roi_heads=roi_heads,
                 stuff_branch=stuff_branch, srm=srm,
                 stuff_backbone=stuff_backbone, stuff_fpn=stuff_fpn,
                 seed=train_config.seed, name="oanet")
