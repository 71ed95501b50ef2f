"""Inputs shared by the tests of the SRM layer (test_srm_layer.py) and of the component and
its loss (test_spatial_ranking.py)."""

import numpy as np
import tensorflow as tf

from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.modeling.srm_layer import SpatialRankingModule, srm_inputs


def srm(num_things, kernel="gcn", kernel_size=7, stride=1, **kwargs):
    """The layer with the paper's kernel unless a test chooses another."""
    return SpatialRankingModule(num_things, kernel, kernel_size, stride, **kwargs)


def random_channels(shape, seed=0):
    """Random 0/1 thing channels of `shape` [B, H, W, T]."""
    rng = np.random.default_rng(seed)
    return tf.constant(rng.random(shape) < 0.3, tf.float32)


def random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32)
                       for w in layer.get_weights()])


def sparse_inputs(seed, height, width, num_things=5):
    """Channels in which category 3 (index 2) is absent, with their count and an owner."""
    rng = np.random.default_rng(seed)
    masks = (rng.random((2, 4, height, width)) < 0.35).astype(np.float32)
    classes = np.array([[1, 2, 2, 4], [5, 1, 0, 4]], np.int32)
    channels, count = srm_inputs(tf.constant(masks), tf.constant(classes), num_things)
    owner = rng.integers(0, num_things, size=(2, height, width)).astype(np.int32)
    owner[rng.random((2, height, width)) < 0.2] = IGNORE_LABEL
    return channels, count, tf.constant(owner)
