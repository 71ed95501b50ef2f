"""Overlays: category colours blended over the image, outlines, labels; panels side by side."""

import numpy as np

from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.inference.visualize import (LABEL_BOX_COLOR, LABEL_COLOR, LABEL_FONT_FRACTION,
                                          MIN_FONT_SIZE, MIN_LABEL_AREA, OUTLINE_COLOR,
                                          OVERLAY_MIN_SIDE, label_font, overlay, place_labels,
                                          side_by_side, write_overlays)

PERSON_COLOR = (200, 0, 100)
DEFAULT_COLOR = 128  # grey of a category without a colour
CATEGORIES = CategoryMap.from_categories([
    {"id": 1, "name": "person", "isthing": 1, "color": list(PERSON_COLOR)},
    {"id": 10, "name": "sky", "isthing": 0}])
GREY = 100  # the image's pixels
TEXT_TOLERANCE = 64  # antialiased small text reaches within this of white


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
    side = 64
    image = np.zeros((side, side, 3), np.uint8)
    panoptic = np.full((side, side), 5)
    large = [{"id": 5, "category_id": 1, "area": MIN_LABEL_AREA, "score": 0.5}]
    small = [{"id": 5, "category_id": 1, "area": MIN_LABEL_AREA - 1, "score": 0.5}]
    labelled = overlay(image, panoptic, large, CATEGORIES)
    plain = overlay(image, panoptic, small, CATEGORIES)
    np.testing.assert_array_equal(plain, np.tile(np.array(PERSON_COLOR) // 2, (side, side, 1)))
    [(box, text)] = place_labels(panoptic, large, CATEGORIES, label_font(panoptic.shape))
    assert text == "person 0.50"
    x0, y0, x1, y1 = box
    assert x0 <= side // 2 <= x1 and y0 <= side // 2 <= y1  # around the segment's centre
    changed = np.argwhere((labelled != plain).any(axis=-1))
    assert (changed.min(axis=0) == [y0, x0]).all() and (changed.max(axis=0) == [y1, x1]).all()
    inside = labelled[y0:y1 + 1, x0:x1 + 1]
    # White text on the dark box: mostly the box's colour, the text near white (antialiased).
    assert (inside == LABEL_BOX_COLOR).all(axis=-1).mean() > 0.5
    assert np.abs(inside.astype(int) - LABEL_COLOR).max(axis=-1).min() < TEXT_TOLERANCE


def test_labels_never_overlap_on_a_crowded_image():
    """A grid of small segments with long names: every label lies inside the image, no two
    share a pixel, and those that fit nowhere are left out."""
    side, cell = 256, 32
    rows, cols = np.divmod(np.arange(side * side).reshape(side, side), side)
    panoptic = (rows // cell) * (side // cell) + cols // cell + 1
    categories = CategoryMap.from_categories([
        {"id": 1, "name": "a long category name", "isthing": 1}])
    segments = [{"id": int(i), "category_id": 1, "area": cell * cell, "score": 0.5}
                for i in np.unique(panoptic)]
    placed = place_labels(panoptic, segments, categories, label_font(panoptic.shape))
    boxes = [box for box, _ in placed]
    assert 1 < len(boxes) < len(segments)
    for i, a in enumerate(boxes):
        assert 0 <= a[0] <= a[2] < side and 0 <= a[1] <= a[3] < side
        for b in boxes[i + 1:]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1], (a, b)


def test_font_grows_with_the_image():
    small, large = label_font((128, 128)), label_font((600, 1200))
    assert small.size == MIN_FONT_SIZE
    assert large.size == round(600 * LABEL_FONT_FRACTION) > small.size


def test_small_images_are_enlarged_to_min_side():
    image = np.full((4, 6, 3), GREY, np.uint8)
    panoptic = np.array([[5] * 6] * 2 + [[7] * 6] * 2)
    segments = [{"id": 5, "category_id": 1, "area": 12, "score": 0.9},
                {"id": 7, "category_id": 10, "area": 12}]  # 12 * 3 * 3 < MIN_LABEL_AREA
    got = overlay(image, panoptic, segments, CATEGORIES, min_side=10)
    assert got.shape == (12, 18, 3)  # factor ceil(10 / 4) = 3
    big_ids = panoptic.repeat(3, axis=0).repeat(3, axis=1)
    expected = overlay(image.repeat(3, axis=0).repeat(3, axis=1), big_ids,
                       [dict(s, area=s["area"] * 9) for s in segments], CATEGORIES)
    np.testing.assert_array_equal(got, expected)


def test_side_by_side_concatenates_columns():
    left = np.arange(2 * 1 * 3, dtype=np.uint8).reshape(2, 1, 3)
    right = np.arange(100, 100 + 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    got = side_by_side(left, right)
    expected = np.array([[[0, 1, 2], [100, 101, 102], [103, 104, 105]],
                         [[3, 4, 5], [106, 107, 108], [109, 110, 111]]], np.uint8)
    np.testing.assert_array_equal(got, expected)


def test_demo_overlays_are_enlarged_prediction_beside_truth(tmp_path):
    """write_overlays (the demo's): a small image is drawn at OVERLAY_MIN_SIDE; predictions
    equal to the ground truth give two equal panels."""
    from PIL import Image

    from oanet_tf.config import DataConfig
    from oanet_tf.data.coco_panoptic import PanopticDataset
    from oanet_tf.data.splits import resolve_split
    from oanet_tf.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(str(tmp_path / "data"), 0, 1, 3, (32, 48))
    config = DataConfig(synthetic_dir=str(tmp_path / "data"), synthetic_train=0,
                        synthetic_val=1, synthetic_seed=3, synthetic_size=(32, 48))
    val = PanopticDataset.from_split(resolve_split(config, "val"))
    [path] = write_overlays(val, val.panoptic_json, val.panoptic_dir, str(tmp_path / "out"), 4)
    picture = np.asarray(Image.open(path))
    factor = -(-OVERLAY_MIN_SIDE // 32)
    assert picture.shape == (32 * factor, 2 * 48 * factor, 3)
    np.testing.assert_array_equal(picture[:, :48 * factor], picture[:, 48 * factor:])
