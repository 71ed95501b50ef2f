"""Spatial ranking module: layer shapes and arithmetic, its inputs, loss and Eq. 3 vs numpy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.modeling.srm import (SPARSE_MAX_COVERED, SpatialRankingModule, conflict_targets,
                                   ranking_scores, srm_inputs, srm_loss, srm_loss_at,
                                   srm_loss_on_conflicts)

T, H, W = 3, 16, 24


def _srm(num_things, kernel="gcn", kernel_size=7, stride=1, **kwargs):
    """The layer with the paper's kernel unless a test chooses another."""
    return SpatialRankingModule(num_things, kernel, kernel_size, stride, **kwargs)


def _channels(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.random((batch, H, W, T)) < 0.3, tf.float32)


def _conv_same(x, kernel, bias=None):
    out = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    return out if bias is None else out + bias


@pytest.mark.parametrize("kernel", ["gcn", "3x3", "1x1"])
@pytest.mark.parametrize("stride", [1, 2])
def test_shapes_and_config_round_trip(kernel, stride):
    layer = _srm(T, kernel=kernel, kernel_size=5, stride=stride, name="srm")
    x = _channels()
    out = layer(x)
    assert tuple(out.shape) == (2, H // stride, W // stride, T)
    config = layer.get_config()
    assert {k: config[k] for k in ("num_things", "kernel", "kernel_size", "stride")} == {
        "num_things": T, "kernel": kernel, "kernel_size": 5, "stride": stride}
    clone = SpatialRankingModule.from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), out, rtol=1e-5, atol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == config


