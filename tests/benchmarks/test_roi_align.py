"""The ops suite's RoIAlign notes: boxes per FPN level, the largest difference of two
outputs, and whether a method compiles under XLA, against hand-computed cases."""

import tensorflow as tf

from harness import roi_align

# Boxes of side 224 sit on level 4 (the canonical size), each halving one level lower, each
# doubling one higher; levels clip to P2..P5.
SIDES_AND_LEVELS = ((224, 4), (112, 3), (56, 2), (20, 2), (448, 5), (1000, 5))


def test_boxes_per_level_follow_the_fpn_rule():
    boxes = tf.constant([[[0.0, 0.0, side, side] for side, _ in SIDES_AND_LEVELS]])
    counts = roi_align.boxes_per_level(boxes)
    levels = [level for _, level in SIDES_AND_LEVELS]
    assert counts == {f"P{k}": levels.count(k) for k in roi_align.LEVELS}


def test_max_difference_over_every_output_and_the_scale_of_the_first():
    first = [tf.constant([1.0, -2.0]), tf.constant([[3.0]])]
    second = [tf.constant([1.5, -2.0]), tf.constant([[-1.0]])]
    assert roi_align.max_difference(first, second) == (4.0, 3.0)


def test_compiles_under_xla_says_why_not():
    case = roi_align.make_case(0, (64, 64), 1, 4, 8, tf.float32)
    assert roi_align.compiles_under_xla("gather", case, 7, 2) == "compiles"
    refused = roi_align.compiles_under_xla("bilinear", case, 7, 2)
    assert refused.startswith("does not compile (ValueError: RoIAlign method must be one of")
