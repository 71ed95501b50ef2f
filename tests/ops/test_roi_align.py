"""oanet_tf.ops.roi_align: level assignment and multilevel RoIAlign (gather and crop_and_resize)
against hand cases and the loops of numpy_reference."""

import math

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.ops import roi_align
from tests import numpy_reference as ref
from tests.ops.random_inputs import _pyramid, _random_boxes


def test_assign_levels_hand_cases():
    sides = [224.0, 112.0, 111.0, 448.0, 1000.0, 10.0, 0.0]
    boxes = tf.constant([[[0.0, 0.0, s, s] for s in sides]])
    np.testing.assert_array_equal(roi_align.assign_levels(boxes), [[4, 3, 2, 5, 5, 2, 2]])


@pytest.mark.parametrize("aligned", [True, False])
def test_multilevel_roi_align_matches_numpy_loops(aligned):
    rng = np.random.default_rng(7)
    features = _pyramid(rng)
    boxes = _random_boxes(rng, (2, 8), (256, 256), min_size=4.0, max_size=300.0)
    boxes[0, 0] = [-40.0, -30.0, 440.0, 450.0]  # level 5, partly outside the map
    boxes[1, 0] = [250.0, 250.0, 290.0, 300.0]  # mostly beyond the map: zeros there
    got = roi_align.multilevel_roi_align([tf.constant(f) for f in features], boxes, 5,
                                         sampling_ratio=2, aligned=aligned).numpy()
    assert got.shape == (2, 8, 5, 5, 3)
    levels = roi_align.assign_levels(boxes).numpy()
    assert set(levels.ravel()) >= {2, 3, 4, 5}
    for b in range(2):
        for k in range(8):
            level = levels[b, k]
            want = ref.roi_align(features[level - 2][b], boxes[b, k], 1.0 / 2 ** level, 5, 2,
                                 aligned)
            np.testing.assert_allclose(got[b, k], want, atol=1e-4, err_msg=f"box {b},{k}")


def test_roi_align_gradient_is_a_partition_of_unity():
    rng = np.random.default_rng(8)
    features = [tf.constant(f) for f in _pyramid(rng, image=64)]
    boxes = tf.constant(_random_boxes(rng, (2, 4), (40, 40), min_size=3.0, max_size=20.0)
                        + 8.0, tf.float32)  # well inside the 64 x 64 image
    with tf.GradientTape() as tape:
        tape.watch(features)
        total = tf.reduce_sum(roi_align.multilevel_roi_align(features, boxes, 3))
    grads = tape.gradient(total, features)
    # Each output value is a convex combination of feature values.
    assert float(sum(tf.reduce_sum(g) for g in grads)) == pytest.approx(2 * 4 * 3 * 3 * 3,
                                                                        rel=1e-5)


def _level_shapes(image_size, levels=(2, 3, 4, 5)):
    """Feature map sizes of an FPN on an image whose sides need not be multiples of 32."""
    return [tuple(math.ceil(side / 2 ** l) for side in image_size) for l in levels]


# sqrt(area) ranges that assign_levels sends to P2, P3, P4 and P5.
LEVEL_SIDES = ((4.0, 110.0), (115.0, 220.0), (230.0, 440.0), (460.0, 700.0))


def _boxes_on_all_levels(rng, batch, num, image_size):
    """Boxes whose sizes cycle through the levels, with aspect ratios from 1/2 to 2 and
    centres up to 20 pixels off the image, so that many cross or leave its border."""
    low, high = np.array(LEVEL_SIDES)[np.arange(batch * num) % len(LEVEL_SIDES)].T
    side = rng.uniform(low, high).reshape(batch, num, 1)
    aspect = np.sqrt(rng.uniform(0.5, 2.0, size=(batch, num, 1)))
    half = np.concatenate([side * aspect, side / aspect], -1) / 2
    centre = rng.uniform(-20.0, np.array(image_size) + 20.0, size=(batch, num, 2))
    return np.concatenate([centre - half, centre + half], -1).astype(np.float32)


def _numpy_multilevel(features, boxes, output_size, sampling_ratio, aligned=True):
    levels = roi_align.assign_levels(boxes).numpy()
    out = np.zeros(boxes.shape[:2] + (output_size, output_size, features[0].shape[-1]))
    for b, k in np.ndindex(*boxes.shape[:2]):
        level = levels[b, k]
        out[b, k] = ref.roi_align(features[level - 2][b].astype(np.float64), boxes[b, k],
                                  1.0 / 2 ** level, output_size, sampling_ratio, aligned)
    return out


