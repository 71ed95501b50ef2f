"""FPN: level shapes, P6, and the top-down path."""

import numpy as np

from oanet_tf.modeling.fpn import FPN
from tests.modeling.layer_checks import H, W, pyramid, round_trip


def test_fpn_shapes_and_top_down_path():
    fpn = FPN(channels=16, num_inputs=4)
    outputs = round_trip(fpn, pyramid())
    assert [tuple(o.shape) for o in outputs] == [
        (2, H // 4, W // 4, 16), (2, H // 8, W // 8, 16), (2, H // 16, W // 16, 16),
        (2, H // 32, W // 32, 16), (2, H // 64, W // 64, 16)]
    # P6 is P5 subsampled by 2 (kernel 1, stride 2).
    np.testing.assert_allclose(outputs[4], outputs[3][:, ::2, ::2], rtol=1e-6)
    # Changing only C5 changes P2 (top-down path), changing only C2 leaves P3..P6 alone.
    features = pyramid()
    bumped = features[:3] + [features[3] + 1.0]
    assert not np.allclose(fpn(bumped)[0], outputs[0])
    bumped = [features[0] + 1.0] + features[1:]
    for got, want in zip(fpn(bumped)[1:], outputs[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-6)
