"""Overlays: category colours blended over the image, outlines, labels; panels side by side."""

import numpy as np

from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.inference.visualize import (MIN_LABEL_AREA, OUTLINE_COLOR, overlay,
                                          side_by_side)

PERSON_COLOR = (200, 0, 100)
DEFAULT_COLOR = 128  # grey of a category without a colour
CATEGORIES = CategoryMap.from_categories([
    {"id": 1, "name": "person", "isthing": 1, "color": list(PERSON_COLOR)},
    {"id": 10, "name": "sky", "isthing": 0}])
GREY = 100  # the image's pixels


def test_overlay_blends_and_outlines_by_hand():
    image = np.full((4, 4, 3), GREY, np.uint8)
    panoptic = np.array([[5, 5, 0, 0],
                         [5, 5, 0, 0],
                         [7, 7, 7, 7],
                         [7, 7, 7, 7]])
    segments = [{"id": 5, "category_id": 1, "area": 4, "score": 0.9},
                {"id": 7, "category_id": 10, "area": 8}]  # both too small for a label
    got = overlay(image, panoptic, segments, CATEGORIES)
    person = [(GREY + c) // 2 for c in PERSON_COLOR]  # half image, half colour
    sky = [(GREY + DEFAULT_COLOR) // 2] * 3
    expected = np.array([
        [person, person, [GREY] * 3, [GREY] * 3],
        [person, person, [GREY] * 3, [GREY] * 3],
        [OUTLINE_COLOR] * 4,  # sky pixels below a different id; void is never outlined
        [sky] * 4], np.uint8)
    np.testing.assert_array_equal(got, expected)


def test_labels_only_on_segments_large_enough():
    side = 32
    image = np.zeros((side, side, 3), np.uint8)
    panoptic = np.full((side, side), 5)
    large = [{"id": 5, "category_id": 1, "area": MIN_LABEL_AREA, "score": 0.5}]
    small = [{"id": 5, "category_id": 1, "area": MIN_LABEL_AREA - 1, "score": 0.5}]
    labelled = overlay(image, panoptic, large, CATEGORIES)
    plain = overlay(image, panoptic, small, CATEGORIES)
    np.testing.assert_array_equal(plain, np.tile(np.array(PERSON_COLOR) // 2, (side, side, 1)))
    changed = np.argwhere((labelled != plain).any(axis=-1))
    centre = side // 2  # the median pixel of the segment: the text starts there
    assert len(changed) and (changed.min(axis=0) >= centre).all()
    # Antialiased text: towards the label colour (white) and its shadow (black).
    brightness = labelled[changed[:, 0], changed[:, 1]].astype(int).sum(axis=-1)
    assert brightness.max() > plain.astype(int).sum(axis=-1).max()
    assert brightness.min() < plain.astype(int).sum(axis=-1).min()


def test_side_by_side_concatenates_columns():
    left = np.arange(2 * 1 * 3, dtype=np.uint8).reshape(2, 1, 3)
    right = np.arange(100, 100 + 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    got = side_by_side(left, right)
    expected = np.array([[[0, 1, 2], [100, 101, 102], [103, 104, 105]],
                         [[3, 4, 5], [106, 107, 108], [109, 110, 111]]], np.uint8)
    np.testing.assert_array_equal(got, expected)