def test_gcn_is_the_sum_of_two_separable_paths():
    layer = _srm(T, kernel="gcn", kernel_size=7)
    x = _channels()
    out = layer(x)
    weights = {w.path.split("/")[-2] + "/" + w.name: w.numpy() for w in layer.weights}
    left = _conv_same(_conv_same(x, weights["left_kx1/kernel"]),
                      weights["left_1xk/kernel"], weights["left_1xk/bias"])
    right = _conv_same(_conv_same(x, weights["right_1xk/kernel"]),
                       weights["right_kx1/kernel"], weights["right_kx1/bias"])
    assert weights["left_kx1/kernel"].shape == (7, 1, T, T)
    assert weights["right_1xk/kernel"].shape == (1, 7, T, T)
    np.testing.assert_allclose(out, left + right, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,reach", [("gcn", 3), ("3x3", 1), ("1x1", 0)])
def test_receptive_field_of_each_kernel(kernel, reach):
    """An impulse changes exactly the (2 reach + 1)^2 square around it (gcn k=7: 7x7)."""
    layer = _srm(T, kernel=kernel, kernel_size=7)
    layer.build((1, H, W, T))
    layer.set_weights([np.ones_like(w) if w.ndim > 1 else np.zeros_like(w)
                       for w in layer.get_weights()])
    impulse = np.zeros((1, H, W, T), np.float32)
    impulse[0, 8, 10, 1] = 1.0
    changed = np.any(layer(tf.constant(impulse)).numpy()[0] != 0, axis=-1)
    expected = np.zeros((H, W), bool)
    expected[8 - reach:8 + reach + 1, 10 - reach:10 + reach + 1] = True
    np.testing.assert_array_equal(changed, expected)


def test_1x1_is_a_per_pixel_affine_map():
    layer = _srm(T, kernel="1x1")
    x = _channels()
    out = layer(x).numpy()
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(out, np.einsum("bhwc,cd->bhwd", x.numpy(), kernel[0, 0]) + bias,
                               rtol=1e-5, atol=1e-5)


def test_stride_average_pools_the_input_first():
    strided = _srm(T, kernel="3x3", stride=2)
    plain = _srm(T, kernel="3x3", stride=1)
    x = _channels()
    out = strided(x)
    plain(out)  # builds
    plain.set_weights(strided.get_weights())
    pooled = x.numpy().reshape(2, H // 2, 2, W // 2, 2, T).mean(axis=(2, 4))
    np.testing.assert_allclose(out, plain(tf.constant(pooled)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"kernel": "5x5"}, {"kernel_size": 4}, {"stride": 0},
                                    {"num_things": 0}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        _srm(**{"num_things": T, **kwargs})


def test_input_must_have_one_channel_per_thing_and_divide_by_stride():
    with pytest.raises(ValueError, match="channels"):
        _srm(T)(tf.zeros([1, H, W, T + 1]))
    with pytest.raises(ValueError, match="stride"):
        _srm(T, stride=5)(tf.zeros([1, H, W, T]))


def _np_inputs(masks, classes, num_things):
    binary = np.asarray(masks, np.float32) >= 0.5
    batch, _, height, width = binary.shape
    channels = np.zeros((batch, height, width, num_things), np.float32)
    count = np.zeros((batch, height, width), np.int32)
    for b in range(batch):
        for m, cls in enumerate(classes[b]):
            if 1 <= cls <= num_things:
                channels[b, ..., cls - 1] = np.maximum(channels[b, ..., cls - 1], binary[b, m])
                count[b] += binary[b, m]
    return channels, count


def _random_instances(seed, batch=2, num=5, probabilities=False):
    rng = np.random.default_rng(seed)
    masks = rng.random((batch, num, H, W))
    if not probabilities:
        masks = (masks < 0.4).astype(np.uint8)
    classes = rng.integers(1, T + 1, size=(batch, num)).astype(np.int32)
    classes[:, -1] = 0  # a padding row, with a non-empty mask that must be ignored
    classes[0, 0] = classes[0, 1]  # two instances of one class in one image
    return masks, classes


@pytest.mark.parametrize("probabilities", [False, True])
def test_srm_inputs_match_numpy(probabilities):
    masks, classes = _random_instances(1, probabilities=probabilities)
    channels, count = srm_inputs(tf.constant(masks), tf.constant(classes), T)
    want_channels, want_count = _np_inputs(masks, classes, T)
    assert channels.dtype == tf.float32 and count.dtype == tf.int32
    np.testing.assert_array_equal(channels, want_channels)
    np.testing.assert_array_equal(count, want_count)
    assert want_count.max() >= 2  # the case has conflicts


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


def _np_ranking(score_map, masks, classes):
    out = np.zeros(classes.shape, np.float64)
    for b in range(classes.shape[0]):
        for k, cls in enumerate(classes[b]):
            inside = masks[b, k] > 0
            if cls > 0 and inside.any():
                out[b, k] = score_map[b][inside][:, cls - 1].mean()
    return out


def test_ranking_scores_match_numpy():
    rng = np.random.default_rng(4)
    score_map = tf.nn.softmax(rng.normal(size=(2, H, W, T)).astype(np.float32)).numpy()
    masks, classes = _random_instances(5)
    masks[1, 2] = 0  # an empty mask scores 0
    got = ranking_scores(tf.constant(score_map), tf.constant(masks), tf.constant(classes))
    want = _np_ranking(score_map, masks, classes)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert float(got[0, -1]) == 0.0 and float(got[1, 2]) == 0.0


def test_ranking_scores_strided_equal_the_replicated_map():
    rng = np.random.default_rng(6)
    coarse = tf.nn.softmax(rng.normal(size=(2, H // 2, W // 2, T)).astype(np.float32)).numpy()
    masks, classes = _random_instances(7)
    got = ranking_scores(tf.constant(coarse), tf.constant(masks), tf.constant(classes))
    full = coarse.repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_allclose(got, _np_ranking(full, masks, classes), rtol=1e-5, atol=1e-6)


def test_tie_on_person_is_ranked_by_the_owner_map():
    """A score map that follows the panoptic owner ranks the tie above the person."""
    person = np.zeros((H, W), np.uint8)
    person[2:14, 4:16] = 1
    tie = np.zeros((H, W), np.uint8)
    tie[5:10, 9:11] = 1
    masks = np.stack([person, tie])[None]
    classes = np.array([[1, 2]], np.int32)
    channels, count = srm_inputs(tf.constant(masks), tf.constant(classes), T)
    owner = np.full((1, H, W), IGNORE_LABEL, np.int32)
    owner[0][person > 0] = 0
    owner[0][tie > 0] = 1
    assert int(np.sum(count.numpy() >= 2)) == tie.sum()
    score_map = np.full((1, H, W, T), 0.1, np.float32)
    score_map[..., 0] = np.where(owner[0] == 0, 0.8, 0.1)
    score_map[..., 1] = np.where(owner[0] == 1, 0.8, 0.1)
    scores = ranking_scores(tf.constant(score_map), tf.constant(masks), tf.constant(classes))
    np.testing.assert_allclose(scores[0], [(0.8 * 134 + 0.1 * 10) / 144, 0.8], rtol=1e-5)
    assert float(scores[0, 1]) > float(scores[0, 0])
    # The loss sees only the tie pixels, where the owner is the tie (index 1).
    logits = tf.math.log(tf.constant(score_map))
    want = -np.log(0.8 / (0.8 + 0.1 + 0.1))
    np.testing.assert_allclose(float(srm_loss(logits, owner, count)), want, rtol=1e-5)


def test_mixed_precision_logits_give_a_float32_loss():
    layer = _srm(T, kernel="3x3", dtype="mixed_bfloat16")
    logits = layer(_channels())
    assert logits.dtype == tf.bfloat16
    rng = np.random.default_rng(8)
    owner = rng.integers(0, T, size=(2, H, W)).astype(np.int32)
    count = np.full((2, H, W), 2, np.int32)
    loss = srm_loss(logits, tf.constant(owner), tf.constant(count))
    assert loss.dtype == tf.float32
    want = _np_loss(tf.cast(logits, tf.float32).numpy(), owner, count)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


# ------------------------------------------------------------ the sparse path (no XLA)
def _random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32)
                       for w in layer.get_weights()])


def _sparse_inputs(seed, num_things=5):
    """Channels in which category 3 (index 2) is absent, with their count and an owner."""
    rng = np.random.default_rng(seed)
    masks = (rng.random((2, 4, H, W)) < 0.35).astype(np.float32)
    classes = np.array([[1, 2, 2, 4], [5, 1, 0, 4]], np.int32)
    channels, count = srm_inputs(tf.constant(masks), tf.constant(classes), num_things)
    owner = rng.integers(0, num_things, size=(2, H, W)).astype(np.int32)
    owner[rng.random((2, H, W)) < 0.2] = IGNORE_LABEL
    return channels, count, tf.constant(owner)


@pytest.mark.parametrize("kernel", ["gcn", "3x3", "1x1"])
@pytest.mark.parametrize("stride", [1, 2])
def test_logits_at_equal_the_dense_logits_at_those_cells(kernel, stride):
    layer = _srm(5, kernel=kernel, kernel_size=5, stride=stride)
    layer.build((None, H, W, 5))
    _random_weights(layer, 10)
    channels, _, _ = _sparse_inputs(11)
    assert not np.any(channels.numpy()[..., 2])  # an absent category is skipped
    dense = layer(channels).numpy()
    h, w = H // stride, W // stride
    every = np.stack(np.meshgrid(np.arange(2), np.arange(h), np.arange(w), indexing="ij"),
                     -1).reshape(-1, 3)
    some = every[np.random.default_rng(12).random(len(every)) < 0.2]
    corners = np.array([[0, 0, 0], [1, h - 1, w - 1], [0, h - 1, 0], [1, 0, w - 1]])
    for cells in (every, np.concatenate([some, corners]), np.zeros((0, 3), np.int64)):
        got = layer.logits_at(channels, tf.constant(cells)).numpy()
        assert got.shape == (len(cells), 5)
        np.testing.assert_allclose(got, dense[tuple(cells.T)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_sparse_loss_and_gradients_equal_the_dense_ones(stride):
    layer = _srm(5, kernel="gcn", kernel_size=5, stride=stride)
    layer.build((None, H, W, 5))
    _random_weights(layer, 13)
    channels, count, owner = _sparse_inputs(14)
    with tf.GradientTape() as tape:
        dense = srm_loss(layer(channels), owner, count)
    dense_gradients = tape.gradient(dense, layer.trainable_variables)
    with tf.GradientTape() as tape:
        sparse = srm_loss_on_conflicts(layer, channels, owner, count)
    sparse_gradients = tape.gradient(sparse, layer.trainable_variables)
    conflict, _ = conflict_targets(owner, count, stride, 5)
    assert np.any(conflict)
    np.testing.assert_allclose(float(sparse), float(dense), rtol=1e-5)
    for want, got in zip(dense_gradients, sparse_gradients):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The absent category's input weights get exactly zero gradient, as in the dense path.
    assert not np.any(sparse_gradients[0].numpy()[:, :, 2])


def test_sparse_loss_without_conflicts_is_zero_with_zero_gradient():
    layer = _srm(T, kernel="gcn", kernel_size=5)
    layer.build((None, H, W, T))
    with tf.GradientTape() as tape:
        logits = layer.logits_at(tf.zeros([1, H, W, T]), tf.zeros([0, 3], tf.int64))
        loss = srm_loss_at(logits, tf.zeros([0], tf.int32))
    gradients = tape.gradient(loss, layer.trainable_variables)
    assert float(loss) == 0.0
    assert all(g is None or not np.any(g) for g in gradients)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("density", [0.1, 0.9])  # below / above SPARSE_MAX_COVERED
def test_covered_score_map_is_the_softmax_where_instances_lie(stride, density):
    layer = _srm(5, kernel="gcn", kernel_size=5, stride=stride)
    layer.build((None, H, W, 5))
    _random_weights(layer, 15)
    rng = np.random.default_rng(16)
    masks = np.zeros((2, 2, H, W), np.float32)
    masks[0, 0, 2:6, 3:9] = 1
    masks[0, 1, 5:7, 1:4] = 1
    masks[0, 1, H // 2:] = rng.random((H // 2, W)) < density
    masks[1, 0] = rng.random((H, W)) < density
    channels, _ = srm_inputs(tf.constant(masks), tf.constant([[1, 4], [2, 0]]), 5)
    logits = layer(channels).numpy().astype(np.float64)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    covered = (masks[:, 0] > 0) | ((masks[:, 1] > 0) & np.array([True, False])[:, None, None])
    covered = covered.reshape(2, H // stride, stride, W // stride, stride).any(axis=(2, 4))
    np.testing.assert_array_equal(layer.covered_cells(channels), covered)
    assert (covered.mean() > SPARSE_MAX_COVERED) == (density > 0.5)  # both ways are tested
    got = layer.covered_score_map(channels).numpy()
    np.testing.assert_allclose(got, softmax * covered[..., None], rtol=1e-5, atol=1e-6)
