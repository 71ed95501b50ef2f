"""Overlap ownership accuracy on hand-built cases whose answers are counted by hand."""

import math

import numpy as np
import pytest

from oanet_tf.evaluation.ownership import (OwnershipAccumulator, instance_segments,
                                           match_segments)

H, W = 16, 20
PERSON, TIE, WALL = 1, 32, 200  # dataset category ids


def _box(y1, x1, y2, x2):
    mask = np.zeros((H, W), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _segments(pairs, crowd=()):
    return [{"id": i, "category_id": c, "iscrowd": int(i in crowd)} for i, c in pairs]


def _person_with_tie():
    """GT: a person (144 px) whose instance mask includes a tie (10 px); the tie owns them."""
    person, tie = _box(2, 4, 14, 16), _box(5, 9, 10, 11)
    panoptic = np.full((H, W), 3)
    panoptic[person] = 1
    panoptic[tie] = 2
    segments = _segments([(1, PERSON), (2, TIE), (3, WALL)])
    return np.stack([person, tie]), np.array([PERSON, TIE]), panoptic, segments


def test_tie_on_top_is_right_and_erased_tie_is_wrong():
    masks, categories, gt, gt_segments = _person_with_tie()
    right = OwnershipAccumulator()
    pred = np.where(gt == 1, 7, np.where(gt == 2, 9, 4))  # the same layout, other ids
    right.update(masks, categories, gt, gt_segments, pred,
                 _segments([(7, PERSON), (9, TIE), (4, WALL)]))
    assert right.result() == {"accuracy": 1.0, "overlap_pixels": 10, "correct_pixels": 10,
                              "unowned_pixels": 0, "pairs": 1}

    wrong = OwnershipAccumulator()
    erased = np.where(masks[0], 7, 4)  # the person covers the tie (heuristic merge)
    wrong.update(masks, categories, gt, gt_segments, erased,
                 _segments([(7, PERSON), (4, WALL)]))
    assert wrong.result()["accuracy"] == 0.0
    assert wrong.result()["overlap_pixels"] == 10
    # Both images in one accumulator: 10 of 20 pixels right.
    right.update(masks, categories, gt, gt_segments, erased,
                 _segments([(7, PERSON), (4, WALL)]))
    result = right.result()
    assert (result["correct_pixels"], result["overlap_pixels"], result["pairs"]) == (10, 20, 2)
    assert result["accuracy"] == 0.5


def test_owner_segment_of_the_wrong_category_is_wrong():
    masks, categories, gt, gt_segments = _person_with_tie()
    pred = np.where(gt == 1, 7, np.where(gt == 2, 9, 4))
    accumulator = OwnershipAccumulator()
    accumulator.update(masks, categories, gt, gt_segments, pred,
                       _segments([(7, PERSON), (9, PERSON + 1), (4, WALL)]))
    assert accumulator.result()["correct_pixels"] == 0


def test_three_way_overlap_counts_each_pixel_once():
    a, b, c = _box(0, 0, 10, 10), _box(5, 5, 15, 15), _box(3, 7, 12, 9)
    gt = np.zeros((H, W), int)  # void background
    gt[b], gt[a], gt[c] = 2, 1, 3  # C on top of A on top of B
    gt_segments = _segments([(1, PERSON), (2, PERSON), (3, TIE)])
    masks, categories = np.stack([a, b, c]), np.array([PERSON, PERSON, TIE])
    # Overlap pixels: A&B 25, plus A&C outside B 4, plus B&C outside A 4 = 33.
    exact = OwnershipAccumulator()
    exact.update(masks, categories, gt, gt_segments, gt, gt_segments)
    assert exact.result() == {"accuracy": 1.0, "overlap_pixels": 33, "correct_pixels": 33,
                              "unowned_pixels": 0, "pairs": 3}
    # Prediction with B drawn over A: the 15 pixels of A&B outside C go to the wrong owner;
    # the segments still match (A: IoU 71/86, B: 71/86, C exact).
    pred = np.zeros((H, W), int)
    pred[a], pred[b], pred[c] = 1, 2, 3
    assert match_segments(gt, gt_segments, pred, gt_segments) == {1: 1, 2: 2, 3: 3}
    swapped = OwnershipAccumulator()
    swapped.update(masks, categories, gt, gt_segments, pred, gt_segments)
    result = swapped.result()
    assert (result["correct_pixels"], result["overlap_pixels"], result["pairs"]) == (18, 33, 3)


def test_pixels_without_an_owner_among_their_instances_are_not_scored():
    masks, categories, gt, gt_segments = _person_with_tie()
    gt = gt.copy()
    gt[5:7, 9:11] = 0  # 4 tie pixels are void in the panoptic GT
    gt[7, 9:11] = 3  # 2 go to the wall
    accumulator = OwnershipAccumulator()
    accumulator.update(masks, categories, gt, gt_segments, gt, gt_segments)
    result = accumulator.result()
    assert (result["overlap_pixels"], result["unowned_pixels"], result["correct_pixels"]) == (
        4, 6, 4)
    # A crowd owner is no owner either.
    crowd_segments = _segments([(1, PERSON), (2, TIE), (3, WALL)], crowd=(2,))
    crowd = OwnershipAccumulator()
    crowd.update(masks, categories, gt, crowd_segments, gt, crowd_segments)
    assert crowd.result()["overlap_pixels"] == 0 and math.isnan(crowd.result()["accuracy"])


def test_instance_segments_prefer_same_category_and_largest_overlap():
    person = _box(0, 0, 10, 10)
    panoptic = np.zeros((H, W), int)
    panoptic[0:10, 0:6] = 5  # a tie segment covering 60 px of the person's mask
    panoptic[0:10, 6:10] = 6  # person segment, 40 px
    panoptic[0:2, 0:2] = 7  # another person segment, 4 px
    segments = _segments([(5, TIE), (6, PERSON), (7, PERSON)])
    got = instance_segments(np.stack([person, _box(12, 12, 14, 14)]), [PERSON, PERSON],
                            panoptic, segments)
    np.testing.assert_array_equal(got, [6, 0])


def test_matching_leaves_void_out_of_the_union():
    gt = np.zeros((H, W), int)
    gt[0:2, 0:5] = 1  # 10 px
    pred = np.zeros((H, W), int)
    pred[0:2, 0:11] = 4  # 22 px: 10 on the segment, 12 on void -> IoU 10 / 10
    segments = _segments([(1, PERSON)])
    assert match_segments(gt, segments, pred, _segments([(4, PERSON)])) == {4: 1}
    gt[2, 0:12] = 2  # a wall segment of 12 px
    pred = np.where(gt > 0, 4, 0)  # 10 px on the person, 12 on the wall -> IoU 10 / 22
    both = _segments([(1, PERSON), (2, WALL)])
    assert match_segments(gt, both, pred, _segments([(4, PERSON)])) == {}
    assert match_segments(gt, _segments([(1, PERSON), (2, WALL)], crowd=(1,)), gt, both) == {
        2: 2}


def test_bad_inputs_are_reported():
    masks, categories, gt, gt_segments = _person_with_tie()
    accumulator = OwnershipAccumulator()
    with pytest.raises(ValueError, match="instance masks"):
        accumulator.update(masks[:, :8], categories, gt, gt_segments, gt, gt_segments)
    with pytest.raises(ValueError, match="segments_info"):
        accumulator.update(masks, categories, gt, gt_segments, gt + 10, gt_segments)
    with pytest.raises(ValueError, match="categories"):
        accumulator.update(masks, categories[:1], gt, gt_segments, gt, gt_segments)
    empty = OwnershipAccumulator()
    empty.update(np.zeros((0, H, W), bool), [], gt, gt_segments, gt, gt_segments)
    assert empty.result()["pairs"] == 0 and math.isnan(empty.result()["accuracy"])


def test_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys, oanet_tf.evaluation.ownership; "
            "sys.exit(1 if 'tensorflow' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
