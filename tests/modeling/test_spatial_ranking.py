"""The SRM component: both paths give the same loss and ranking, Eq. 3 on its own map."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.modeling import srm as srm_lib
from oanet_tf.modeling.spatial_ranking import SpatialRanking

T, H, W = 3, 24, 32


def _pair(stride):
    """The same SRM built for XLA (static shapes) and for data-sized shapes."""
    layers = [SpatialRanking(num_things=T, kernel="gcn", kernel_size=5, stride=stride,
                             static_shapes=static, loss_weight=1.0) for static in (True, False)]
    for layer in layers:
        layer.build((None, H, W, T))
    layers[1].set_weights(layers[0].get_weights())
    return layers


def _instances(seed):
    """Overlapping random boxes as masks, their classes, and a panoptic owner map."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((2, 4, H, W), np.float32)
    for b in range(2):
        for k in range(4):
            y, x = rng.integers(0, H - 10), rng.integers(0, W - 10)
            masks[b, k, y:y + 12, x:x + 12] = 1
    classes = rng.integers(1, T + 1, size=(2, 4)).astype(np.int32)
    owner = np.full((2, H, W), IGNORE_LABEL, np.int32)
    for b in range(2):
        for k in range(4):  # the last drawn lies on top
            owner[b][masks[b, k] > 0] = classes[b, k] - 1
    return tf.constant(masks), tf.constant(classes), tf.constant(owner)


@pytest.mark.parametrize("stride", [1, 2])
def test_both_paths_give_eq2_of_the_module(stride):
    static, sized = _pair(stride)
    masks, classes, owner = _instances(stride)
    channels, count = srm_lib.srm_inputs(masks, classes, T)
    expected = srm_lib.srm_loss(static.module(channels), owner, count)
    assert float(expected) > 0
    for layer in (static, sized):
        np.testing.assert_allclose(float(layer.loss(masks, classes, owner)), float(expected),
                                   rtol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_both_paths_rank_alike_by_eq3(stride):
    static, sized = _pair(stride)
    masks, classes, _ = _instances(10 + stride)
    channels, _ = srm_lib.srm_inputs(masks, classes, T)
    covered = static.module.covered_cells(channels).numpy()
    dense = tf.nn.softmax(static.module(channels)).numpy() * covered[..., None]
    for layer in (static, sized):
        scores, score_map = layer.rank(masks, classes)
        np.testing.assert_allclose(score_map, dense, atol=1e-5)
        np.testing.assert_allclose(scores, srm_lib.ranking_scores(dense, masks, classes),
                                   atol=1e-5)


def test_config_round_trip():
    layer = _pair(1)[0]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()
    restored.build((None, H, W, T))
    assert [w.shape for w in restored.weights] == [w.shape for w in layer.weights]
