"""The in-graph panoptic merge: hand cases of each rule, a numpy reference, SavedModel export."""

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.inference.panoptic_merge import (merge_order_scores, panoptic_merge,
                                               segment_extents, to_original_size)
from oanet_tf.ops.mask_ops import RoIMasks, paste_masks

H, W = 16, 20
T = 2  # thing classes: 1 = person, 2 = tie
PERSON, TIE = 1, 2


def _np_merge(masks, classes, det, order, stuff_probs, num_things, overlap=0.5, score=0.5,
              min_area=4900, mask_threshold=0.5):
    """Plain numpy merge, one image at a time: the reference for the TF version."""
    batch, num, height, width = masks.shape
    num_stuff = stuff_probs.shape[-1]
    results = []
    for b in range(batch):
        canvas = np.zeros((height, width), np.int64)
        segments = []
        key = np.where((classes[b] > 0) & (det[b] >= score), order[b], -np.inf)
        ranked = sorted(range(num), key=lambda k: (-key[k], k))
        for position, k in enumerate(ranked):
            if key[k] == -np.inf:
                continue
            inside = masks[b, k] >= mask_threshold
            area = inside.sum()
            new = inside & (canvas == 0)
            if area == 0 or new.sum() == 0 or (area - new.sum()) > overlap * area:
                continue
            canvas[new] = position + 1
            segments.append((position + 1, classes[b, k] - 1, True, det[b, k], order[b, k]))
        label = stuff_probs[b].argmax(-1)
        free = canvas == 0
        for j in range(num_stuff):
            region = free & (label == j)
            if region.sum() > 0 and region.sum() >= min_area:
                canvas[region] = num + 1 + j
                segments.append((num + 1 + j, num_things + j, False, 0.0, 0.0))
        boxes, areas = [], []
        for segment in segments:
            rows, cols = np.nonzero(canvas == segment[0])
            areas.append(len(rows))
            boxes.append([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
        results.append((canvas, segments, areas, boxes))
    return results


def _check_against_reference(out, reference, num_slots):
    for b, (canvas, segments, areas, boxes) in enumerate(reference):
        n = len(segments)
        np.testing.assert_array_equal(out["panoptic"][b], canvas)
        assert int(out["num_segments"][b]) == n
        ids, cats, things, dets, ranks = (np.array(v) for v in zip(*segments)) if n else [[]] * 5
        np.testing.assert_array_equal(out["segment_ids"][b, :n], ids)
        np.testing.assert_array_equal(out["category"][b, :n], cats)
        np.testing.assert_array_equal(out["is_thing"][b, :n], things)
        np.testing.assert_allclose(out["detection_score"][b, :n], dets, rtol=1e-6)
        np.testing.assert_allclose(out["ranking_score"][b, :n], ranks, rtol=1e-6)
        np.testing.assert_array_equal(out["area"][b, :n], areas)
        np.testing.assert_array_equal(out["box"][b, :n], np.reshape(boxes, (n, 4)))
        # Padding rows.
        assert out["segment_ids"].shape[1] == num_slots
        np.testing.assert_array_equal(out["segment_ids"][b, n:], 0)
        np.testing.assert_array_equal(out["category"][b, n:], -1)
        np.testing.assert_array_equal(out["area"][b, n:], 0)


def _merge(masks, classes, det, order, stuff, num_things=T, **kwargs):
    if not isinstance(masks, RoIMasks):
        masks = tf.constant(masks, tf.float32)
    return {k: v.numpy() for k, v in panoptic_merge(
        masks, tf.constant(classes, tf.int32),
        tf.constant(det, tf.float32), tf.constant(order, tf.float32),
        tf.constant(stuff, tf.float32), num_things, **kwargs).items()}


def _person_and_tie():
    masks = np.zeros((1, 2, H, W), np.float32)
    masks[0, 0, 2:14, 4:16] = 0.9  # person, whole mask including the tie
    masks[0, 1, 5:10, 9:11] = 0.8  # tie
    return masks, np.array([[PERSON, TIE]])


def _uniform_stuff(batch=1, num_stuff=2, winner=0):
    stuff = np.full((batch, H, W, num_stuff), 0.1, np.float32)
    stuff[..., winner] = 0.9
    return stuff


@pytest.mark.parametrize("order,tie_on_top", [("detection", False), ("ranking", True),
                                              ("product", True)])
def test_tie_on_person(order, tie_on_top):
    """Paper Figure 7: detection 0.997 / 0.662 erases the tie; ranking 0.325 / 0.878 keeps it."""
    masks, classes = _person_and_tie()
    det = np.array([[0.997, 0.662]], np.float32)
    rank = np.array([[0.325, 0.878]], np.float32)
    scores = merge_order_scores(order, tf.constant(det), tf.constant(rank)).numpy()
    out = _merge(masks, classes, det, scores, _uniform_stuff(), min_stuff_area=0)
    tie_pixels = out["panoptic"][0, 5:10, 9:11]
    n = int(out["num_segments"][0])
    categories = out["category"][0, :n].tolist()
    thing_ids = out["segment_ids"][0, :n][out["is_thing"][0, :n]]
    if tie_on_top:
        assert categories == [TIE - 1, PERSON - 1, T + 0]
        assert np.all(tie_pixels == thing_ids[0])
        np.testing.assert_array_equal(out["area"][0, :2], [10, 144 - 10])
    else:
        assert categories == [PERSON - 1, T + 0]  # the tie was fully covered: dropped
        assert np.all(tie_pixels == thing_ids[0])
        np.testing.assert_array_equal(out["area"][0, :1], [144])
    np.testing.assert_allclose(out["ranking_score"][0, :len(thing_ids)],
                               sorted(scores[0], reverse=True)[:len(thing_ids)])


def test_merge_order_scores():
    det, rank = tf.constant([[0.5, 0.8]]), tf.constant([[0.4, 0.1]])
    np.testing.assert_allclose(merge_order_scores("detection", det, rank), [[0.5, 0.8]])
    np.testing.assert_allclose(merge_order_scores("ranking", det, rank), [[0.4, 0.1]])
    np.testing.assert_allclose(merge_order_scores("product", det, rank), [[0.2, 0.08]])
    with pytest.raises(ValueError, match="merge order"):
        merge_order_scores("area", det, rank)


def test_overlap_threshold_and_score_threshold():
    masks = np.zeros((1, 4, H, W), np.float32)
    masks[0, 0, 0:10, 0:10] = 1  # A: 100 px, on top
    masks[0, 1, 4:14, 0:10] = 1  # B: 100 px, 60 under A -> dropped (0.6 > 0.5)
    masks[0, 2, 6:16, 0:10] = 1  # C: 100 px, 40 under A -> keeps its 60 free pixels
    masks[0, 3, 0:16, 10:20] = 1  # D: highest order but detection score 0.4 -> dropped
    classes = np.array([[1, 1, 2, 2]])
    det = np.array([[0.9, 0.9, 0.9, 0.4]], np.float32)
    order = np.array([[0.9, 0.8, 0.7, 1.0]], np.float32)
    out = _merge(masks, classes, det, order, _uniform_stuff(), min_stuff_area=0)
    canvas = out["panoptic"][0]
    # Merge positions: A (0), B (1), C (2), then the dropped D -> ids 1 (A) and 3 (C).
    expected = np.full((H, W), 4 + 1 + 0)  # stuff class 0 everywhere else: id K + 1 + 0
    expected[0:10, 0:10] = 1
    expected[10:16, 0:10] = 3
    np.testing.assert_array_equal(canvas, expected)
    assert int(out["num_segments"][0]) == 3
    np.testing.assert_array_equal(out["segment_ids"][0, :3], [1, 3, 5])
    np.testing.assert_array_equal(out["area"][0, :3], [100, 60, H * W - 160])
    np.testing.assert_array_equal(out["box"][0, :3], [[0, 0, 10, 10], [10, 0, 16, 10],
                                                      [0, 10, 16, 20]])
    # A stricter threshold also drops C (0.4 > 0.3); a looser one keeps B (0.6 <= 0.7).
    stricter = _merge(masks, classes, det, order, _uniform_stuff(), min_stuff_area=0,
                      overlap_threshold=0.3)
    assert set(np.unique(stricter["panoptic"]).tolist()) == {1, 5}
    looser = _merge(masks, classes, det, order, _uniform_stuff(), min_stuff_area=0,
                    overlap_threshold=0.7)
    assert set(np.unique(looser["panoptic"]).tolist()) == {1, 2, 5}
    assert int((looser["panoptic"] == 2).sum()) == 40
    # Exactly half claimed is not "more than" 0.5: the second instance keeps its 50 pixels.
    half = masks[:, :2].copy()
    half[0, 1] = 0
    half[0, 1, 5:15, 0:10] = 1
    boundary = _merge(half, classes[:, :2], det[:, :2], order[:, :2], _uniform_stuff(),
                      min_stuff_area=0)
    np.testing.assert_array_equal(boundary["area"][0, :2], [100, 50])


def test_stuff_fill_and_small_stuff_becomes_void():
    masks = np.zeros((1, 1, H, W), np.float32)
    masks[0, 0, 0:4, 0:4] = 1
    stuff = np.zeros((1, H, W, 3), np.float32)
    stuff[..., 0] = 0.5
    stuff[0, :, 12:, 1] = 0.9  # class 1 wins on columns 12.. (16 x 8 = 128 px)
    stuff[0, 0:3, 0:6, 2] = 0.9  # class 2 wins on 18 px, 12 of them under the instance
    out = _merge(masks, [[1]], [[0.9]], [[0.9]], stuff, min_stuff_area=20)
    canvas = out["panoptic"][0]
    # Class 2 has 6 free pixels (< 20) -> void; class 0 fills the rest; ids K + 1 + j.
    expected = np.full((H, W), 2)
    expected[:, 12:] = 3
    expected[0:3, 4:6] = 0
    expected[0:4, 0:4] = 1
    np.testing.assert_array_equal(canvas, expected)
    np.testing.assert_array_equal(out["category"][0, :3], [0, T + 0, T + 1])
    np.testing.assert_array_equal(out["area"][0, :3], [16, H * 12 - 16 - 6, 128])
    np.testing.assert_array_equal(out["is_thing"][0, :4], [True, False, False, False])
    np.testing.assert_array_equal(out["detection_score"][0, 1:3], [0, 0])


def test_per_region_rule_voids_small_connected_regions_of_a_class_that_is_large_overall():
    """Stuff class 1 covers a strip at the image's right edge (24 free px once the thing on
    its top and the padding beyond image_size are left out), a 3 x 3 island (9 px) and two
    2 x 2 squares touching only at a corner (8 px together: one 8-connected region). Minimum
    area 8: every class-1 pixel stays under both rules; minimum 9: per class all stay (41
    px), per region the corner pair goes void; minimum 25: per region the strip goes too."""
    stuff = np.zeros((1, H, W, 2), np.float32)
    stuff[..., 0] = 0.5
    stuff[0, :, 16:20, 1] = 0.9  # strip; columns 18.. are padding below
    stuff[0, 1:4, 1:4, 1] = 0.9  # island
    stuff[0, 8:10, 8:10, 1] = stuff[0, 10:12, 10:12, 1] = 0.9  # corner contact
    masks = np.zeros((1, 1, H, W), np.float32)
    masks[0, 0, 0:4, 14:20] = 1
    common = dict(image_size=tf.constant([[H, 18]]))
    per_class = _merge(masks, [[1]], [[0.9]], [[0.9]], stuff, min_stuff_area=8, **common)
    per_region = _merge(masks, [[1]], [[0.9]], [[0.9]], stuff, min_stuff_area=8,
                        stuff_area_rule="per_region", **common)
    np.testing.assert_array_equal(per_region["panoptic"], per_class["panoptic"])
    stricter = _merge(masks, [[1]], [[0.9]], [[0.9]], stuff, min_stuff_area=9,
                      stuff_area_rule="per_region", **common)
    expected = per_class["panoptic"][0].copy()
    expected[8:10, 8:10] = expected[10:12, 10:12] = 0
    np.testing.assert_array_equal(stricter["panoptic"][0], expected)
    by_class = _merge(masks, [[1]], [[0.9]], [[0.9]], stuff, min_stuff_area=9, **common)
    np.testing.assert_array_equal(by_class["panoptic"], per_class["panoptic"])
    # The strip's free part: 12 rows x 2 columns inside the image (24 px) stays at 24, goes
    # void at 25 together with everything smaller.
    largest = _merge(masks, [[1]], [[0.9]], [[0.9]], stuff, min_stuff_area=25,
                     stuff_area_rule="per_region", **common)["panoptic"][0]
    assert np.all(largest[4:, 16:18] == 0) and np.all(largest[1:4, 1:4] == 0)
    assert np.all(largest[0, 0:4] == per_class["panoptic"][0, 0, 0:4])  # class 0 stays
    with pytest.raises(ValueError, match="stuff area rule"):
        _merge(masks, [[1]], [[0.9]], [[0.9]], stuff, stuff_area_rule="per_pixel")


def test_image_size_keeps_padding_void():
    masks = np.zeros((1, 1, H, W), np.float32)
    masks[0, 0, 8:16, 8:20] = 1  # reaches into the padding
    out = panoptic_merge(tf.constant(masks), tf.constant([[1]]), tf.constant([[0.9]]),
                         tf.constant([[0.9]]), tf.constant(_uniform_stuff()), T, min_stuff_area=0,
                         image_size=tf.constant([[12, 16]]))
    canvas = out["panoptic"].numpy()[0]
    assert np.all(canvas[12:] == 0) and np.all(canvas[:, 16:] == 0)
    np.testing.assert_array_equal(out["area"][0, :2], [4 * 8, 12 * 16 - 32])


def test_batch_of_two_different_images():
    masks, classes = _person_and_tie()
    masks = np.concatenate([masks, masks[:, ::-1]])  # image 2: tie first, person second
    classes = np.concatenate([classes, classes[:, ::-1]])
    det = np.array([[0.997, 0.662], [0.662, 0.997]], np.float32)
    stuff = np.concatenate([_uniform_stuff(winner=0), _uniform_stuff(winner=1)])
    out = _merge(masks, classes, det, det, stuff, min_stuff_area=0)
    np.testing.assert_array_equal(out["panoptic"][0], out["panoptic"][1] - np.where(
        out["panoptic"][1] > 2, 1, 0))  # same layout, stuff class 1 (id 4) instead of 0 (3)
    np.testing.assert_array_equal(out["category"][:, :2], [[0, 2], [0, 3]])
    reference = _np_merge(masks, classes, det, det, stuff, T, min_area=0)
    _check_against_reference(out, reference, 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    batch, num, num_stuff, num_things = 2, 8, 4, 3
    masks = np.zeros((batch, num, H, W), np.float32)
    for b in range(batch):
        for k in range(num):
            y, x = rng.integers(0, H - 3), rng.integers(0, W - 3)
            h, w = rng.integers(2, H - y + 1), rng.integers(2, W - x + 1)
            masks[b, k, y:y + h, x:x + w] = rng.random((h, w))
    classes = rng.integers(0, num_things + 1, size=(batch, num))
    det = rng.random((batch, num)).astype(np.float32)
    order = rng.random((batch, num)).astype(np.float32)
    stuff = rng.random((batch, H, W, num_stuff)).astype(np.float32)
    kwargs = dict(overlap=0.5, score=0.3, min_area=30)
    out = _merge(masks, classes, det, order, stuff, num_things, overlap_threshold=0.5,
                 instance_score_threshold=0.3, min_stuff_area=30)
    reference = _np_merge(masks, classes, det, order, stuff, num_things, **kwargs)
    assert sum(len(r[1]) for r in reference) > 4  # the case is not trivial
    _check_against_reference(out, reference, num + num_stuff)


def _masks_in_boxes(rng, boxes, height, width):
    """Random probabilities at the pixels whose centre lies in each box [B, K, 4] (y1, x1,
    y2, x2), exactly 0 elsewhere, as paste_masks leaves them -> [B, K, H, W] float32."""
    centres_y = np.arange(height)[:, None] + 0.5
    centres_x = np.arange(width)[None, :] + 0.5
    y1, x1, y2, x2 = (boxes[..., i, None, None] for i in range(4))
    inside = (centres_y >= y1) & (centres_y <= y2) & (centres_x >= x1) & (centres_x <= x2)
    return np.where(inside, rng.random(inside.shape), 0).astype(np.float32)


def _random_boxes(rng, batch, num, height, width):
    """Boxes of 1 to 12 pixels a side with fractional corners, some reaching the borders."""
    size = rng.uniform(1, 12, size=(batch, num, 2))
    corner = rng.uniform(-2, np.array([height, width]) - size + 2)
    boxes = np.concatenate([corner, corner + size], -1)
    return np.clip(boxes, 0, [height, width, height, width]).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_box_windows_give_the_whole_canvas_result(seed):
    """Each instance working in the window around its box gives the same maps and tables as
    the whole canvas: a batch of 2 with different valid sizes, overlapping instances (some
    dropped for overlap), an empty mask and boxes on the image borders and in the padding."""
    rng = np.random.default_rng(seed)
    batch, num, num_stuff, num_things = 2, 24, 3, 4
    boxes = _random_boxes(rng, batch, num, H, W)
    boxes[0, 0] = [0, 0, H, W]  # the whole image, under everything else
    boxes[1, 1] = [H - 3.5, W - 4.25, H, W]  # the corner, in the padding of image 1
    boxes[0, 2] = [0, 0, 0, 0]  # an empty mask
    masks = _masks_in_boxes(rng, boxes, H, W)
    classes = rng.integers(0, num_things + 1, size=(batch, num))
    det = rng.uniform(0.3, 1, size=(batch, num)).astype(np.float32)
    order = rng.random((batch, num)).astype(np.float32)
    order[0, 0] = 0  # drawn last
    stuff = rng.random((batch, H, W, num_stuff)).astype(np.float32)
    kwargs = dict(min_stuff_area=12, image_size=tf.constant([[H, W], [H - 5, W - 7]]))
    whole = _merge(masks, classes, det, order, stuff, num_things, **kwargs)
    windows = _merge(masks, classes, det, order, stuff, num_things, boxes=tf.constant(boxes),
                     **kwargs)
    for name, value in whole.items():
        assert windows[name].dtype == value.dtype, name
        np.testing.assert_array_equal(windows[name], value, err_msg=name)
    kept = whole["is_thing"].sum()
    candidates = ((classes > 0) & (det >= 0.5)).sum()
    assert 4 < kept < candidates - 2  # some instances are kept, several dropped


def test_box_windows_with_pasted_masks_and_lower_thresholds():
    """The windows hold everything paste_masks draws, for mask thresholds below one half
    too; with threshold 0 (zero pixels inside) the boxes are ignored. The RoI masks pasted
    window by window (RoIMasks) give the same as the pasted canvas."""
    rng = np.random.default_rng(5)
    batch, num = 2, 12
    boxes = tf.constant(_random_boxes(rng, batch, num, H, W))
    roi = rng.random((batch, num, 28, 28)).astype(np.float32)
    masks = paste_masks(tf.constant(roi), boxes, (H, W)).numpy()
    classes = rng.integers(1, T + 1, size=(batch, num))
    det = rng.uniform(0.5, 1, size=(batch, num)).astype(np.float32)
    stuff = rng.random((batch, H, W, 2)).astype(np.float32)
    for threshold in (0.5, 0.1, 0.0):
        whole = _merge(masks, classes, det, det, stuff, mask_threshold=threshold,
                       min_stuff_area=5)
        windows = _merge(masks, classes, det, det, stuff, mask_threshold=threshold,
                         min_stuff_area=5, boxes=boxes)
        roi_masks = RoIMasks(tf.constant(roi), boxes, (H, W))
        pasted_alone = _merge(roi_masks, classes, det, det, stuff, mask_threshold=threshold,
                              min_stuff_area=5)
        for name, value in whole.items():
            np.testing.assert_array_equal(windows[name], value, err_msg=f"{threshold} {name}")
            np.testing.assert_array_equal(pasted_alone[name], value,
                                          err_msg=f"RoIMasks {threshold} {name}")


def test_stuff_ties_go_to_the_first_class():
    """Free pixels where stuff classes tie take the lowest of them, as np.argmax does."""
    stuff = np.zeros((1, H, W, 4), np.float32)
    stuff[0, :, :10, 1:3] = 0.4  # classes 1 and 2 tie
    stuff[0, :, 10:, :] = 0.25  # all four tie
    out = _merge(np.zeros((1, 1, H, W), np.float32), [[0]], [[0.0]], [[0.0]], stuff,
                 min_stuff_area=0)
    np.testing.assert_array_equal(out["panoptic"][0], 1 + 1 + stuff[0].argmax(-1))


def test_segment_extents_match_numpy():
    """Areas and boxes of every id of a batch, absent ids included (zeros)."""
    rng = np.random.default_rng(0)
    canvas = rng.integers(0, 6, size=(2, H, W)) * (rng.random((2, H, W)) < 0.02)
    canvas[1, 3:9, 0:4] = 7
    canvas[1, H - 1, W - 1] = 8
    area, box = segment_extents(tf.constant(canvas, tf.int32), 10)
    for b in range(2):
        for segment in range(10):
            rows, cols = np.nonzero(canvas[b] == segment)
            assert int(area[b, segment]) == len(rows)
            want = ([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1] if len(rows)
                    else [0, 0, 0, 0])
            np.testing.assert_array_equal(box[b, segment], want)
    assert area.dtype == tf.int32 and box.dtype == tf.float32


def test_to_original_size_undoes_resize_and_padding():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 50, size=(5, 7)).astype(np.int32)
    resized = original.repeat(2, axis=0).repeat(2, axis=1)  # 10 x 14
    padded = np.zeros((16, 16), np.int32)
    padded[:10, :14] = resized
    padded[10:, :] = 99  # padding content must be cut away
    got = to_original_size(tf.constant(padded), tf.constant([10, 14]), tf.constant([5, 7]))
    np.testing.assert_array_equal(got, original)
    # Upsampling back by 3/2: each output pixel takes the nearest input pixel centre.
    got = to_original_size(tf.constant(padded), tf.constant([10, 14]), tf.constant([15, 21]))
    rows = np.minimum(((np.arange(15) + 0.5) * 10 / 15).astype(int), 9)
    cols = np.minimum(((np.arange(21) + 0.5) * 14 / 21).astype(int), 13)
    np.testing.assert_array_equal(got, resized[rows][:, cols])
    assert got.dtype == tf.int32


def test_merge_exports_in_a_saved_model(tmp_path):
    batch, num, num_stuff = 2, 3, 2

    class Merger(tf.Module):
        @tf.function(input_signature=[
            tf.TensorSpec([batch, num, H, W], tf.float32), tf.TensorSpec([batch, num], tf.int32),
            tf.TensorSpec([batch, num], tf.float32), tf.TensorSpec([batch, num], tf.float32),
            tf.TensorSpec([batch, H, W, num_stuff], tf.float32)])
        def merge(self, masks, classes, det, ranking, stuff):
            return panoptic_merge(masks, classes, det, merge_order_scores("ranking", det, ranking),
                                  stuff, T, min_stuff_area=10)

    masks, classes = _person_and_tie()
    masks = np.concatenate([np.concatenate([masks, np.zeros((1, 1, H, W))], 1)] * 2)
    classes = np.array([[1, 2, 0], [2, 1, 0]], np.int32)
    det = np.array([[0.997, 0.662, 0.0], [0.9, 0.9, 0.0]], np.float32)
    rank = np.array([[0.325, 0.878, 0.0], [0.2, 0.3, 0.0]], np.float32)
    stuff = np.stack([_uniform_stuff()[0], _uniform_stuff(winner=1)[0]])
    args = [tf.constant(a, dtype) for a, dtype in ((masks, tf.float32), (classes, tf.int32),
                                                  (det, tf.float32), (rank, tf.float32),
                                                  (stuff, tf.float32))]
    path = str(tmp_path / "merge")
    tf.saved_model.save(Merger(), path)
    loaded = tf.saved_model.load(path)
    got = loaded.merge(*args)
    want = _np_merge(masks, classes, det, rank, stuff, T, min_area=10)
    _check_against_reference({k: v.numpy() for k, v in got.items()}, want, num + num_stuff)
