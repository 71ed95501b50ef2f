"""Instance-branch quality before the merge: detection recall and mask IoU of the matches.

Detections are matched greedily in descending score to unmatched ground-truth instances of
the same class with box IoU >= `iou_threshold` (the COCO AP50 matching rule).
"""

from __future__ import annotations

import numpy as np

BOX_IOU_THRESHOLD = 0.5
SCORE_THRESHOLD = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, 4], [k, 4] (y1, x1, y2, x2) -> [n, k]."""
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class DetectionQuality:
    """Accumulates matched ground-truth instances and the mask IoU of each match."""

    def __init__(self, score_threshold: float = SCORE_THRESHOLD,
                 iou_threshold: float = BOX_IOU_THRESHOLD):
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.num_gt = 0
        self.mask_ious = []

    def update(self, gt_boxes, gt_classes, gt_masks, boxes, classes, scores, masks):
        """One image: GT [n, 4], [n], [n, H, W] bool; detections [k, 4], [k], [k],
        [k, H, W] bool (padding rows have class 0 and are ignored)."""
        keep_gt = np.asarray(gt_classes) > 0
        gt_boxes, gt_classes, gt_masks = (np.asarray(x)[keep_gt]
                                          for x in (gt_boxes, gt_classes, gt_masks))
        keep = (np.asarray(classes) > 0) & (np.asarray(scores) >= self.score_threshold)
        boxes, classes, scores, masks = (np.asarray(x)[keep]
                                         for x in (boxes, classes, scores, masks))
        self.num_gt += len(gt_classes)
        if not len(gt_classes) or not len(classes):
            return
        overlaps = box_iou(gt_boxes, boxes)
        overlaps[gt_classes[:, None] != classes[None, :]] = 0.0
        taken = np.zeros(len(gt_classes), bool)
        for d in np.argsort(-scores, kind="stable"):
            candidates = np.where(taken, -1.0, overlaps[:, d])
            g = int(np.argmax(candidates))
            if candidates[g] < self.iou_threshold:
                continue
            taken[g] = True
            inter = np.logical_and(gt_masks[g], masks[d]).sum()
            union = np.logical_or(gt_masks[g], masks[d]).sum()
            self.mask_ious.append(inter / union if union else 0.0)

    def result(self) -> dict:
        matched = len(self.mask_ious)
        return {"recall": matched / self.num_gt if self.num_gt else 0.0,
                "mask_iou": float(np.mean(self.mask_ious)) if matched else 0.0,
                "matched": matched, "ground_truth": self.num_gt}
