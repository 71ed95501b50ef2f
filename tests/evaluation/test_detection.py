"""Detection recall and mask IoU, on hand-computed cases."""

import numpy as np
import pytest

from oanet_tf.evaluation.detection import DetectionQuality, box_iou


def _mask(box, size=10):
    m = np.zeros((size, size), bool)
    m[box[0]:box[2], box[1]:box[3]] = True
    return m


def test_box_iou_hand_case():
    iou = box_iou(np.array([[0, 0, 2, 2]], float), np.array([[1, 1, 3, 3], [5, 5, 6, 6]], float))
    np.testing.assert_allclose(iou, [[1 / 7, 0.0]])


def test_matching_rules():
    gt = [(0, 0, 4, 4), (5, 5, 9, 9)]
    gt_masks = np.stack([_mask(b) for b in gt])
    dets = [(0, 0, 4, 5),  # IoU 0.8 with GT 0, same class: match, mask IoU 16/20
            (5, 5, 9, 9),  # perfect box but wrong class: no match
            (0, 0, 4, 4)]  # duplicate of GT 0 with a lower score: GT already taken
    quality = DetectionQuality()
    quality.update(np.array(gt, float), np.array([1, 2]), gt_masks, np.array(dets, float),
                   np.array([1, 1, 1]), np.array([0.9, 0.95, 0.6]),
                   np.stack([_mask(b) for b in dets]))
    result = quality.result()
    assert result["recall"] == pytest.approx(0.5)
    assert result["mask_iou"] == pytest.approx(16 / 20)


def test_low_scores_and_padding_are_ignored():
    quality = DetectionQuality()
    box = np.array([[0, 0, 4, 4]], float)
    quality.update(np.concatenate([box, np.zeros((1, 4))]), np.array([1, 0]),
                   np.stack([_mask((0, 0, 4, 4)), _mask((0, 0, 0, 0))]), box, np.array([1]),
                   np.array([0.3]), _mask((0, 0, 4, 4))[None])
    assert quality.result() == {"recall": 0.0, "mask_iou": 0.0, "matched": 0,
                                "ground_truth": 1}
