"""Stuff head (paper Figure 3): shapes and round trip."""

import pytest

from oanet_tf.modeling.stuff_head import StuffHead
from tests.modeling.layer_checks import H, W, pyramid, round_trip


@pytest.mark.parametrize("num_classes", [5, 1])
def test_stuff_head_shapes(num_classes):
    head = StuffHead(num_classes=num_classes, channels=8, num_levels=4)
    out = round_trip(head, pyramid())
    assert tuple(out.shape) == (2, H // 4, W // 4, num_classes)
