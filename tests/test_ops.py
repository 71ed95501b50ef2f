"""Detection ops against hand-computed cases and the loop references of numpy_reference."""

import math

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.ops import anchors as anchors_lib
from oanet_tf.ops import box_coder, iou, mask_ops, matcher, nms, roi_align, sampling
from tests import numpy_reference as ref

RATIOS = (0.5, 1.0, 2.0)
SQRT2 = math.sqrt(2.0)


def _random_boxes(rng, shape, image_size, min_size=2.0, max_size=40.0):
    """Random (y1, x1, y2, x2) boxes whose corners may leave the image a little."""
    size = rng.uniform(min_size, max_size, size=shape + (2,))
    corner = rng.uniform(-5.0, np.array(image_size) - 5.0, size=shape + (2,))
    return np.concatenate([corner, corner + size], axis=-1)


def _clustered_boxes(rng, batch, num, clusters=5, image_size=(100.0, 100.0)):
    """Boxes jittered around a few centres, so that NMS has overlaps to suppress."""
    centres = rng.uniform(20.0, 80.0, size=(batch, clusters, 2))
    pick = rng.integers(0, clusters, size=(batch, num))
    centre = np.take_along_axis(centres, pick[..., None], axis=1)
    centre = centre + rng.normal(0.0, 4.0, (batch, num, 2))
    half = rng.uniform(5.0, 15.0, size=(batch, num, 2))
    return np.clip(np.concatenate([centre - half, centre + half], -1), 0.0, image_size[0])


# ------------------------------------------------------------------------------- anchors
def test_anchor_counts_and_first_anchors_by_hand():
    level2, level3 = anchors_lib.multilevel_anchors((64, 96), 2, 3, (32, 64), RATIOS)
    assert anchors_lib.num_anchors_per_location(RATIOS) == 3
    assert level2.shape == (16 * 24 * 3, 4) and level3.shape == (8 * 12 * 3, 4)
    assert level2.dtype == tf.float32
    a, b = 16 * SQRT2 / 2, 32 * SQRT2 / 2  # half height / width at ratio 0.5 and size 32
    expected = [[2 - a, 2 - b, 2 + a, 2 + b],  # (y0, x0): centre (2, 2), ratio 0.5 (h < w)
                [-14, -14, 18, 18],  # ratio 1
                [2 - b, 2 - a, 2 + b, 2 + a],  # ratio 2
                [2 - a, 6 - b, 2 + a, 6 + b]]  # (y0, x1): centre (2, 6)
    np.testing.assert_allclose(level2[:4], expected, atol=1e-5)
    np.testing.assert_allclose(level2[(1 * 24 + 0) * 3 + 1], [-10, -14, 22, 18])  # (y1, x0)
    np.testing.assert_allclose(level3[1], [-28, -28, 36, 36])  # centre (4, 4), size 64


def test_anchors_match_loops_on_a_size_not_divisible_by_the_stride():
    levels = anchors_lib.multilevel_anchors((70, 100), 3, 4, (40, 80), (0.25, 1.0))
    assert levels[0].shape == (9 * 13 * 2, 4)  # ceil(70 / 8) x ceil(100 / 8)
    for level, got, size in zip((3, 4), levels, (40, 80)):
        np.testing.assert_allclose(got, ref.anchors((70, 100), 2 ** level, size, (0.25, 1.0)),
                                   atol=1e-4)
    with pytest.raises(ValueError, match="one anchor size per level"):
        anchors_lib.multilevel_anchors((64, 64), 2, 6, (32, 64), RATIOS)


