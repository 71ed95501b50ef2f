"""Predictions written as COCO panoptic PNG + JSON score the same as in memory."""

import numpy as np

from oanet_tf.data.panoptic_format import CategoryMap, measured_segment
from oanet_tf.evaluation.pq import NUMPY, PQAccumulator, evaluate_files
from oanet_tf.inference.writer import PanopticWriter

CATEGORIES = CategoryMap.from_categories([
    {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 32, "name": "tie", "isthing": 1, "color": [0, 0, 142]},
    {"id": 187, "name": "sky", "isthing": 0, "color": [70, 130, 180]}])


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
        ids_and_categories = [(100, 1), (200, 32), (300, 187)]
        gt_info = [measured_segment(gt, i, c) for i, c in ids_and_categories]
        pred_info = [measured_segment(pred, i, c) for i, c in ids_and_categories]
        gt_writer.add(image_id, f"{image_id:06d}.jpg", gt, gt_info)
        pred_writer.add(image_id, f"{image_id:06d}.jpg", pred, pred_info)
        memory.update(gt, gt_info, pred, pred_info)
    gt_writer.close()
    pred_writer.close()
    from_files = evaluate_files(str(tmp_path / "gt.json"), str(gt_dir),
                                str(tmp_path / "pred.json"), str(pred_dir), workers=1,
                                progress=False, engine=NUMPY)  # the same arithmetic: exact
    expected = memory.result()
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq", "n"):
            assert from_files[group][key] == expected[group][key]
    assert 0.5 < expected["All"]["pq"] < 1.0
