"""Predictions written as COCO panoptic PNG + JSON score the same as in memory."""

import numpy as np

from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.evaluation.pq import PQAccumulator, evaluate_files
from oanet_tf.inference.writer import PanopticWriter, segments_info

CATEGORIES = CategoryMap.from_categories([
    {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 32, "name": "tie", "isthing": 1, "color": [0, 0, 142]},
    {"id": 187, "name": "sky", "isthing": 0, "color": [70, 130, 180]}])


def test_segments_info_measures_the_map():
    panoptic = np.zeros((6, 8), np.int32)
    panoptic[1:5, 2:4] = 3  # a person, 4 x 2
    panoptic[:, 6:] = 9  # sky
    info = segments_info(panoptic, [3, 7, 9, 0], [0, 1, 2, -1], CATEGORIES,
                         extra={"score": [0.9, 0.8, 0.0, 0.0]})
    assert info == [
        {"id": 3, "category_id": 1, "area": 8, "bbox": [2, 1, 2, 4], "iscrowd": 0,
         "score": 0.9},
        {"id": 9, "category_id": 187, "area": 12, "bbox": [6, 0, 2, 6], "iscrowd": 0,
         "score": 0.0}]  # segment 7 has no pixel, padding (id 0 / category -1) is skipped


def test_round_trip_through_the_evaluator(tmp_path):
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_writer = PanopticWriter(str(tmp_path / "gt.json"), str(gt_dir), CATEGORIES)
    pred_writer = PanopticWriter(str(tmp_path / "pred.json"), str(pred_dir), CATEGORIES)
    memory = PQAccumulator(CATEGORIES)
    for image_id in range(1, 4):
        gt = np.full((20, 30), 300, np.int32)
        gt[2:15, 3:12] = 100
        gt[5:9, 6:9] = 200
        pred = gt.copy()
        pred[rng.integers(0, 20, 40), rng.integers(0, 30, 40)] = 0
        pred[15:, 3:12] = 100
        ids, cats = [100, 200, 300], [0, 1, 2]
        gt_info = segments_info(gt, ids, cats, CATEGORIES)
        pred_info = segments_info(pred, ids, cats, CATEGORIES)
        gt_writer.add(image_id, f"{image_id:06d}.jpg", gt, gt_info)
        pred_writer.add(image_id, f"{image_id:06d}.jpg", pred, pred_info)
        memory.update(gt, gt_info, pred, pred_info)
    gt_writer.close()
    pred_writer.close()
    from_files = evaluate_files(str(tmp_path / "gt.json"), str(gt_dir),
                                str(tmp_path / "pred.json"), str(pred_dir), workers=1,
                                progress=False)
    expected = memory.result()
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq", "n"):
            assert from_files[group][key] == expected[group][key]
    assert 0.5 < expected["All"]["pq"] < 1.0
