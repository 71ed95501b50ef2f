"""COCO box and mask AP of the instance branch (before the panoptic merge), by COCOeval.

Images are added one at a time (ground-truth instance masks, crowd marked, and the
detections: boxes, scores, dataset category ids, masks, all at the original size); `result`
builds the COCO ground truth and results the way COCO's instance evaluation reads them and
runs COCOeval for "bbox" and "segm". Ground-truth boxes and areas are measured on the masks;
masks go to COCO as RLE (pycocotools.mask.encode). As Detectron2 does, the "segm" results
carry no box (COCOeval then takes a detection's area from its mask, not its box).

The engine is chosen as the PQ engine is (`pq.evaluate_files`): hotcoco's COCOeval where
hotcoco is installed, else pycocotools'; both give pycocotools' numbers
(tests/evaluation/test_coco_ap.py).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils

from oanet_tf.evaluation import hotcoco_engine

IOU_TYPES = ("bbox", "segm")
# COCOeval's stats[0:6] under the names Detectron2 reports.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
NO_GROUND_TRUTH = -1.0  # COCOeval's value where nothing could be measured
AUTO, HOTCOCO, PYCOCOTOOLS = "auto", "hotcoco", "pycocotools"


def box_of_mask(mask: np.ndarray) -> list:
    """bool [h, w] -> its tight box [x, y, w, h] in pixels (zeros for an empty mask)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1)]


def encode_mask(mask: np.ndarray) -> dict:
    """bool [h, w] -> COCO RLE with text counts (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


class CocoAP:
    """Ground truth and detections per image -> COCO AP for boxes and masks."""

    def __init__(self, thing_categories: list, engine: str = AUTO):
        """`thing_categories`: COCO category dicts (id, name) of the thing classes; `engine`:
        AUTO (hotcoco where installed), HOTCOCO or PYCOCOTOOLS."""
        if engine not in (AUTO, HOTCOCO, PYCOCOTOOLS):
            raise ValueError(f"COCO AP engine must be auto, hotcoco or pycocotools, got {engine!r}")
        if engine == AUTO:
            engine = HOTCOCO if hotcoco_engine.available() else PYCOCOTOOLS
        self.categories = [{"id": int(c["id"]), "name": c["name"]} for c in thing_categories]
        self.engine = engine
        self.images, self.ground_truth, self.detections = [], [], []

    def add_image(self, image_id: int, size, gt_masks, gt_category_ids, gt_iscrowd, boxes,
                  scores, category_ids, masks):
        """One image of `size` (h, w): ground truth bool [n, h, w], [n], [n] (crowd 1);
        detections [k, 4] (x, y, w, h), [k], [k] dataset ids, bool [k, h, w]."""
        height, width = size
        self.images.append({"id": int(image_id), "height": int(height), "width": int(width)})
        for mask, category, crowd in zip(np.asarray(gt_masks, bool), gt_category_ids,
                                         gt_iscrowd):
            self.ground_truth.append({
                "id": len(self.ground_truth) + 1, "image_id": int(image_id),
                "category_id": int(category), "iscrowd": int(crowd), "bbox": box_of_mask(mask),
                "area": float(mask.sum()), "segmentation": encode_mask(mask)})
        for box, score, category, mask in zip(boxes, scores, category_ids, masks):
            self.detections.append({
                "image_id": int(image_id), "category_id": int(category),
                "score": float(score), "bbox": [float(v) for v in box],
                "segmentation": encode_mask(np.asarray(mask, bool))})

    def result(self) -> dict:
        """-> {"bbox": {AP, AP50, AP75, APs, APm, APl}, "segm": {...}, "engine": name}, in
        [0, 1] (NO_GROUND_TRUTH where COCOeval has nothing to measure); with no detection
        at all every AP is 0 (COCO cannot load an empty result list)."""
        found = {"engine": self.engine}
        for iou_type in IOU_TYPES:
            if not self.detections:
                value = 0.0 if self.ground_truth else NO_GROUND_TRUTH
                found[iou_type] = dict.fromkeys(STAT_NAMES, value)
                continue
            stats = self._evaluate(iou_type)
            found[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, stats)}
        return found

    def _evaluate(self, iou_type: str) -> np.ndarray:
        """COCOeval's 12 summary numbers for one IoU type."""
        results = [dict(d) for d in self.detections]
        for result in results:
            result.pop("segmentation" if iou_type == "bbox" else "bbox")
        dataset = {"images": self.images, "annotations": self.ground_truth,
                   "categories": self.categories}
        with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress and tables
            if self.engine == HOTCOCO:
                import hotcoco

                truth = hotcoco.COCO(dataset)
                evaluator = hotcoco.COCOeval(truth, truth.loadRes(results), iou_type)
            else:
                from pycocotools.coco import COCO
                from pycocotools.cocoeval import COCOeval

                truth = COCO()
                truth.dataset = dataset
                truth.createIndex()
                evaluator = COCOeval(truth, truth.loadRes(results), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return np.asarray(evaluator.stats)
