"""oanet_tf.ops.box_coder: encode, decode and clip against hand cases and numpy_reference."""

import math

import numpy as np
import tensorflow as tf

from oanet_tf.ops import box_coder
from tests import numpy_reference as ref
from tests.ops.random_inputs import _random_boxes


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
