"""The small ResNet backbone: feature strides."""

import tensorflow as tf

from oanet_tf.modeling.backbone.small_resnet import build_small_resnet_backbone
from tests.modeling.layer_checks import H, W


def test_small_resnet_strides():
    backbone = build_small_resnet_backbone((8, 16, 24, 32), (1, 2, 1, 1), (H, W, 3))
    features = backbone(tf.zeros([1, H, W, 3]))
    assert [tuple(f.shape) for f in features] == [
        (1, H // 4, W // 4, 8), (1, H // 8, W // 8, 16), (1, H // 16, W // 16, 24),
        (1, H // 32, W // 32, 32)]
