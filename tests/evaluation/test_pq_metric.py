"""oanet_tf.evaluation.pq_metric: the in-graph Keras PQ metric, checked against the numpy
accumulator of oanet_tf.evaluation.pq (itself checked against panopticapi's pq_compute)."""

from __future__ import annotations

import numpy as np
import pytest

from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.evaluation.pq import PQAccumulator
from tests.evaluation.panoptic_cases import (CATEGORIES, HAND_CATEGORIES, hand_case,
                                             random_gt_image, random_prediction)


METRIC_TOLERANCE = 1e-6


def metric_batch(rng, num_images, height, width, num_gt_slots, num_pred_slots,
                 categories=CATEGORIES):
    """Random images as padded metric inputs, plus the same images for the accumulator."""
    cmap = CategoryMap.from_categories(categories)
    arrays = {k: [] for k in ("gt_ids", "gt_segment_ids", "gt_segment_classes",
                              "gt_segment_iscrowd", "pred_ids", "pred_segment_ids",
                              "pred_segment_classes")}
    images = []
    for _ in range(num_images):
        gt_ids, gt_info = random_gt_image(rng, height, width)
        pred_ids, pred_info = random_prediction(rng, gt_ids, gt_info)
        for seg in gt_info:
            del seg["area"]  # the metric measures GT areas on the id map
        images.append((gt_ids, gt_info, pred_ids, pred_info))
        for prefix, ids, info, slots in (("gt", gt_ids, gt_info, num_gt_slots),
                                         ("pred", pred_ids, pred_info, num_pred_slots)):
            # GT keeps its order (the last crowd segment of a class counts); predictions not.
            order = np.arange(len(info)) if prefix == "gt" else rng.permutation(len(info))
            assert len(info) <= slots
            pad = slots - len(info)
            arrays[f"{prefix}_ids"].append(ids.astype(np.int32))
            arrays[f"{prefix}_segment_ids"].append(
                [info[i]["id"] for i in order] + rng.integers(1, 99, pad).tolist())
            arrays[f"{prefix}_segment_classes"].append(
                [cmap.semantic_index(info[i]["category_id"]) for i in order] + [-1] * pad)
            if prefix == "gt":
                arrays["gt_segment_iscrowd"].append(
                    [bool(info[i]["iscrowd"]) for i in order] + [False] * pad)
    batch = {k: np.asarray(v, np.bool_ if k.endswith("iscrowd") else np.int32)
             for k, v in arrays.items()}
    return batch, images, cmap


def _metric(cmap, **kwargs):
    from oanet_tf.evaluation.pq_metric import PanopticQualityMetric

    return PanopticQualityMetric(cmap.num_semantic, list(range(cmap.num_things)), **kwargs)


def _assert_metric_matches(metric, accumulator, cmap):
    expected = accumulator.result()
    result = {k: float(v) for k, v in metric.result().items()}
    for name, suffix in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
        for key in ("pq", "sq", "rq"):
            assert result[key + suffix] == pytest.approx(expected[name][key],
                                                         abs=METRIC_TOLERANCE), key + suffix
    order = [accumulator.category_ids.index(cid) for cid in cmap.semantic_ids]
    for variable, row in zip((metric.iou_sum, metric.tp, metric.fp, metric.fn), accumulator.stats):
        np.testing.assert_allclose(np.asarray(variable), row[order], atol=METRIC_TOLERANCE)


def test_metric_matches_accumulator_on_random_batches():
    rng = np.random.default_rng(21)
    metric = None
    accumulator = PQAccumulator(CATEGORIES)
    for _ in range(3):
        batch, images, cmap = metric_batch(rng, 4, 20, 28, 12, 24)
        metric = metric or _metric(cmap)
        metric.update_state(**batch)
        for image in images:
            accumulator.update(*image)
    assert accumulator.stats[1].sum() > 0 and accumulator.stats[2].sum() > 0
    _assert_metric_matches(metric, accumulator, cmap)
    metric.reset_state()
    assert all(float(v) == 0.0 for v in metric.result().values())


