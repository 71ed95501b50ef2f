"""Box head: shapes, round trip, RoIs processed independently."""

import numpy as np
import tensorflow as tf

from oanet_tf.modeling.box_head import BoxHead
from tests.modeling.layer_checks import round_trip


def test_box_head_shapes():
    head = BoxHead(num_things=3, fc_dim=32, num_fc=2)
    pooled = tf.random.normal([2, 5, 7, 7, 8], seed=1)
    logits, deltas = round_trip(head, pooled)
    assert tuple(logits.shape) == (2, 5, 4) and tuple(deltas.shape) == (2, 5, 3, 4)
    # Each RoI is processed on its own: permuting RoIs permutes outputs.
    perm = [4, 2, 0, 1, 3]
    logits_p, _ = head(tf.gather(pooled, perm, axis=1))
    np.testing.assert_allclose(logits_p, tf.gather(logits, perm, axis=1), rtol=1e-5, atol=1e-6)
