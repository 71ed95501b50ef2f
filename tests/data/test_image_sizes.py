"""Resized sizes (nearest or floor rounding, as torchvision) and mean-valued padding."""

import numpy as np
import tensorflow as tf

from oanet_tf.config import load_config
from oanet_tf.data import image_sizes


def test_floor_rounding_is_torchvisions():
    """torchvision: floor(side * min(800 / short, 1333 / long)) in float64."""
    nearest = load_config(None, ["data.short_side=800", "data.max_side=1333"]).data
    floor = load_config(None, ["data.resize_rounding=floor"]).data
    for height, width in ((427, 640), (360, 640), (480, 640), (300, 500)):
        scale = min(800 / min(height, width), 1333 / max(height, width))
        want = (int(height * scale), int(width * scale))
        assert tuple(int(v) for v in image_sizes.resized_size(height, width, floor)) == want
    assert tuple(int(v) for v in image_sizes.resized_size(427, 640, nearest)) == (800, 1199)
    assert tuple(int(v) for v in image_sizes.resized_size(360, 640, nearest)) == (750, 1333)
    assert tuple(int(v) for v in image_sizes.resized_size(360, 640, floor)) == (749, 1333)


def test_pad_images_sets_only_the_padding():
    images = tf.ones([2, 4, 4, 3])  # one more column of padding below
    filled = image_sizes.pad_images(images, 0, 1, tf.constant([[4, 4], [2, 3]]),
                                    (10.0, 20.0, 30.0)).numpy()
    assert filled.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(filled[0, :, :4], 1.0)
    np.testing.assert_array_equal(filled[0, :, 4:], np.broadcast_to([10, 20, 30], (4, 1, 3)))
    np.testing.assert_array_equal(filled[1, :2, :3], 1.0)
    np.testing.assert_array_equal(filled[1, 2:, :], np.broadcast_to([10, 20, 30], (2, 5, 3)))
    np.testing.assert_array_equal(filled[1, :, 3:], np.broadcast_to([10, 20, 30], (4, 2, 3)))
    black = image_sizes.pad_images(images, 0, 1, tf.constant([[1, 1], [1, 1]]), (0, 0, 0))
    np.testing.assert_array_equal(black.numpy()[:, :, :4], 1.0)  # zero padding: as tf.pad
    np.testing.assert_array_equal(black.numpy()[:, :, 4:], 0.0)