# ----------------------------------------------------------------------------- box coder
def test_encode_hand_case_and_numpy():
    anchor, box = [0.0, 0.0, 10.0, 20.0], [2.0, 4.0, 12.0, 44.0]
    got = box_coder.encode_boxes(tf.constant([box]), tf.constant([anchor]), (10, 10, 5, 5))
    np.testing.assert_allclose(got[0], [2.0, 7.0, 0.0, 5 * math.log(2.0)], rtol=1e-6)

    rng = np.random.default_rng(0)
    boxes = _random_boxes(rng, (2, 30), (64, 64))
    anchors = _random_boxes(rng, (2, 30), (64, 64))
    got = box_coder.encode_boxes(boxes, anchors, (10, 10, 5, 5)).numpy()
    want = np.array([[ref.encode(b, a, (10, 10, 5, 5)) for b, a in zip(bb, aa)]
                     for bb, aa in zip(boxes, anchors)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_decode_inverts_encode_with_broadcasting_and_clamps():
    rng = np.random.default_rng(1)
    rois = tf.constant(_random_boxes(rng, (2, 5, 1), (64, 64)), tf.float32)  # [B, R, 1, 4]
    boxes = tf.constant(_random_boxes(rng, (2, 5, 3), (64, 64)), tf.float32)  # [B, R, T, 4]
    deltas = box_coder.encode_boxes(boxes, rois, (10, 10, 5, 5))
    assert deltas.shape == (2, 5, 3, 4)
    np.testing.assert_allclose(box_coder.decode_boxes(deltas, rois, (10, 10, 5, 5)), boxes,
                               atol=1e-3)
    # dh, dw beyond log(1000 / 16) are clamped: a 16-pixel anchor grows to 1000 pixels at most.
    big = box_coder.decode_boxes(tf.constant([[0.0, 0.0, 100.0, 100.0]]),
                                 tf.constant([[0.0, 0.0, 16.0, 16.0]]))
    np.testing.assert_allclose(big[0], [-492.0, -492.0, 508.0, 508.0], rtol=1e-5)
    # Empty (padding) boxes encode to finite deltas.
    assert np.isfinite(box_coder.encode_boxes(tf.zeros([1, 4]), tf.constant([[0., 0, 8, 8]]))
                       .numpy()).all()


def test_clip_boxes():
    boxes = tf.constant([[[-5.0, 3.0, 70.0, 200.0]], [[10.0, -1.0, 20.0, 30.0]]])
    np.testing.assert_allclose(box_coder.clip_boxes(boxes, (64, 128)),
                               [[[0, 3, 64, 128]], [[10, 0, 20, 30]]])
    per_image = tf.constant([[[64, 128]], [[15, 25]]])  # [B, 1, 2]
    np.testing.assert_allclose(box_coder.clip_boxes(boxes, per_image),
                               [[[0, 3, 64, 128]], [[10, 0, 15, 25]]])


# ----------------------------------------------------------------------------------- iou
def test_iou_hand_cases_and_numpy():
    a = tf.constant([[[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 5.0, 8.0], [0.0, 0.0, 0.0, 0.0]]])
    b = tf.constant([[[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0], [0.0, 0.0, 0.0, 0.0]]])
    got = iou.pairwise_iou(a, b).numpy()
    np.testing.assert_allclose(got[0, 0], [1 / 7, 0.0, 0.0], rtol=1e-6)  # touching -> 0
    np.testing.assert_array_equal(got[0, 1:], 0.0)  # empty boxes: 0, not NaN

    rng = np.random.default_rng(2)
    boxes1, boxes2 = _random_boxes(rng, (2, 20), (50, 50)), _random_boxes(rng, (2, 7), (50, 50))
    want = [[[ref.iou(p, q) for q in b2] for p in b1] for b1, b2 in zip(boxes1, boxes2)]
    np.testing.assert_allclose(iou.pairwise_iou(boxes1, boxes2), want, atol=1e-6)


# ------------------------------------------------------------------------------- matcher
def test_matcher_hand_case_with_low_quality_ties():
    quality = tf.constant([[[0.8, 0.1, 0.9],  # gt 2 is padding: its 0.9 must not count
                            [0.5, 0.2, 0.0],
                            [0.1, 0.4, 0.0],  # gt 1's best IoU (0.4), tied with the next
                            [0.2, 0.4, 0.0],
                            [0.1, 0.2, 0.0]]])
    valid = tf.constant([[True, True, False]])
    matched, labels = matcher.match_boxes(quality, valid, 0.3, 0.7, allow_low_quality=False)
    np.testing.assert_array_equal(matched, [[0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(labels, [[1, -1, -1, -1, 0]])
    matched, labels = matcher.match_boxes(quality, valid, 0.3, 0.7, allow_low_quality=True)
    np.testing.assert_array_equal(matched, [[0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(labels, [[1, -1, 1, 1, 0]])
    assert matched.dtype == tf.int32 and labels.dtype == tf.int32


def test_matcher_without_valid_or_overlapping_ground_truth():
    quality = tf.constant([[[0.9, 0.0]] * 3, [[0.0, 0.0]] * 3])
    valid = tf.constant([[False, False], [True, False]])  # image 1: a gt touching nothing
    matched, labels = matcher.match_boxes(quality, valid, 0.3, 0.7, allow_low_quality=True)
    np.testing.assert_array_equal(labels, 0)
    np.testing.assert_array_equal(matched, 0)


@pytest.mark.parametrize("low,high,low_quality", [(0.3, 0.7, True), (0.5, 0.5, False)])
def test_matcher_matches_numpy(low, high, low_quality):
    rng = np.random.default_rng(3)
    quality = rng.integers(0, 10, size=(3, 40, 6)) / 10.0  # coarse values: many ties
    valid = rng.random((3, 6)) < 0.7
    valid[2] = False
    matched, labels = matcher.match_boxes(quality, valid, low, high, low_quality)
    for b in range(3):
        want_matched, want_labels = ref.match(quality[b], valid[b], low, high, low_quality)
        np.testing.assert_array_equal(labels[b], want_labels)
        np.testing.assert_array_equal(matched[b], want_matched)


# ------------------------------------------------------------------------------ sampling
def _labels(counts, num=200):
    """[B, num] labels with (positives, negatives) per image, the rest ignored, shuffled."""
    rng = np.random.default_rng(4)
    rows = []
    for pos, neg in counts:
        row = np.array([1] * pos + [0] * neg + [-1] * (num - pos - neg))
        rows.append(rng.permutation(row))
    return tf.constant(np.array(rows), tf.int32)


def test_sampling_counts_order_and_padding():
    labels = _labels([(10, 100), (3, 20), (30, 100)])
    indices, valid = sampling.sample_balanced_indices(labels, 64, 0.25, seed=(1, 2))
    assert indices.shape == (3, 64) and valid.shape == (3, 64)
    picked = tf.gather(labels, indices, batch_dims=1).numpy()
    indices, valid = indices.numpy(), valid.numpy()
    # (positives, negatives): min(pos, 16), then negatives fill up to 64 while they last.
    for b, (pos, neg) in enumerate([(10, 54), (3, 20), (16, 48)]):
        np.testing.assert_array_equal(picked[b, valid[b]], [1] * pos + [0] * neg)
        assert valid[b].sum() == pos + neg and not valid[b, pos + neg:].any()
        assert len(set(indices[b, valid[b]])) == pos + neg
    np.testing.assert_array_equal(indices[~valid], 0)

    mask = sampling.sample_balanced(labels, 64, 0.25, seed=(1, 2)).numpy()
    for b in range(3):
        assert set(np.flatnonzero(mask[b])) == set(indices[b, valid[b]])
    assert not (mask & (labels.numpy() == -1)).any()


def test_sampling_is_deterministic_per_seed_and_random_across_seeds():
    labels = _labels([(10, 100)])
    first = sampling.sample_balanced(labels, 8, 0.25, seed=(5, 0)).numpy()
    np.testing.assert_array_equal(first, sampling.sample_balanced(labels, 8, 0.25, seed=(5, 0)))
    assert (first != sampling.sample_balanced(labels, 8, 0.25, seed=(5, 1)).numpy()).any()
    ever = np.zeros(labels.shape, bool)
    for step in range(50):
        ever |= sampling.sample_balanced(labels, 8, 0.25, seed=tf.constant([5, step])).numpy()
    assert ever[labels.numpy() == 1].all()  # every positive gets its turn

    draw = tf.function(lambda: sampling.sample_balanced(labels, 8, 0.25, seed=7))
    assert (draw().numpy() != draw().numpy()).any()  # op-level seed: a new draw per call


# ----------------------------------------------------------------------------------- nms
def test_batched_nms_matches_greedy_numpy():
    rng = np.random.default_rng(5)
    boxes = _clustered_boxes(rng, 2, 60)
    scores = rng.permutation(120).reshape(2, 60) / 120.0
    for max_output, score_threshold in [(12, float("-inf")), (50, 0.3)]:
        out_boxes, out_scores, out_index, count = nms.batched_nms(
            boxes, scores, max_output, 0.5, score_threshold)
        assert out_boxes.shape == (2, max_output, 4) and count.dtype == tf.int32
        for b in range(2):
            keep = ref.greedy_nms(boxes[b], scores[b], 0.5, score_threshold, max_output)
            n = int(count[b])
            assert n == len(keep)
            np.testing.assert_array_equal(out_index[b, :n], keep)
            np.testing.assert_allclose(out_boxes[b, :n], boxes[b, keep], atol=1e-5)
            np.testing.assert_allclose(out_scores[b, :n], scores[b, keep], atol=1e-6)
            np.testing.assert_array_equal(out_index[b, n:], 0)
            np.testing.assert_array_equal(out_boxes[b, n:], 0.0)
    # IoU exactly at the threshold (100 / 200) keeps the box; 105 / 200 suppresses it.
    tie = nms.batched_nms(tf.constant([[[0.0, 0, 10, 20], [0, 0, 10, 10], [0, 0, 10, 10.5]]]),
                          tf.constant([[0.9, 0.8, 0.7]]), 3, 0.5)
    np.testing.assert_array_equal(tie[2], [[0, 1, 0]])
    # Translation invariance, also when every coordinate is negative.
    moved = nms.batched_nms(boxes - 500.0, scores, 12, 0.5)
    np.testing.assert_array_equal(moved[2], nms.batched_nms(boxes, scores, 12, 0.5)[2])


def test_multiclass_nms_matches_per_class_greedy_numpy():
    rng = np.random.default_rng(6)
    num, classes = 30, 3
    boxes = _clustered_boxes(rng, 2, num * classes).reshape(2, num, classes, 4)
    scores = rng.permutation(2 * num * classes).reshape(2, num, classes) / (2 * num * classes)
    out_boxes, out_scores, out_classes, count = nms.multiclass_nms(boxes, scores, 10, 15, 0.5,
                                                                   0.2)
    assert out_classes.dtype == tf.int32 and out_boxes.shape == (2, 15, 4)
    for b in range(2):
        found = []
        for c in range(classes):
            for i in ref.greedy_nms(boxes[b, :, c], scores[b, :, c], 0.5, 0.2, 10):
                found.append((scores[b, i, c], c, boxes[b, i, c]))
        found = sorted(found, key=lambda t: -t[0])[:15]
        n = int(count[b])
        assert n == len(found)
        np.testing.assert_allclose(out_scores[b, :n], [f[0] for f in found], atol=1e-6)
        np.testing.assert_array_equal(out_classes[b, :n], [f[1] for f in found])
        np.testing.assert_allclose(out_boxes[b, :n], [f[2] for f in found], atol=1e-4)
    # Pixel coordinates beyond 1 are kept as they are; a score equal to the threshold is out;
    # IoU exactly at the threshold (100 / 200) keeps the box, as in batched_nms.
    one = nms.multiclass_nms(tf.constant([[[[10.0, 20.0, 300.0, 400.0]], [[0, 0, 5, 5]]]]),
                             tf.constant([[[0.9], [0.2]]]), 5, 5, 0.5, 0.2)
    np.testing.assert_allclose(one[0][0, 0], [10, 20, 300, 400])
    assert int(one[3][0]) == 1
    tie_boxes = tf.constant([[[[0.0, 0, 10, 20]], [[0, 0, 10, 10]], [[0, 0, 10, 10.5]]]])
    tie = nms.multiclass_nms(tie_boxes, tf.constant([[[0.9], [0.8], [0.7]]]), 3, 3, 0.5, 0.0)
    np.testing.assert_allclose(tie[1][0], [0.9, 0.8, 0.0])


# ----------------------------------------------------------------------------- roi_align
def test_assign_levels_hand_cases():
    sides = [224.0, 112.0, 111.0, 448.0, 1000.0, 10.0, 0.0]
    boxes = tf.constant([[[0.0, 0.0, s, s] for s in sides]])
    np.testing.assert_array_equal(roi_align.assign_levels(boxes), [[4, 3, 2, 5, 5, 2, 2]])


def _pyramid(rng, image=256, levels=(2, 3, 4, 5), channels=3, batch=2):
    return [rng.normal(size=(batch, image // 2 ** l, image // 2 ** l, channels))
            .astype(np.float32) for l in levels]


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

# ------------------------------------------------------------------------------ mask ops
def test_mask_targets_of_a_rectangle():
    masks = np.zeros((1, 2, 64, 64), np.uint8)
    masks[0, 1, 8:24, 16:40] = 1  # rows 8..23, columns 16..39: the box (8, 16, 24, 40)
    rois = tf.constant([[[8.0, 16.0, 24.0, 40.0], [0.0, 8.0, 32.0, 48.0],
                         [8.0, 16.0, 24.0, 40.0]]])
    got = mask_ops.mask_targets(masks, tf.constant([[1, 1, 0]]), rois, size=28).numpy()
    np.testing.assert_array_equal(got[0, 0], 1.0)  # the RoI is the rectangle
    # RoI (0, 8, 32, 48): 28 cells of 32/28 rows and 40/28 columns; a cell is 1 when its
    # centre lies in the rectangle.
    centre_y = (np.arange(28) + 0.5) * 32 / 28
    centre_x = 8 + (np.arange(28) + 0.5) * 40 / 28
    want = ((centre_y >= 8) & (centre_y < 24))[:, None] & ((centre_x >= 16) & (centre_x < 40))
    np.testing.assert_array_equal(got[0, 1], want.astype(np.float32))
    np.testing.assert_array_equal(got[0, 2], 0.0)  # matched to the empty mask 0


def test_mask_targets_match_numpy_roi_align():
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[:48, :64]
    masks = np.zeros((2, 3, 48, 64), np.uint8)
    for b in range(2):
        for m in range(3):
            cy, cx, r = rng.uniform(10, 38), rng.uniform(10, 54), rng.uniform(5, 15)
            masks[b, m] = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 < r * r
    rois = _random_boxes(rng, (2, 6), (48, 64), min_size=4.0, max_size=30.0)
    matched = rng.integers(0, 3, size=(2, 6)).astype(np.int32)
    got = mask_ops.mask_targets(masks, matched, rois, size=8, sampling_ratio=2).numpy()
    for b in range(2):
        for k in range(6):
            soft = ref.roi_align(masks[b, matched[b, k], :, :, None].astype(np.float64),
                                 rois[b, k], 1.0, 8, 2)[..., 0]
            decided = np.abs(soft - 0.5) > 1e-5
            np.testing.assert_array_equal(got[b, k][decided], (soft >= 0.5)[decided])


def test_paste_all_ones_mask_by_hand():
    masks = tf.ones([1, 3, 7, 7])
    boxes = tf.constant([[[10.0, 20.0, 30.0, 50.0], [10.3, 20.7, 30.2, 49.6],
                          [0.0, 0.0, 0.0, 0.0]]])
    got = mask_ops.paste_masks(masks, boxes, (40, 64)).numpy()
    assert got.shape == (1, 3, 40, 64)
    # Box 0, 20 x 30 pixels, 7 cells: the outer pixel centres sit 0.5 px inside the box, at
    # cell coordinate -0.5 + 0.5 * 7 / 20 = -0.325 (rows) and -0.5 + 0.5 * 7 / 30 (columns),
    # where zero padding leaves 1 - 0.325 = 0.675 and 1 - 0.3833 = 0.6167; the second
    # column centre (1.5 px in) sits at -0.15: 0.85. Everything else inside is 1.
    rows = np.zeros(40)
    rows[10:30] = 1.0
    rows[[10, 29]] = 0.675
    cols = np.zeros(64)
    cols[20:50] = 1.0
    cols[[20, 49]] = 1.0 - (0.5 - 0.5 * 7 / 30)
    cols[[21, 48]] = 0.85
    np.testing.assert_allclose(got[0, 0], np.outer(rows, cols), atol=1e-5)
    # Box 1: nothing outside the pixel centres inside [10.3, 30.2] x [20.7, 49.6].
    inside = np.zeros((40, 64), bool)
    inside[10:30, 21:50] = True
    np.testing.assert_array_equal(got[0, 1][~inside], 0.0)
    assert (got[0, 1][inside] > 0.0).all()
    np.testing.assert_array_equal(got[0, 2], 0.0)  # a padding box pastes nothing


def test_paste_masks_match_numpy():
    rng = np.random.default_rng(10)
    masks = rng.random((2, 3, 6, 6)).astype(np.float32)
    boxes = _random_boxes(rng, (2, 3), (24, 32), min_size=3.0, max_size=20.0)
    got = mask_ops.paste_masks(masks, boxes, (24, 32)).numpy()
    for b in range(2):
        for k in range(3):
            np.testing.assert_allclose(got[b, k], ref.paste_mask(masks[b, k], boxes[b, k],
                                                                 (24, 32)), atol=1e-5)


# ------------------------------------------------------------------ tf.function, XLA, tf.distribute
IMAGE = (64, 64)


def _pipeline(features, gt_boxes, gt_masks, gt_valid, scores, seed):
    """A small training-and-inference pass through every XLA-compilable op."""
    anchors = tf.concat(anchors_lib.multilevel_anchors(IMAGE, 2, 3, (16, 32), RATIOS), 0)
    batch_anchors = tf.broadcast_to(anchors, [2] + anchors.shape.as_list())
    overlaps = iou.pairwise_iou(batch_anchors, gt_boxes)
    matched, labels = matcher.match_boxes(overlaps, gt_valid, 0.3, 0.7, True)
    sampled = sampling.sample_balanced(labels, 32, 0.5, seed=seed)
    deltas = box_coder.encode_boxes(tf.gather(gt_boxes, matched, batch_dims=1), batch_anchors)
    decoded = box_coder.clip_boxes(box_coder.decode_boxes(deltas, batch_anchors), IMAGE)
    boxes, _, index, count = nms.batched_nms(decoded, scores, 10, 0.7)
    pooled = roi_align.multilevel_roi_align(features, boxes, 4)
    targets = mask_ops.mask_targets(gt_masks, tf.gather(matched, index, batch_dims=1), boxes, 8)
    pasted = mask_ops.paste_masks(targets, boxes, IMAGE)
    return {"sampled": tf.reduce_sum(tf.cast(sampled, tf.int32)), "count": count,
            "boxes": boxes, "pooled": pooled, "targets": targets, "pasted": pasted}


def _pipeline_inputs():
    rng = np.random.default_rng(11)
    features = [tf.constant(f) for f in _pyramid(rng, image=64, levels=(2, 3, 4, 5))]
    gt_boxes = np.array([[[4, 4, 30, 40], [20, 30, 60, 62], [0, 0, 0, 0]]] * 2, np.float32)
    masks = np.zeros((2, 3, 64, 64), np.uint8)
    masks[:, 0, 4:30, 4:40] = 1
    masks[:, 1, 20:60, 30:62] = 1
    num_anchors = (16 * 16 + 8 * 8) * 3
    scores = rng.permutation(2 * num_anchors).reshape(2, num_anchors).astype(np.float32)
    return (features, tf.constant(gt_boxes), tf.constant(masks),
            tf.constant([[True, True, False]] * 2), tf.constant(scores))


def test_pipeline_traces_once_and_compiles_with_xla():
    traces = []

    def counted(*args):
        traces.append(1)
        return _pipeline(*args)

    inputs = _pipeline_inputs()
    seed = tf.constant([3, 4])
    eager = _pipeline(*inputs, seed)
    graph = tf.function(counted)
    graph(*inputs, seed)
    graph(*inputs, seed + 1)
    assert len(traces) == 1
    compiled = tf.function(_pipeline, jit_compile=True)(*inputs, seed)
    assert int(eager["count"][0]) > 0 and int(eager["sampled"]) > 0
    for key in ("sampled", "count", "targets"):
        np.testing.assert_array_equal(compiled[key], eager[key], err_msg=key)
    for key in ("boxes", "pooled", "pasted"):
        np.testing.assert_allclose(compiled[key], eager[key], atol=1e-4, err_msg=key)


def test_ops_run_under_tf_distribute():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    features, gt_boxes, gt_masks, gt_valid, scores = _pipeline_inputs()

    @tf.function
    def step():
        def replica_fn():
            out = _pipeline(features, gt_boxes, gt_masks, gt_valid, scores, seed=0)
            class_boxes = tf.tile(out["boxes"][:, :, None, :], [1, 1, 2, 1])
            class_scores = tf.random.stateless_uniform([2, 10, 2], seed=[0, 0])
            return out["count"], nms.multiclass_nms(class_boxes, class_scores, 5, 5, 0.5, 0.1)[3]
        return strategy.run(replica_fn)

    with strategy.scope():
        count, detections = step()
    eager = _pipeline(features, gt_boxes, gt_masks, gt_valid, scores, seed=(0, 0))
    np.testing.assert_array_equal(strategy.experimental_local_results(count)[0], eager["count"])
    assert (strategy.experimental_local_results(detections)[0].numpy() > 0).all()