def _both_methods(features, boxes, *args, **kwargs):
    return [roi_align.multilevel_roi_align(features, boxes, *args, method=method, **kwargs)
            for method in ("gather", "crop_and_resize")]


@pytest.mark.parametrize("batch,image_size,output_size,sampling_ratio,aligned", [
    (1, (64, 64), 7, 2, True),
    (3, (72, 100), 5, 3, True),
    (2, (100, 72), 1, 1, True),
    (2, (72, 100), 4, 2, False),
])
def test_crop_and_resize_roi_align_matches_gather_and_numpy(batch, image_size, output_size,
                                                             sampling_ratio, aligned):
    rng = np.random.default_rng(21)
    features = [rng.normal(size=(batch,) + shape + (3,)).astype(np.float32)
                for shape in _level_shapes(image_size)]
    boxes = _boxes_on_all_levels(rng, batch, 24, image_size)
    boxes[0, 0] = 0.0  # a padding box
    boxes[0, 1] = [0.0, 0.0, *image_size]  # touching every border
    boxes[-1, -1] = [-300.0, -300.0, -200.0, -250.0]  # entirely outside the map: zeros
    assert set(roi_align.assign_levels(boxes).numpy().ravel()) == {2, 3, 4, 5}
    assert ((boxes[..., :2] < 0) | (boxes[..., 2:] > image_size)).any(-1).sum() >= 5
    gather, crop = _both_methods([tf.constant(f) for f in features], tf.constant(boxes),
                                 output_size, sampling_ratio, aligned=aligned)
    assert crop.shape == gather.shape == (batch, 24, output_size, output_size, 3)
    np.testing.assert_allclose(crop, gather, atol=1e-5)
    np.testing.assert_allclose(crop, _numpy_multilevel(features, boxes, output_size,
                                                       sampling_ratio, aligned), atol=1e-5)
    assert not crop.numpy()[-1, -1].any()


def test_crop_and_resize_roi_align_border_rule_by_hand():
    """One 4 x 4 level holding 10 y + x, a box whose samples lie at -1.5, -0.5, ..., 4.5 on
    both axes: beyond [-1, 4] a sample is 0, between -1 and 0 or 3 and 4 it takes the border
    value, inside it interpolates (exactly, the map being linear)."""
    rows, cols = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    feature = tf.constant((10 * rows + cols)[None, :, :, None], tf.float32)
    stride = 4.0
    # Aligned samples at box_start / stride - 0.5 + (j + 0.5) * length / 7 = j - 1.5.
    start = (-2.0 + roi_align.ALIGNED_OFFSET) * stride
    boxes = tf.constant([[[start, start, start + 7 * stride, start + 7 * stride]]])
    samples = np.arange(7) - 1.5
    inside = (samples >= -1.0) & (samples <= 4.0)
    clamped = np.clip(samples, 0.0, 3.0)
    want = (10 * clamped[:, None] + clamped[None, :]) * (inside[:, None] & inside[None, :])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(feature)
        gather, crop = _both_methods([feature], boxes, 7, sampling_ratio=1)
        totals = [tf.reduce_sum(gather), tf.reduce_sum(crop)]
    np.testing.assert_allclose(crop[0, 0, :, :, 0], want, atol=1e-5)
    np.testing.assert_allclose(gather[0, 0, :, :, 0], want, atol=1e-5)
    # 5 x 5 samples fall inside [-1, 4]^2, each a convex combination: the gradient sums to 25.
    grads = [tape.gradient(total, feature) for total in totals]
    np.testing.assert_allclose(grads[1], grads[0], atol=1e-6)
    assert float(tf.reduce_sum(grads[1])) == pytest.approx(25.0)


def test_crop_and_resize_roi_align_gradient_matches_gather():
    rng = np.random.default_rng(22)
    image_size = (72, 100)
    features = [tf.constant(rng.normal(size=(2,) + shape + (4,)).astype(np.float32))
                for shape in _level_shapes(image_size)]
    boxes = tf.constant(_boxes_on_all_levels(rng, 2, 16, image_size))
    cotangent = tf.constant(rng.normal(size=(2, 16, 5, 5, 4)).astype(np.float32))
    grads = []
    for method in ("gather", "crop_and_resize"):
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = roi_align.multilevel_roi_align(features, boxes, 5, method=method)
            total = tf.reduce_sum(pooled * cotangent)
        grads.append(tape.gradient(total, features))
    for level, (want, got) in enumerate(zip(*grads)):
        assert float(tf.reduce_max(tf.abs(want))) > 0.0, f"no gradient on level {level}"
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"level {level}")


