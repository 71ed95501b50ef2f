"""The SRM layer: shapes and arithmetic, its inputs and Eq. 3 vs numpy, its data-sized path vs
its every-pixel one. Its loss (Eq. 2) is tested with the component (test_spatial_ranking.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.modeling.srm_layer import (SPARSE_MAX_COVERED, SpatialRankingModule,
                                         instance_pixels, pixel_ranking_scores,
                                         present_channels, present_things, ranking_scores,
                                         srm_inputs)
from tests.modeling.srm_cases import random_channels, random_weights, sparse_inputs, srm

T, H, W = 3, 16, 24


def _conv_same(x, kernel, bias=None):
    out = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    return out if bias is None else out + bias


@pytest.mark.parametrize("kernel", ["gcn", "3x3", "1x1"])
@pytest.mark.parametrize("stride", [1, 2])
def test_shapes_and_config_round_trip(kernel, stride):
    layer = srm(T, kernel=kernel, kernel_size=5, stride=stride, name="srm")
    x = random_channels((2, H, W, T))
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
    layer = srm(T, kernel="gcn", kernel_size=7)
    x = random_channels((2, H, W, T))
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
    layer = srm(T, kernel=kernel, kernel_size=7)
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
    layer = srm(T, kernel="1x1")
    x = random_channels((2, H, W, T))
    out = layer(x).numpy()
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(out, np.einsum("bhwc,cd->bhwd", x.numpy(), kernel[0, 0]) + bias,
                               rtol=1e-5, atol=1e-5)


def test_stride_average_pools_the_input_first():
    strided = srm(T, kernel="3x3", stride=2)
    plain = srm(T, kernel="3x3", stride=1)
    x = random_channels((2, H, W, T))
    out = strided(x)
    plain(out)  # builds
    plain.set_weights(strided.get_weights())
    pooled = x.numpy().reshape(2, H // 2, 2, W // 2, 2, T).mean(axis=(2, 4))
    np.testing.assert_allclose(out, plain(tf.constant(pooled)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"kernel": "5x5"}, {"kernel_size": 4}, {"stride": 0},
                                    {"num_things": 0}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        srm(**{"num_things": T, **kwargs})


def test_input_must_have_one_channel_per_thing_and_divide_by_stride():
    with pytest.raises(ValueError, match="channels"):
        srm(T)(tf.zeros([1, H, W, T + 1]))
    with pytest.raises(ValueError, match="stride"):
        srm(T, stride=5)(tf.zeros([1, H, W, T]))


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


def test_pixel_list_draws_the_present_channels_of_numpy():
    masks, classes = _random_instances(21, num=6)
    classes[1] = [3, 3, 0, 9, 3, 0]  # 9 > T: not a thing, left out like padding
    inside = tf.constant(masks > 0)
    pixels = instance_pixels(inside, tf.constant(classes), T).numpy()
    valid = (classes > 0) & (classes <= T)
    want = np.argwhere(masks > 0)
    np.testing.assert_array_equal(pixels, want[valid[want[:, 0], want[:, 1]]])
    present = present_things(tf.constant(classes), T).numpy()
    assert present.tolist() == sorted(set((classes[valid] - 1).tolist()) | {0})
    got = present_channels(tf.constant(pixels), tf.constant(classes), tf.constant(present),
                           (2, H, W))
    np.testing.assert_array_equal(got, _np_inputs(masks, classes, T)[0][..., present])


@pytest.mark.parametrize("stride", [1, 2])
def test_pixel_ranking_scores_equal_the_dense_eq3(stride):
    rng = np.random.default_rng(22)
    score_map = tf.nn.softmax(rng.normal(size=(2, H // stride, W // stride, T))).numpy()
    masks, classes = _random_instances(23)
    masks[1, 1] = 0  # an empty mask scores 0
    pixels = instance_pixels(tf.constant(masks > 0), tf.constant(classes), T)
    covered = masks.reshape(2, -1, H // stride, stride, W // stride, stride).any(axis=(1, 3, 5))
    cells = np.argwhere(covered)
    got = pixel_ranking_scores(pixels, tf.constant(cells), tf.constant(
        score_map[tuple(cells.T)].astype(np.float32)), tf.constant(classes), stride,
        (H // stride, W // stride))
    full = score_map.repeat(stride, axis=1).repeat(stride, axis=2)
    np.testing.assert_allclose(got, _np_ranking(full, masks, classes), rtol=1e-5, atol=1e-6)
    assert float(got[1, 1]) == 0.0 and float(got[0, -1]) == 0.0


def test_ranking_scores_strided_equal_the_replicated_map():
    rng = np.random.default_rng(6)
    coarse = tf.nn.softmax(rng.normal(size=(2, H // 2, W // 2, T)).astype(np.float32)).numpy()
    masks, classes = _random_instances(7)
    got = ranking_scores(tf.constant(coarse), tf.constant(masks), tf.constant(classes))
    full = coarse.repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_allclose(got, _np_ranking(full, masks, classes), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ the sparse path (no XLA)
@pytest.mark.parametrize("kernel", ["gcn", "3x3", "1x1"])
@pytest.mark.parametrize("stride", [1, 2])
def test_logits_at_equal_the_dense_logits_at_those_cells(kernel, stride):
    layer = srm(5, kernel=kernel, kernel_size=5, stride=stride)
    layer.build((None, H, W, 5))
    random_weights(layer, 10)
    channels, _, _ = sparse_inputs(11, H, W)
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
@pytest.mark.parametrize("density", [0.1, 0.9])  # below / above SPARSE_MAX_COVERED
def test_covered_score_map_is_the_softmax_where_instances_lie(stride, density):
    layer = srm(5, kernel="gcn", kernel_size=5, stride=stride)
    layer.build((None, H, W, 5))
    random_weights(layer, 15)
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
