"""COCO AP of the instance branch against pycocotools' COCOeval run directly on hand-written
annotations: 2 images, 3 ground-truth instances (one crowd region besides), 4 detections."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from oanet_tf.evaluation import coco_ap, hotcoco_engine

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 5, "name": "tie"}]
SHAPE = (40, 60)
ENGINES = [coco_ap.PYCOCOTOOLS] + ([coco_ap.HOTCOCO] if hotcoco_engine.available() else [])


def _box_mask(x, y, w, h, shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y:y + h, x:x + w] = True
    return mask


# Ground truth per image: (mask box x, y, w, h, category, crowd).
TRUTH = {7: [((2, 3, 20, 30), 1, 0), ((30, 5, 10, 10), 5, 0), ((45, 20, 12, 15), 1, 1)],
         9: [((10, 10, 30, 20), 1, 0)]}
# Detections per image: (box x, y, w, h, score, category, mask box). The boxes are not the
# masks' boxes, so bbox and segm AP differ.
DETECTIONS = {7: [((2, 3, 21, 29), 0.9, 1, (2, 3, 20, 28)),
                  ((31, 6, 10, 10), 0.6, 5, (33, 8, 9, 9)),
                  ((46, 21, 10, 10), 0.8, 1, (46, 21, 10, 10))],  # on the crowd: ignored
              9: [((0, 0, 25, 25), 0.7, 1, (12, 10, 28, 20))]}


def _reference(iou_type: str) -> np.ndarray:
    """COCOeval's stats on the hand-written COCO dicts (boxes and areas written by hand)."""
    annotations = []
    for image_id, rows in TRUTH.items():
        for (x, y, w, h), category, crowd in rows:
            rle = mask_utils.encode(np.asfortranarray(_box_mask(x, y, w, h).astype(np.uint8)))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category, "iscrowd": crowd,
                                "bbox": [x, y, w, h], "area": w * h, "segmentation": rle})
    results = []
    for image_id, rows in DETECTIONS.items():
        for box, score, category, mask_box in rows:
            result = {"image_id": image_id, "category_id": category, "score": score}
            if iou_type == "bbox":
                result["bbox"] = list(box)
            else:
                result["segmentation"] = mask_utils.encode(np.asfortranarray(
                    _box_mask(*mask_box).astype(np.uint8)))
            results.append(result)
    truth = COCO()
    truth.dataset = {"images": [{"id": i, "height": SHAPE[0], "width": SHAPE[1]} for i in TRUTH],
                     "annotations": annotations, "categories": CATEGORIES}
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(results), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def _ours(engine: str, detections=DETECTIONS) -> dict:
    ap = coco_ap.CocoAP(CATEGORIES, engine)
    for image_id, rows in TRUTH.items():
        dets = detections[image_id]
        ap.add_image(image_id, SHAPE, [_box_mask(*r[0]) for r in rows], [r[1] for r in rows],
                     [r[2] for r in rows], [d[0] for d in dets], [d[1] for d in dets],
                     [d[2] for d in dets], [_box_mask(*d[3]) for d in dets])
    return ap.result()


@pytest.mark.parametrize("engine", ENGINES)
def test_hand_case_equals_pycocotools(engine):
    ours = _ours(engine)
    assert ours["engine"] == engine
    for iou_type in coco_ap.IOU_TYPES:
        reference = _reference(iou_type)
        assert [ours[iou_type][name] for name in coco_ap.STAT_NAMES] == \
            [float(v) for v in reference[:6]], iou_type
    # Not a trivial case: neither perfect nor zero, and boxes and masks disagree.
    assert 0.0 < ours["segm"]["AP"] < 1.0 and 0.0 < ours["bbox"]["AP"] < 1.0
    assert ours["bbox"]["AP"] != ours["segm"]["AP"]


@pytest.mark.parametrize("engine", ENGINES)
def test_perfect_detections_give_ap_one(engine):
    perfect = {image_id: [(box, 0.9, category, box) for box, category, crowd in rows
                          if not crowd] for image_id, rows in TRUTH.items()}
    ours = _ours(engine, perfect)
    for iou_type in coco_ap.IOU_TYPES:
        assert ours[iou_type]["AP"] == ours[iou_type]["AP50"] == ours[iou_type]["AP75"] == 1.0


def test_no_detections_give_zero_and_helpers():
    ours = _ours(coco_ap.PYCOCOTOOLS, {7: [], 9: []})
    assert ours["bbox"]["AP"] == ours["segm"]["AP50"] == 0.0
    empty = coco_ap.CocoAP(CATEGORIES, coco_ap.PYCOCOTOOLS)
    empty.add_image(1, SHAPE, [], [], [], [], [], [], [])  # an image of stuff only
    assert empty.result()["segm"]["AP"] == coco_ap.NO_GROUND_TRUTH
    assert coco_ap.box_of_mask(_box_mask(3, 4, 5, 6)) == [3.0, 4.0, 5.0, 6.0]
    with pytest.raises(ValueError, match="engine"):
        coco_ap.CocoAP(CATEGORIES, "numpy")
