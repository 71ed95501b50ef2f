"""oanet_tf.ops.anchors against hand-computed anchors and the loops of numpy_reference."""

import math

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.ops import anchors as anchors_lib
from tests import numpy_reference as ref
from tests.ops.random_inputs import RATIOS


SQRT2 = math.sqrt(2.0)


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