def test_metric_hand_case_and_crowd_order():
    """The hand-computed image, then a second crowd segment of the person class listed after
    B: pq_compute consults only the last one, so prediction b becomes a false positive."""
    gt, gt_segments, pred, pred_segments = hand_case()
    cmap = CategoryMap.from_categories(HAND_CATEGORIES)
    gt_two_crowds = gt.copy()
    gt_two_crowds[0, 10:12] = 15  # a second person crowd segment on former void
    two_crowds = gt_segments + [{"id": 15, "category_id": 1, "iscrowd": 1}]
    for gt_map, segments, b_is_fp in ((gt, gt_segments, False),
                                      (gt_two_crowds, two_crowds, True)):
        accumulator = PQAccumulator(HAND_CATEGORIES)
        accumulator.update(gt_map, segments, pred, pred_segments)
        assert accumulator.result()["per_class"][1]["fp"] == int(b_is_fp)
        metric = _metric(cmap, dtype="float64")
        metric.update_state(
            gt_map[None].astype(np.int32), np.array([[s["id"] for s in segments]], np.int32),
            np.array([[cmap.semantic_index(s["category_id"]) for s in segments]], np.int32),
            np.array([[s["iscrowd"] == 1 for s in segments]]),
            pred[None].astype(np.int32), np.array([[s["id"] for s in pred_segments]], np.int32),
            np.array([[cmap.semantic_index(s["category_id"]) for s in pred_segments]],
                     np.int32))
        _assert_metric_matches(metric, accumulator, cmap)


def test_metric_ignores_padding_and_unlisted_ids():
    """Padding slots, segments with no pixel and pixels of unlisted ids (treated as void)."""
    rng = np.random.default_rng(3)
    batch, _, cmap = metric_batch(rng, 2, 20, 28, 12, 24)
    reference = _metric(cmap)
    reference.update_state(**batch)
    noisy = dict(batch)
    noisy["pred_ids"] = np.where(batch["pred_ids"] == 0, 4242, batch["pred_ids"])
    noisy["gt_segment_classes"] = batch["gt_segment_classes"].copy()
    noisy["gt_segment_classes"][:, -1] = 0  # a listed segment whose id has no pixel
    unlisted = _metric(cmap)
    unlisted.update_state(**noisy)
    for key, value in reference.result().items():
        assert float(unlisted.result()[key]) == pytest.approx(float(value), abs=1e-7), key


def test_metric_config_round_trip_and_validation():
    from oanet_tf.evaluation.pq_metric import PanopticQualityMetric

    metric = PanopticQualityMetric(6, [2, 0, 1], name="pq_val", dtype="float64")
    config = metric.get_config()
    assert config == {"name": "pq_val", "dtype": "float64", "num_classes": 6,
                      "thing_classes": [0, 1, 2]}
    clone = PanopticQualityMetric.from_config(config)
    assert clone.get_config() == config
    rng = np.random.default_rng(9)
    batch, _, _ = metric_batch(rng, 2, 16, 20, 12, 24)
    metric.update_state(**batch)
    clone.update_state(**batch)
    assert {k: float(v) for k, v in clone.result().items()} == \
        {k: float(v) for k, v in metric.result().items()}
    with pytest.raises(ValueError, match="thing_classes"):
        PanopticQualityMetric(3, [3])
    with pytest.raises(ValueError, match="num_classes"):
        PanopticQualityMetric(0, [])


def test_metric_inside_model_evaluate_with_a_strategy():
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(17)
    batches = [metric_batch(rng, 2, 16, 24, 12, 24) for _ in range(3)]
    cmap = batches[0][2]
    accumulator = PQAccumulator(CATEGORIES)
    for _, images, _ in batches:
        for image in images:
            accumulator.update(*image)
    dataset = tf.data.Dataset.from_tensor_slices(
        {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}).batch(2)

    class Scorer(keras.Model):
        def __init__(self):
            super().__init__()
            self.pq = _metric(cmap)

        def call(self, inputs):
            return inputs

        @property
        def metrics(self):
            return [self.pq]

        def test_step(self, data):
            self.pq.update_state(**data)
            return self.get_metrics_result()

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = Scorer()
        model.compile()
    logs = model.evaluate(dataset, return_dict=True, verbose=0)
    expected = accumulator.result()
    for name, suffix in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
        for key in ("pq", "sq", "rq"):
            assert logs[key + suffix] == pytest.approx(expected[name][key], abs=METRIC_TOLERANCE)


def test_metric_statistics_compile_with_xla():
    import tensorflow as tf

    from oanet_tf.evaluation.pq_metric import panoptic_statistics

    batch, _, cmap = metric_batch(np.random.default_rng(2), 2, 16, 20, 12, 24)
    eager = panoptic_statistics(**batch, num_classes=cmap.num_semantic)
    compiled = tf.function(lambda inputs: panoptic_statistics(
        **inputs, num_classes=cmap.num_semantic), jit_compile=True)(batch)
    for expected, value in zip(eager, compiled):
        np.testing.assert_allclose(value.numpy(), expected.numpy(), atol=1e-6)