RACE_TRIES = 8


def test_crop_and_resize_roi_align_gradient_with_many_overlapping_boxes():
    """A thousand boxes on one small map, enough work for TensorFlow to split the boxes over
    threads: the gradient must still add up every box (crop_and_resize's own CPU gradient
    loses updates here)."""
    rng = np.random.default_rng(25)
    features = [tf.constant(rng.normal(size=(1, 6, 6, 64)).astype(np.float32))]  # P2 only
    corner = rng.uniform(0.0, 12.0, size=(1, 1000, 2))
    boxes = tf.constant(np.concatenate([corner, corner + rng.uniform(4.0, 12.0, (1, 1000, 2))],
                                       -1), tf.float32)
    cotangent = tf.constant(rng.normal(size=(1, 1000, 7, 7, 64)).astype(np.float32))

    def gradient(method):
        with tf.GradientTape() as tape:
            tape.watch(features)
            total = tf.reduce_sum(cotangent * roi_align.multilevel_roi_align(
                features, boxes, 7, method=method))
        return tape.gradient(total, features)[0]

    want = gradient("gather")
    # Sums of ~10^4 float32 terms in a different order: compare at float32 precision of the
    # largest gradient. Lost updates are a race: several tries.
    scale = float(tf.reduce_max(tf.abs(want)))
    for _ in range(RACE_TRIES):
        np.testing.assert_allclose(gradient("crop_and_resize"), want, atol=1e-5 * scale)


MANTISSA_BITS = {tf.bfloat16: 7, tf.float16: 10}


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_crop_and_resize_roi_align_keeps_low_precision_dtypes(dtype):
    """Computed in float32, rounded once: within half a unit in the last place of the float32
    result on the same (rounded) features, and so is the gradient."""
    rng = np.random.default_rng(23)
    image_size = (64, 64)
    low = [tf.cast(rng.normal(size=(2,) + shape + (3,)), dtype)
           for shape in _level_shapes(image_size)]
    exact = [tf.cast(f, tf.float32) for f in low]
    boxes = tf.constant(_boxes_on_all_levels(rng, 2, 12, image_size))
    results = []
    for features in (low, exact):
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = roi_align.multilevel_roi_align(features, boxes, 4, method="crop_and_resize")
            total = tf.reduce_sum(pooled)
        results.append((pooled, tape.gradient(total, features)))
    (pooled, grads), (want, want_grads) = results
    assert pooled.dtype == dtype and all(g.dtype == dtype for g in grads)
    half_ulp = 2.0 ** -(MANTISSA_BITS[dtype] + 1)
    np.testing.assert_allclose(tf.cast(pooled, tf.float32), want, rtol=half_ulp, atol=1e-6)
    for got, expected in zip(grads, want_grads):
        np.testing.assert_allclose(tf.cast(got, tf.float32), expected, rtol=half_ulp, atol=1e-6)


def test_crop_and_resize_roi_align_in_a_graph_with_unknown_sizes_and_no_boxes():
    rng = np.random.default_rng(24)
    features = [tf.constant(f) for f in _pyramid(rng, image=64)]
    signature = [[tf.TensorSpec(f.shape, tf.float32) for f in features],
                 tf.TensorSpec([None, None, 4], tf.float32)]
    graph = tf.function(lambda f, b: roi_align.multilevel_roi_align(
        f, b, 3, method="crop_and_resize"), input_signature=signature)
    boxes = tf.constant(_boxes_on_all_levels(rng, 2, 6, (64, 64)))
    np.testing.assert_allclose(graph(features, boxes),
                               roi_align.multilevel_roi_align(features, boxes, 3), atol=1e-5)
    assert graph(features, tf.zeros([2, 0, 4])).shape == (2, 0, 3, 3, 3)


def test_multilevel_roi_align_rejects_an_unknown_method():
    features = [tf.zeros([1, 4, 4, 1])]
    with pytest.raises(ValueError, match="'bilinear'"):
        roi_align.multilevel_roi_align(features, tf.zeros([1, 1, 4]), 2, method="bilinear")
