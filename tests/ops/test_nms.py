"""oanet_tf.ops.nms against the greedy loop of numpy_reference."""

import numpy as np
import tensorflow as tf

from oanet_tf.ops import nms
from tests import numpy_reference as ref
from tests.ops.random_inputs import _clustered_boxes


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


def test_grouped_nms_is_greedy_nms_per_group_then_the_best_over_all_groups():
    """Boxes of different groups never suppress each other, on both kernels; the kept boxes
    come best first over all groups, as per-group greedy NMS merged by score."""
    rng = np.random.default_rng(8)
    boxes = _clustered_boxes(rng, 2, 60)
    scores = rng.permutation(120).reshape(2, 60) / 120.0
    groups = np.arange(60) % 3
    for xla in (False, True):
        _, out_scores, out_index, count = nms.batched_nms(boxes, scores, 20, 0.5, xla=xla,
                                                          groups=groups)
        for b in range(2):
            kept = np.concatenate([np.flatnonzero(groups == g)[ref.greedy_nms(
                boxes[b, groups == g], scores[b, groups == g], 0.5, float("-inf"), 60)]
                for g in range(3)])
            kept = kept[np.argsort(-scores[b, kept])][:20]
            assert int(count[b]) == len(kept)
            np.testing.assert_array_equal(out_index[b, :len(kept)], kept)
            np.testing.assert_allclose(out_scores[b, :len(kept)], scores[b, kept])
        one_group = nms.batched_nms(boxes, scores, 20, 0.5, xla=xla, groups=np.zeros(60, int))
        np.testing.assert_array_equal(one_group[2], nms.batched_nms(boxes, scores, 20, 0.5)[2])


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
