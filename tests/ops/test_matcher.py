"""oanet_tf.ops.matcher against a hand case with ties and the loop reference of numpy_reference."""

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.ops import matcher
from tests import numpy_reference as ref


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
