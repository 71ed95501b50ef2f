"""The SRM component: both paths give the same loss and ranking, Eq. 3 on its own map; its loss
(Eq. 2) against numpy, on the every-pixel and the data-sized (conflicting cells) paths."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.modeling import srm_layer
from oanet_tf.modeling.spatial_ranking import (SpatialRanking, conflict_targets, srm_loss,
                                               srm_loss_at)
from tests.modeling.srm_cases import random_channels, random_weights, sparse_inputs, srm

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
    channels, count = srm_layer.srm_inputs(masks, classes, T)
    expected = srm_loss(static.module(channels), owner, count)
    assert float(expected) > 0
    for layer in (static, sized):
        np.testing.assert_allclose(float(layer.loss(masks, classes, owner)), float(expected),
                                   rtol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_both_paths_rank_alike_by_eq3(stride):
    static, sized = _pair(stride)
    masks, classes, _ = _instances(10 + stride)
    channels, _ = srm_layer.srm_inputs(masks, classes, T)
    covered = static.module.covered_cells(channels).numpy()
    dense = tf.nn.softmax(static.module(channels)).numpy() * covered[..., None]
    for layer in (static, sized):
        scores, score_map = layer.rank(masks, classes)
        np.testing.assert_allclose(score_map, dense, atol=1e-5)
        np.testing.assert_allclose(scores, srm_layer.ranking_scores(dense, masks, classes),
                                   atol=1e-5)


def test_config_round_trip():
    layer = _pair(1)[0]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()
    restored.build((None, H, W, T))
    assert [w.shape for w in restored.weights] == [w.shape for w in layer.weights]


# ------------------------------------------------------------ the loss (Eq. 2) vs numpy
def _np_loss(logits, owner, count):
    logits = logits.astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    conflict = (count >= 2) & (owner != IGNORE_LABEL)
    if not conflict.any():
        return 0.0
    picked = np.take_along_axis(log_probs, np.where(conflict, owner, 0)[..., None], -1)[..., 0]
    return float(-picked[conflict].mean())


def test_srm_loss_counts_conflicting_pixels_only():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, H, W, T)).astype(np.float32)
    owner = rng.integers(0, T, size=(2, H, W)).astype(np.int32)
    owner[:, :3] = IGNORE_LABEL
    count = rng.integers(0, 4, size=(2, H, W)).astype(np.int32)
    got = srm_loss(tf.constant(logits), tf.constant(owner), tf.constant(count))
    np.testing.assert_allclose(float(got), _np_loss(logits, owner, count), rtol=1e-5)
    # Changing logits anywhere off the conflict pixels leaves the loss unchanged.
    off = (count < 2) | (owner == IGNORE_LABEL)
    moved = logits + 5.0 * off[..., None] * rng.normal(size=logits.shape).astype(np.float32)
    np.testing.assert_allclose(float(srm_loss(moved, owner, count)), float(got), rtol=1e-6)


def test_srm_loss_without_conflicts_is_zero_with_zero_gradient():
    logits = tf.Variable(tf.random.normal([2, H, W, T], seed=0))
    owner = tf.zeros([2, H, W], tf.int32)
    count = tf.ones([2, H, W], tf.int32)
    with tf.GradientTape() as tape:
        loss = srm_loss(logits, owner, count)
    gradient = tape.gradient(loss, logits)
    assert float(loss) == 0.0
    assert np.all(np.isfinite(gradient)) and not np.any(gradient)


def test_srm_loss_strided_samples_cell_centres_and_runs_in_float32():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, H // 4, W // 4, T)).astype(np.float16)
    owner = rng.integers(0, T + 1, size=(2, H, W)).astype(np.int32)
    owner[owner == T] = IGNORE_LABEL
    count = rng.integers(0, 4, size=(2, H, W)).astype(np.int32)
    got = srm_loss(tf.constant(logits), tf.constant(owner), tf.constant(count))
    assert got.dtype == tf.float32
    want = _np_loss(logits.astype(np.float32), owner[:, 2::4, 2::4], count[:, 2::4, 2::4])
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_tie_on_person_is_ranked_by_the_owner_map():
    """A score map that follows the panoptic owner ranks the tie above the person."""
    person = np.zeros((H, W), np.uint8)
    person[2:14, 4:16] = 1
    tie = np.zeros((H, W), np.uint8)
    tie[5:10, 9:11] = 1
    masks = np.stack([person, tie])[None]
    classes = np.array([[1, 2]], np.int32)
    channels, count = srm_layer.srm_inputs(tf.constant(masks), tf.constant(classes), T)
    owner = np.full((1, H, W), IGNORE_LABEL, np.int32)
    owner[0][person > 0] = 0
    owner[0][tie > 0] = 1
    assert int(np.sum(count.numpy() >= 2)) == tie.sum()
    score_map = np.full((1, H, W, T), 0.1, np.float32)
    score_map[..., 0] = np.where(owner[0] == 0, 0.8, 0.1)
    score_map[..., 1] = np.where(owner[0] == 1, 0.8, 0.1)
    scores = srm_layer.ranking_scores(tf.constant(score_map), tf.constant(masks),
                                      tf.constant(classes))
    np.testing.assert_allclose(scores[0], [(0.8 * 134 + 0.1 * 10) / 144, 0.8], rtol=1e-5)
    assert float(scores[0, 1]) > float(scores[0, 0])
    # The loss sees only the tie pixels, where the owner is the tie (index 1).
    logits = tf.math.log(tf.constant(score_map))
    want = -np.log(0.8 / (0.8 + 0.1 + 0.1))
    np.testing.assert_allclose(float(srm_loss(logits, owner, count)), want, rtol=1e-5)


def test_mixed_precision_logits_give_a_float32_loss():
    layer = srm(T, kernel="3x3", dtype="mixed_bfloat16")
    logits = layer(random_channels((2, H, W, T)))
    assert logits.dtype == tf.bfloat16
    rng = np.random.default_rng(8)
    owner = rng.integers(0, T, size=(2, H, W)).astype(np.int32)
    count = np.full((2, H, W), 2, np.int32)
    loss = srm_loss(logits, tf.constant(owner), tf.constant(count))
    assert loss.dtype == tf.float32
    want = _np_loss(tf.cast(logits, tf.float32).numpy(), owner, count)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_sparse_loss_and_gradients_equal_the_dense_ones(stride):
    static, sized = _pair(stride)
    masks, classes, owner = _instances(20 + stride)
    classes = tf.constant(np.where(classes.numpy() == 2, 1, classes.numpy()))  # 2 is absent
    gradients = {}
    for layer in (static, sized):
        with tf.GradientTape() as tape:
            loss = layer.loss(masks, classes, owner)
        gradients[layer.static_shapes] = (float(loss), tape.gradient(
            loss, layer.module.trainable_variables))
    channels, count = srm_layer.srm_inputs(masks, classes, T)
    conflict, _ = conflict_targets(owner, count, stride, T)
    assert np.any(conflict)
    (dense, dense_gradients), (sparse, sparse_gradients) = gradients[True], gradients[False]
    np.testing.assert_allclose(sparse, dense, rtol=1e-5)
    for want, got in zip(dense_gradients, sparse_gradients):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The absent category's input weights get exactly zero gradient, as in the dense path.
    assert not np.any(sparse_gradients[0].numpy()[:, :, 1])


def test_sparse_loss_without_conflicts_is_zero_with_zero_gradient():
    layer = srm(T, kernel="gcn", kernel_size=5)
    layer.build((None, H, W, T))
    with tf.GradientTape() as tape:
        logits = layer.logits_at(tf.zeros([1, H, W, T]), tf.zeros([0, 3], tf.int64))
        loss = srm_loss_at(logits, tf.zeros([0], tf.int32))
    gradients = tape.gradient(loss, layer.trainable_variables)
    assert float(loss) == 0.0
    assert all(g is None or not np.any(g) for g in gradients)
