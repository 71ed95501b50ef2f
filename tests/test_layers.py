"""Network layers: output shapes, serialization round trips, and hand-checkable behaviour."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.modeling.backbone import build_small_resnet_backbone
from oanet_tf.modeling.backbone.resnet import CAFFE_BGR_MEAN, CaffePreprocess
from oanet_tf.modeling.fpn import FPN
from oanet_tf.modeling.roi_heads import BoxHead, MaskHead
from oanet_tf.modeling.stuff_head import StuffHead

H, W = 64, 128


def _round_trip(layer, inputs):
    """Serialize a built layer, rebuild it, copy weights: the same outputs."""
    expected = layer(inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    for got, want in zip(tf.nest.flatten(clone(inputs)), tf.nest.flatten(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()
    return expected


def _pyramid(channels=8, batch=2, levels=4):
    rng = np.random.default_rng(0)
    return [tf.constant(rng.normal(size=(batch, H // 2 ** (l + 2), W // 2 ** (l + 2), channels)),
                        tf.float32) for l in range(levels)]


def test_small_resnet_strides():
    backbone = build_small_resnet_backbone((8, 16, 24, 32), (1, 2, 1, 1), (H, W, 3))
    features = backbone(tf.zeros([1, H, W, 3]))
    assert [tuple(f.shape) for f in features] == [
        (1, H // 4, W // 4, 8), (1, H // 8, W // 8, 16), (1, H // 16, W // 16, 24),
        (1, H // 32, W // 32, 32)]


def test_caffe_preprocess_hand_case():
    out = CaffePreprocess()(tf.constant([[[[10.0, 20.0, 30.0]]]]))
    np.testing.assert_allclose(out[0, 0, 0], np.array([30.0, 20.0, 10.0]) - CAFFE_BGR_MEAN,
                               rtol=1e-6)


def test_fpn_shapes_and_top_down_path():
    fpn = FPN(channels=16, num_inputs=4)
    outputs = _round_trip(fpn, _pyramid())
    assert [tuple(o.shape) for o in outputs] == [
        (2, H // 4, W // 4, 16), (2, H // 8, W // 8, 16), (2, H // 16, W // 16, 16),
        (2, H // 32, W // 32, 16), (2, H // 64, W // 64, 16)]
    # P6 is P5 subsampled by 2 (kernel 1, stride 2).
    np.testing.assert_allclose(outputs[4], outputs[3][:, ::2, ::2], rtol=1e-6)
    # Changing only C5 changes P2 (top-down path), changing only C2 leaves P3..P6 alone.
    features = _pyramid()
    bumped = features[:3] + [features[3] + 1.0]
    assert not np.allclose(fpn(bumped)[0], outputs[0])
    bumped = [features[0] + 1.0] + features[1:]
    for got, want in zip(fpn(bumped)[1:], outputs[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_box_head_shapes():
    head = BoxHead(num_things=3, fc_dim=32, num_fc=2)
    pooled = tf.random.normal([2, 5, 7, 7, 8], seed=1)
    logits, deltas = _round_trip(head, pooled)
    assert tuple(logits.shape) == (2, 5, 4) and tuple(deltas.shape) == (2, 5, 3, 4)
    # Each RoI is processed on its own: permuting RoIs permutes outputs.
    perm = [4, 2, 0, 1, 3]
    logits_p, _ = head(tf.gather(pooled, perm, axis=1))
    np.testing.assert_allclose(logits_p, tf.gather(logits, perm, axis=1), rtol=1e-5, atol=1e-6)


def test_mask_head_shapes():
    head = MaskHead(num_things=3, conv_dim=8, num_conv=2)
    out = _round_trip(head, tf.random.normal([2, 4, 14, 14, 8], seed=2))
    assert tuple(out.shape) == (2, 4, 28, 28, 3)


@pytest.mark.parametrize("num_classes", [5, 1])
def test_stuff_head_shapes(num_classes):
    head = StuffHead(num_classes=num_classes, channels=8)
    out = _round_trip(head, _pyramid())
    assert tuple(out.shape) == (2, H // 4, W // 4, num_classes)
