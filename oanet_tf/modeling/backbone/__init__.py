"""Backbones: images [B, H, W, 3] (RGB, 0..255) -> [C2, C3, C4, C5] at strides 4, 8, 16, 32."""

from oanet_tf.modeling.backbone.resnet import build_resnet_backbone
from oanet_tf.modeling.backbone.small_resnet import build_small_resnet_backbone

__all__ = ["build_resnet_backbone", "build_small_resnet_backbone"]
