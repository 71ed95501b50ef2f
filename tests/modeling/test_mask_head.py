"""Mask head: shapes and round trip."""

import tensorflow as tf

from oanet_tf.modeling.mask_head import MaskHead
from tests.modeling.layer_checks import round_trip


def test_mask_head_shapes():
    head = MaskHead(num_things=3, conv_dim=8, num_conv=2)
    out = round_trip(head, tf.random.normal([2, 4, 14, 14, 8], seed=2))
    assert tuple(out.shape) == (2, 4, 28, 28, 3)
