"""Segment ids <-> RGB and the category bookkeeping."""

import json
import os

import numpy as np
import pytest

from oanet_tf.data.panoptic_format import (IGNORE_LABEL, CategoryMap, id_to_rgb, measured_segment,
                                           rgb_to_id)

CATEGORIES = [
    {"id": 7, "name": "grass", "isthing": 0},
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 32, "name": "tie", "isthing": 1},
    {"id": 3, "name": "sky", "isthing": 0},
]


def test_id_rgb_hand_case():
    ids = np.array([[0, 1, 256], [257, 65536, 16777215]])
    rgb = id_to_rgb(ids)
    assert rgb[0, 2].tolist() == [0, 1, 0]
    assert rgb[1, 0].tolist() == [1, 1, 0]
    assert rgb[1, 1].tolist() == [0, 0, 1]
    assert rgb[1, 2].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(rgb_to_id(rgb), ids)


def test_id_rgb_round_trip_random():
    ids = np.random.default_rng(0).integers(0, 256 ** 3, size=(17, 23))
    np.testing.assert_array_equal(rgb_to_id(id_to_rgb(ids)), ids)


def test_id_out_of_range():
    with pytest.raises(ValueError):
        id_to_rgb(np.array([[256 ** 3]]))


def test_category_map_contiguous_layout():
    cats = CategoryMap.from_categories(CATEGORIES)
    assert cats.thing_ids == [1, 32] and cats.stuff_ids == [3, 7]
    assert [cats.semantic_index(i) for i in (1, 32, 3, 7)] == [0, 1, 2, 3]
    assert cats.thing_index(32) == 1
    assert cats.is_thing(1) and not cats.is_thing(7)
    with pytest.raises(KeyError, match="99"):
        cats.semantic_index(99)
    with pytest.raises(KeyError, match="not a thing"):
        cats.thing_index(7)
    table = cats.semantic_lookup()
    assert table[32] == 1 and table[7] == 3 and table[2] == IGNORE_LABEL


def test_category_map_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        CategoryMap.from_categories(CATEGORIES + [{"id": 1, "name": "x", "isthing": 1}])


def test_coco_categories():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "coco",
                        "panoptic_coco_categories.json")
    if not os.path.isfile(path):
        pytest.skip("../shared/coco/panoptic_coco_categories.json is absent (fresh clone)")
    cats = CategoryMap.from_categories(json.load(open(path)))
    assert (cats.num_things, cats.num_stuff) == (80, 53)


def test_measured_segment_by_hand():
    ids = np.zeros((6, 8), np.int32)
    ids[1:5, 2:4] = 3  # 4 rows x 2 columns
    ids[:, 6:] = 9
    assert measured_segment(ids, 3, 1) == {"id": 3, "category_id": 1, "area": 8,
                                           "bbox": [2, 1, 2, 4], "iscrowd": 0}
    assert measured_segment(ids, 9, 187, iscrowd=1) == {"id": 9, "category_id": 187, "area": 12,
                                                        "bbox": [6, 0, 2, 6], "iscrowd": 1}
