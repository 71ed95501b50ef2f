"""Config -> OANet: the one place where config values become constructor arguments.

The sections of the FPN, RPN, RoI heads, stuff branch and SRM (`oanet_tf.config`) name their
component's constructor arguments, so each is passed whole: a new setting needs its field and
its constructor argument, nothing here."""

from __future__ import annotations

import dataclasses

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
    first `freeze_at` stages and its batch norm frozen, whether or not its weights are read
    (`load_weights` False: trained weights will replace them)."""
    b = model_config.backbone
    if b.name == SMALL_RESNET:
        return build_small_resnet_backbone(b.small_resnet_widths, b.small_resnet_blocks,
                                           model_name=name)
    from_file = b.weights not in ("", NO_BACKBONE_WEIGHTS)
    # A model dir to start from (model.init_from) holds trained weights: a pretrained start.
    pretrained = from_file or bool(model_config.init_from)
    return build_resnet_backbone(
        b.name, b.weights if from_file and load_weights else None,
        frozen_stages=b.freeze_at if pretrained else 0, frozen_norm=pretrained,
        model_name=name, stride_in=b.stride_in, pixel_normalization=b.pixel_normalization)


def build_oanet(model_config: ModelConfig, train_config: TrainConfig,
                categories: CategoryMap, load_backbone_weights: bool = True) -> OANet:
    """Build every component once and hand them to the meta-architecture.
    `load_backbone_weights`: False when a trained model's weights will be loaded over it
    (nothing is read or downloaded for the backbone then)."""
    m = model_config
    static_shapes = train_config.jit_compile == "true"  # XLA needs static shapes
    things = categories.num_things
    # Built in the order of Figure 2, which is also the order of their random initialisation.
    backbone = build_backbone(m, "backbone", load_backbone_weights)
    stuff_backbone = build_backbone(m, "stuff_backbone", load_backbone_weights) \
        if m.sharing == SEPARATE else None
    stuff_fpn = FPN(**_arguments(m.fpn), num_inputs=NUM_FPN_INPUTS, name="stuff_fpn") \
        if m.sharing != SHARED_BACKBONE_FPN else None
    fpn = FPN(**_arguments(m.fpn), num_inputs=NUM_FPN_INPUTS, name="fpn")
    rpn = RPN(**_arguments(m.rpn), static_shapes=static_shapes, name="rpn")
    roi_heads = RoIHeads(**_arguments(m.roi_heads), num_things=things,
                         static_shapes=static_shapes, name="roi_heads")
    stuff_branch = StuffBranch(**_arguments(m.stuff_branch), num_things=things,
                               num_stuff=categories.num_stuff,
                               loss_weight=train_config.seg_loss_weight, name="stuff_branch")
    srm = SpatialRanking(**_arguments(m.srm), num_things=things, static_shapes=static_shapes,
                         loss_weight=train_config.srm_loss_weight, name="srm")
    return OANet(backbone=backbone, fpn=fpn, rpn=rpn, roi_heads=roi_heads,
                 stuff_branch=stuff_branch, srm=srm,
                 stuff_backbone=stuff_backbone, stuff_fpn=stuff_fpn,
                 seed=train_config.seed, name="oanet")


def _arguments(section) -> dict:
    """A component's section as its constructor's keyword arguments."""
    return dataclasses.asdict(section)
