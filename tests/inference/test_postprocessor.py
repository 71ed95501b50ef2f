"""The post-processor: detections -> panoptic maps at the original sizes and segment tables,
checked against maps and tables computed by hand; image_segments reads them as COCO entries."""

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.config import EvalConfig
from oanet_tf.inference.panoptic_merge import NO_CATEGORY
from oanet_tf.inference.postprocessor import (OUTSIDE_IMAGE, PanopticPostprocessor,
                                              empty_outputs, image_segments)
from tests.tiny_model import CATEGORIES  # things person 1, tie 2; stuff sky 10, grass 11

PADDED = (8, 8)
IMAGE_SIZE = (4, 6)  # valid region of the padded input
UPSCALED = (8, 12)  # image 0: every resized pixel becomes a 2 x 2 block
DOWNSCALED = (2, 3)  # image 1: original pixel (i, j) takes resized pixel (2i + 1, 2j + 1)
PERSON, TIE = 1, 2  # detector classes
GRASS_ID = 11
DETECTION_SCORES = (0.9, 0.8)  # person, tie
RANKING_SCORES = (0.3, 0.7)  # the SRM puts the tie on top
# 28 original pixels: 7 resized pixels in image 0 (a quarter of the area), 112 in image 1.
MIN_STUFF_AREA = 28
NUM_ENTRIES = 2 + 2  # detections + stuff classes


def _detections():
    """Two identical images: a person (rows 0-2, cols 0-2) and a tie (rows 1-2, cols 1-2) on
    it; stuff sky on rows 0-1, grass below."""
    masks = np.zeros((2, 2) + PADDED, np.float32)
    masks[:, 0, 0:3, 0:3] = 1.0
    masks[:, 1, 1:3, 1:3] = 1.0
    stuff = np.zeros((2,) + PADDED + (2,), np.float32)
    stuff[:, :2, :, 0] = 1.0
    stuff[:, 2:, :, 1] = 1.0
    return {"instance_masks": tf.constant(masks),
            "classes": tf.constant([[PERSON, TIE]] * 2, tf.int32),
            "scores": tf.constant([DETECTION_SCORES] * 2),
            "ranking_scores": tf.constant([RANKING_SCORES] * 2),
            "stuff_probs": tf.constant(stuff)}


@pytest.fixture(scope="module")
def outputs():
    config = EvalConfig(overlap_threshold=0.5, instance_score_threshold=0.5,
                        min_stuff_area=MIN_STUFF_AREA)
    postprocessor = PanopticPostprocessor(CATEGORIES, config, ("ranking", "detection"))
    result = postprocessor(_detections(), tf.constant([IMAGE_SIZE] * 2),
                           tf.constant([UPSCALED, DOWNSCALED]))
    return {order: {k: v.numpy() for k, v in out.items()} for order, out in result.items()}


def _check_table(out, index, expected):
    """expected: [(id, category id, is_thing, detection score, order score, area, [x, y, w, h])]."""
    count = len(expected)
    assert out["num_segments"][index] == count
    columns = ("segment_ids", "category_ids", "is_thing", "detection_scores", "ranking_scores",
               "areas", "boxes")
    for k, row in enumerate(expected):
        for column, value in zip(columns, row):
            np.testing.assert_allclose(out[column][index, k], value, err_msg=column)
    assert (out["segment_ids"][index, count:] == 0).all()
    assert (out["category_ids"][index, count:] == NO_CATEGORY).all()
    assert (out["areas"][index, count:] == 0).all() and (out["boxes"][index, count:] == 0).all()
    assert not out["is_thing"][index, count:].any()


def _upscaled(canvas):
    return np.kron(np.array(canvas), np.ones((2, 2), np.int64))


