"""oanet_tf.ops.connected_components against scipy.ndimage.label (8-connectivity) on
hand-built masks, with regions that touch only at a corner."""

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.ops.connected_components import (BACKGROUND, component_areas,
                                               connected_components)

ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is the independent reference")
EIGHT_CONNECTED = np.ones((3, 3), int)


def _reference(classes, foreground):
    """Per image and class, scipy's 8-connected labels -> (first flat index of each pixel's
    region or BACKGROUND, area of each pixel's region or 0)."""
    first = np.full(classes.shape, BACKGROUND, np.int64)
    area = np.zeros(classes.shape, np.int64)
    flat_index = np.arange(classes.size).reshape(classes.shape)
    for b in range(classes.shape[0]):
        for c in np.unique(classes[b][foreground[b]]):
            regions, count = ndimage.label(foreground[b] & (classes[b] == c), EIGHT_CONNECTED)
            for r in range(1, count + 1):
                inside = regions == r
                first[b][inside] = flat_index[b][inside].min()
                area[b][inside] = inside.sum()
    return first, area


def _check(classes, foreground):
    classes, foreground = np.asarray(classes), np.asarray(foreground, bool)
    components = connected_components(tf.constant(classes), tf.constant(foreground))
    first, area = _reference(classes, foreground)
    np.testing.assert_array_equal(components, first)
    np.testing.assert_array_equal(component_areas(components), area)
    return components.numpy()


def test_diagonal_contact_joins_regions_of_one_class_only():
    """Two squares of class 1 touching at a corner are one region (8-connectivity); a class-2
    square touching a class-1 square along an edge stays apart; a hole's ring is one region."""
    classes = np.zeros((1, 9, 9), int)
    classes[0, 0:2, 0:2] = 1
    classes[0, 2:4, 2:4] = 1  # corner contact with the square above
    classes[0, 2:4, 4:6] = 2  # edge contact, other class
    classes[0, 5:9, 5:9] = 3
    classes[0, 6:8, 6:8] = 0  # a hole: background
    foreground = classes > 0
    components = _check(classes, foreground)
    assert components[0, 0, 0] == components[0, 3, 3] == 0  # one region, first pixel 0
    assert components[0, 2, 4] != components[0, 2, 3]
    assert len(np.unique(components[foreground])) == 3
    assert ndimage.label(foreground[0] & (classes[0] == 1))[1] == 2  # 4-connected: two


def test_random_maps_with_snakes_and_batches_match_scipy():
    """Random class maps (many small regions, corner contacts) and a spiral whose one region
    needs many rounds; two images of a batch never join."""
    rng = np.random.default_rng(3)
    classes = rng.integers(0, 3, size=(2, 23, 31))
    _check(classes, classes > 0)
    spiral = np.zeros((1, 21, 21), int)
    top, left, bottom, right = 0, 0, 20, 20
    while top <= bottom and left <= right:  # a one-pixel path, walls two apart
        spiral[0, top, left:right + 1] = spiral[0, top:bottom + 1, right] = 1
        spiral[0, bottom, left:right + 1] = 1
        spiral[0, top + 2:bottom + 1, left] = 1
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
        if top <= bottom:
            spiral[0, top, left - 2:left] = 1
    _check(spiral * 2, spiral > 0)
    batch = np.ones((2, 5, 5), int)
    components = _check(batch, batch > 0)
    assert components[0, 0, 0] == 0 and components[1, 0, 0] == 25


def test_sizes_known_only_when_the_graph_runs():
    graph = tf.function(connected_components, input_signature=[
        tf.TensorSpec([None, None, None], tf.int32), tf.TensorSpec([None, None, None], tf.bool)])
    classes = np.random.default_rng(4).integers(0, 2, size=(1, 12, 17)).astype(np.int32)
    np.testing.assert_array_equal(graph(classes, classes > 0),
                                  _reference(classes, classes > 0)[0])


@pytest.mark.parametrize("shape", [(1, 1, 7), (2, 6, 1), (1, 1, 1), (2, 40, 57)])
def test_thin_maps_empty_foreground_and_blocky_maps_with_holes_match_scipy(shape):
    """A single row or column, one pixel, nothing in the foreground, and blocky class maps
    (regions of many runs, joined only through the rows) with scattered holes."""
    rng = np.random.default_rng(sum(shape))
    _check(np.zeros(shape, int), np.zeros(shape, bool))
    blocks = rng.integers(0, 4, size=(shape[0], -(-shape[1] // 5), -(-shape[2] // 5)))
    classes = blocks.repeat(5, axis=1).repeat(5, axis=2)[:, :shape[1], :shape[2]]
    _check(classes, rng.random(shape) < 0.85)
    _check(classes, np.ones(shape, bool))
