"""oanet_tf.ops.mask_ops: mask targets and pasting against hand cases and numpy_reference."""

import numpy as np
import tensorflow as tf

from oanet_tf.ops import mask_ops
from tests import numpy_reference as ref
from tests.ops.random_inputs import _random_boxes


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


def _pasting_case(seed):
    """Two images of 4 RoI masks: boxes inside, across the border, sub-pixel, and an empty
    padding box; the last instance of image 1 is left out."""
    rng = np.random.default_rng(seed)
    masks = rng.random((2, 4, 28, 28)).astype(np.float32)
    boxes = np.array([[[3.2, 4.7, 20.5, 30.1], [-5.0, 20.0, 12.3, 45.9], [10.4, 10.2, 10.9, 11.1],
                       [0.0, 0.0, 0.0, 0.0]],
                      [[0.0, 0.0, 30.0, 40.0], [25.5, 33.3, 31.0, 41.0], [7.0, 9.0, 18.0, 28.0],
                       [2.0, 3.0, 15.0, 16.0]]], np.float32)
    keep = np.array([[True, True, True, True], [True, True, True, False]])
    return masks, boxes, keep


def test_windows_hold_every_pasted_pixel():
    masks, boxes, _ = _pasting_case(31)
    pasted = mask_ops.paste_masks(tf.constant(masks), tf.constant(boxes), (30, 40)).numpy()
    windows = mask_ops.box_windows(tf.constant(boxes), (30, 40)).numpy()
    for b in range(2):
        for k in range(4):
            row0, col0, row1, col1 = windows[b, k]
            outside = pasted[b, k].copy()
            outside[row0:row1, col0:col1] = 0
            assert not outside.any()
            window = mask_ops.paste_window(masks[b, k], boxes[b, k], windows[b, k]).numpy()
            np.testing.assert_allclose(window, pasted[b, k, row0:row1, col0:col1], atol=1e-6)


def test_mask_pixels_list_the_pasted_masks_above_the_threshold():
    masks, boxes, keep = _pasting_case(32)
    pasted = mask_ops.paste_masks(tf.constant(masks), tf.constant(boxes), (30, 40)).numpy()
    want = np.argwhere((pasted >= 0.5) & keep[:, :, None, None])
    assert len(want) > 100
    roi_masks = mask_ops.RoIMasks(tf.constant(masks), tf.constant(boxes), (30, 40))
    got = tf.function(roi_masks.pixels)(tf.constant(keep))
    np.testing.assert_array_equal(got, want)
    none = roi_masks.pixels(tf.zeros([2, 4], tf.bool))
    assert none.shape == (0, 4)