def test_ranking_order_at_the_original_sizes(outputs):
    out = outputs["ranking"]
    assert out["panoptic"].shape == (2,) + UPSCALED
    assert out["segment_ids"].shape == (2, NUM_ENTRIES)
    np.testing.assert_array_equal(out["height"], [UPSCALED[0], DOWNSCALED[0]])
    np.testing.assert_array_equal(out["width"], [UPSCALED[1], DOWNSCALED[1]])
    # Merge at the resized size: the tie (merge position 0, id 1) first, then the person (id
    # 2, 4 of its 9 pixels taken: kept); sky has 6 free pixels < 7 (void); grass (id 2 + 1 +
    # 1 = 4) 9 >= 7.
    np.testing.assert_array_equal(out["panoptic"][0], _upscaled([[2, 2, 2, 0, 0, 0],
                                                                 [2, 1, 1, 0, 0, 0],
                                                                 [2, 1, 1, 4, 4, 4],
                                                                 [4, 4, 4, 4, 4, 4]]))
    _check_table(out, 0, [(1, 2, True, 0.8, 0.7, 16, [2, 2, 4, 4]),
                          (2, 1, True, 0.9, 0.3, 20, [0, 0, 6, 6]),
                          (4, GRASS_ID, False, 0.0, 0.0, 36, [0, 4, 12, 4])])
    # Image 1: no stuff class reaches 112 pixels; of the person only even rows or columns
    # remain, which the downscale skips: it is dropped.
    image = out["panoptic"][1]
    np.testing.assert_array_equal(image[:2, :3], [[1, 0, 0], [0, 0, 0]])
    assert (image[2:] == OUTSIDE_IMAGE).all() and (image[:, 3:] == OUTSIDE_IMAGE).all()
    _check_table(out, 1, [(1, 2, True, 0.8, 0.7, 1, [0, 0, 1, 1])])


def test_detection_order(outputs):
    out = outputs["detection"]
    # The person first (id 1) claims its 9 pixels; the tie lies entirely on it: dropped.
    np.testing.assert_array_equal(out["panoptic"][0], _upscaled([[1, 1, 1, 0, 0, 0],
                                                                 [1, 1, 1, 0, 0, 0],
                                                                 [1, 1, 1, 4, 4, 4],
                                                                 [4, 4, 4, 4, 4, 4]]))
    # ranking_scores holds the order score: the detection score here.
    _check_table(out, 0, [(1, 1, True, 0.9, 0.9, 36, [0, 0, 6, 6]),
                          (4, GRASS_ID, False, 0.0, 0.0, 36, [0, 4, 12, 4])])
    np.testing.assert_array_equal(out["panoptic"][1, :2, :3], [[1, 0, 0], [0, 0, 0]])
    _check_table(out, 1, [(1, 1, True, 0.9, 0.9, 1, [0, 0, 1, 1])])


def test_boxes_give_the_same_outputs(outputs):
    """With the detections' boxes the merge works in the windows around them: same outputs."""
    config = EvalConfig(overlap_threshold=0.5, instance_score_threshold=0.5,
                        min_stuff_area=MIN_STUFF_AREA)
    postprocessor = PanopticPostprocessor(CATEGORIES, config, ("ranking", "detection"))
    boxes = tf.constant([[[0, 0, 3, 3], [1, 1, 3, 3]]] * 2, tf.float32)  # (y1, x1, y2, x2)
    result = postprocessor({**_detections(), "boxes": boxes}, tf.constant([IMAGE_SIZE] * 2),
                           tf.constant([UPSCALED, DOWNSCALED]))
    for order, out in result.items():
        for name, value in out.items():
            np.testing.assert_array_equal(value, outputs[order][name], err_msg=name)


def test_image_segments_reads_the_table(outputs):
    panoptic, segments = image_segments(outputs["ranking"], 1)
    assert panoptic.dtype == np.int64
    np.testing.assert_array_equal(panoptic, [[1, 0, 0], [0, 0, 0]])
    assert segments == [{"id": 1, "category_id": 2, "area": 1, "bbox": [0, 0, 1, 1],
                         "iscrowd": 0, "score": pytest.approx(0.8),
                         "ranking_score": pytest.approx(0.7)}]
    panoptic, segments = image_segments(outputs["ranking"], 0)
    assert panoptic.shape == UPSCALED
    assert [(s["id"], s["category_id"], s["area"], s["bbox"]) for s in segments] == [
        (1, 2, 16, [2, 2, 4, 4]), (2, 1, 20, [0, 0, 6, 6]), (4, GRASS_ID, 36, [0, 4, 12, 4])]


def test_empty_outputs_match_the_outputs(outputs):
    """The empty batch's outputs (the serving signatures' other branch) have the same keys,
    dtypes and table width."""
    empty = {k: v.numpy() for k, v in empty_outputs(NUM_ENTRIES).items()}
    full = outputs["ranking"]
    assert {k: v.dtype for k, v in empty.items()} == {k: v.dtype for k, v in full.items()}
    assert all(v.shape[1:] == full[k].shape[1:] for k, v in empty.items() if v.ndim == 2)
    assert empty["panoptic"].shape == (0, 0, 0)
    assert empty["boxes"].shape == (0, NUM_ENTRIES, 4)
    assert empty["segment_ids"].shape == (0, NUM_ENTRIES)
