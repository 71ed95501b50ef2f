"""oanet_tf.ops.iou against hand-computed overlaps and numpy_reference."""

import numpy as np
import tensorflow as tf

from oanet_tf.ops import iou
from tests import numpy_reference as ref
from tests.ops.random_inputs import _random_boxes


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
