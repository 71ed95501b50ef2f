"""Instance masks + stuff probabilities -> one panoptic segmentation, inside the graph.

The merge of the paper (section 3.2) and of the heuristic baseline it beats (Kirillov et al.):
instances are drawn in order, highest first, each claiming the still-free pixels of its mask;
then the stuff branch fills the remaining pixels. The order is the caller's: ranking scores
(OANet), detection scores (heuristic baseline) or their product, see `merge_order_scores`.
Everything is TensorFlow with static shapes, so the merge exports in a SavedModel.

Segment ids in the output map: 0 void; instance drawn at merge position i (0-based, among
all K candidates sorted by order score) has id i + 1, so ids of dropped instances are unused;
stuff class j (index among stuff classes) has id K + 1 + j.
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.config import (DETECTION, MERGE_ORDERS, PER_CLASS, PER_REGION, PRODUCT, RANKING,
                             STUFF_AREA_RULES)
from oanet_tf.data.panoptic_format import VOID_ID
from oanet_tf.ops.connected_components import component_areas, connected_components

NO_CATEGORY = -1  # category of the padding entries of a segment table


def merge_order_scores(order: str, detection_scores, ranking_scores):
    """The score instances are merged by, highest on top.

    "ranking": the SRM ranking score (OANet); "detection": the detector's score (heuristic
    baseline); "product": both multiplied. detection_scores, ranking_scores [B, K] -> [B, K].
    """
    if order == RANKING:
        return tf.cast(ranking_scores, tf.float32)
    if order == DETECTION:
        return tf.cast(detection_scores, tf.float32)
    if order == PRODUCT:
        return tf.cast(detection_scores, tf.float32) * tf.cast(ranking_scores, tf.float32)
    raise ValueError(f"merge order {order!r} is not one of {', '.join(MERGE_ORDERS)}")


def panoptic_merge(masks, classes, detection_scores, order_scores, stuff_probs, num_things: int,
                   overlap_threshold: float = 0.5, instance_score_threshold: float = 0.5,
                   min_stuff_area=4900, mask_threshold: float = 0.5, image_size=None,
                   stuff_area_rule: str = PER_CLASS) -> dict:
    """Merge a batch of instance and stuff predictions into panoptic segmentations.

    Inputs: masks [B, K, H, W] mask probabilities at the padded image size; classes [B, K]
    int (detector class 1..T, 0 = none); detection_scores, order_scores [B, K]; stuff_probs
    [B, H, W, S] (softmax over the stuff classes only); image_size optional [B, 2] int (valid
    height and width before padding: pixels outside stay void and count for no area).

    Rules: an instance with class 0 or detection score < instance_score_threshold is dropped;
    the rest go in descending order score (ties: lower index first). An instance whose mask
    (probability >= mask_threshold) is empty, more than overlap_threshold already claimed, or
    has no free pixel left is dropped; otherwise it claims its free pixels. Free pixels then
    take the argmax stuff class; with stuff_area_rule "per_class" a stuff class with fewer
    than min_stuff_area such pixels (a number, or a [B] tensor for a per-image area) is left
    void, with "per_region" each 8-connected region of such pixels of one class is, instead.

    Returns a dict: "panoptic" [B, H, W] int32 segment ids (see the module docstring) and, per
    segment, arrays of static length K + S holding the num_segments [B] segments first (kept
    instances in merge order, then stuff in class order) and padding after: "segment_ids"
    int32 (0 in padding), "category" int32 (semantic index: thing k -> k, stuff j ->
    num_things + j; NO_CATEGORY in padding), "is_thing" bool, "detection_score" float32,
    "ranking_score" float32 (the order score the merge used; both scores 0 for stuff), "area"
    int32, "box" float32 [.., 4] (y1, x1, y2, x2: the continuous extent of the segment's
    pixels, zeros in padding).
    """
    masks = tf.convert_to_tensor(masks)
    batch, num, height, width = _shape(masks)
    num_stuff = stuff_probs.shape[-1]
    classes = tf.cast(classes, tf.int32)
    detection_scores = tf.cast(detection_scores, tf.float32)
    order_scores = tf.cast(order_scores, tf.float32)
    valid_region = _valid_region(image_size, batch, height, width)  # [B, H, W] bool
    candidate = (classes > 0) & (classes <= num_things) & (
        detection_scores >= instance_score_threshold)
    order = _merge_positions(candidate, order_scores)
    canvas = _draw_instances(masks, order, tf.gather(candidate, order, batch_dims=1),
                             valid_region, overlap_threshold, mask_threshold)
    canvas = _fill_stuff(canvas, stuff_probs, valid_region, num, num_stuff, min_stuff_area,
                         stuff_area_rule)
    sorted_columns = {name: tf.gather(values, order, batch_dims=1) for name, values in (
        ("classes", classes), ("detection", detection_scores), ("ranking", order_scores))}
    return {"panoptic": canvas,
            **_segment_table(canvas, sorted_columns, num, num_things, num_stuff)}


def _merge_positions(candidate, order_scores):
    """The instances in merge order: candidate [B, K] bool, order_scores [B, K] -> [B, K]
    indices, candidates by descending order score (ties: lower index first), then the
    others."""
    sort_key = tf.where(candidate, order_scores, -float("inf"))
    return tf.argsort(sort_key, axis=1, direction="DESCENDING", stable=True)


def _draw_instances(masks, order, sorted_candidate, valid_region, overlap_threshold: float,
                    mask_threshold: float):
    """Each candidate in merge order claims the free pixels of its mask, unless it has none
    or more than overlap_threshold of it is taken. masks [B, K, H, W], order and
    sorted_candidate [B, K] -> canvas [B, H, W] int32 (merge position + 1, VOID_ID free)."""
    batch, num, height, width = _shape(masks)
    # Dropped candidates sort last: the loop stops after the last one in any image.
    num_steps = tf.reduce_max(tf.reduce_sum(tf.cast(sorted_candidate, tf.int32), axis=1))

    def claim(step, canvas):
        index = order[:, step]
        mask = tf.gather(masks, index, batch_dims=1)  # [B, H, W]
        inside = (tf.cast(mask, tf.float32) >= mask_threshold) & valid_region
        free = tf.equal(canvas, VOID_ID)
        mask_area = _count(inside)
        new_area = _count(inside & free)
        taken = tf.cast(mask_area - new_area, tf.float32)
        keep = (sorted_candidate[:, step] & (new_area > 0)
                & ~(taken > overlap_threshold * tf.cast(mask_area, tf.float32)))
        draw = inside & free & keep[:, tf.newaxis, tf.newaxis]
        return step + 1, tf.where(draw, step + 1, canvas)

    canvas = tf.zeros([batch, height, width], tf.int32)
    _, canvas = tf.while_loop(lambda step, _: step < num_steps, claim, (tf.constant(0), canvas),
                              maximum_iterations=num)
    return canvas


def _segment_table(canvas, sorted_columns: dict, num, num_things: int, num_stuff: int) -> dict:
    """The segment table of a merged canvas (see panoptic_merge): sorted_columns holds the
    num instances' classes, detection and ranking (order) scores [B, K] in merge order."""
    batch = _shape(canvas)[0]
    num_ids = num + num_stuff + 1
    area, box = segment_extents(canvas, num_ids)  # [B, num_ids], [B, num_ids, 4]
    # Candidate segments in output order: things by merge position, then stuff by class.
    ids = tf.range(1, num_ids)[tf.newaxis, :] + tf.zeros([batch, 1], tf.int32)
    category = tf.concat([sorted_columns["classes"] - 1,
                          num_things + tf.range(num_stuff)[tf.newaxis, :]
                          + tf.zeros([batch, 1], tf.int32)], axis=1)
    stuff_zeros = tf.zeros([batch, num_stuff], tf.float32)
    detection = tf.concat([sorted_columns["detection"], stuff_zeros], 1)
    ranking = tf.concat([sorted_columns["ranking"], stuff_zeros], 1)
    is_thing = tf.range(num_ids - 1)[tf.newaxis, :] < num + tf.zeros([batch, 1], tf.int32)
    area, box = area[:, 1:], box[:, 1:]
    return compact_segments(area > 0, {
        "segment_ids": (ids, VOID_ID), "category": (category, NO_CATEGORY),
        "is_thing": (is_thing, False), "detection_score": (detection, 0.0),
        "ranking_score": (ranking, 0.0), "area": (area, 0), "box": (box, 0.0)})


def compact_segments(present, columns: dict) -> dict:
    """Move the present segments of a segment table to the front, keeping their order.

    present [B, N] bool; columns {name: (values [B, N, ...], fill)} -> {name: values with the
    present entries first and `fill` after} plus "num_segments" [B] int32.
    """
    order = tf.argsort(tf.cast(~present, tf.int32), axis=1, stable=True)  # present first
    present = tf.gather(present, order, batch_dims=1)
    table = {"num_segments": tf.reduce_sum(tf.cast(present, tf.int32), axis=1)}
    for name, (values, fill) in columns.items():
        picked = tf.gather(values, order, batch_dims=1)
        keep = present
        for _ in range(picked.shape.rank - 2):  # per-segment vectors such as boxes
            keep = keep[..., tf.newaxis]
        table[name] = tf.where(keep, picked, tf.cast(fill, picked.dtype))
    return table


def to_original_size(panoptic, image_size, original_size):
    """Undo padding and resizing of one segment-id map.

    panoptic [H, W] int32, image_size (h, w) valid size before padding, original_size
    (h0, w0) -> [h0, w0] int32: the valid region cropped, resized nearest-neighbour.
    """
    image_size = tf.cast(image_size, tf.int32)
    original_size = tf.cast(original_size, tf.int32)
    valid = panoptic[:image_size[0], :image_size[1]]
    resized = tf.image.resize(valid[..., tf.newaxis], original_size, method="nearest")
    return tf.cast(resized[..., 0], tf.int32)


def _fill_stuff(canvas, stuff_probs, valid_region, num_things_ids, num_stuff, min_stuff_area,
                stuff_area_rule):
    """Free valid pixels take the argmax stuff class unless that class (per_class), or their
    connected region of it (per_region), covers too few."""
    if stuff_area_rule not in STUFF_AREA_RULES:
        raise ValueError(f"stuff area rule {stuff_area_rule!r} is not one of "
                         f"{', '.join(STUFF_AREA_RULES)}")
    batch = _shape(canvas)[0]
    label = tf.argmax(stuff_probs, axis=-1, output_type=tf.int32)  # [B, H, W]
    free = tf.equal(canvas, VOID_ID) & valid_region
    min_area = tf.reshape(tf.cast(min_stuff_area, tf.float32), [-1, 1])  # [B or 1, 1]
    if stuff_area_rule == PER_REGION:
        area = component_areas(connected_components(label, free))  # [B, H, W]
        large = tf.cast(area, tf.float32) >= min_area[:, :, tf.newaxis]
        return tf.where(free & large, num_things_ids + 1 + label, canvas)
    # Area of each stuff class on free pixels; slot 0 of each image collects the others.
    slots = tf.where(free, label + 1, 0) + (num_stuff + 1) * tf.range(batch)[:, None, None]
    stuff_area = tf.math.unsorted_segment_sum(tf.ones_like(tf.reshape(slots, [-1])),
                                              tf.reshape(slots, [-1]), batch * (num_stuff + 1))
    stuff_area = tf.reshape(stuff_area, [batch, num_stuff + 1])[:, 1:]  # [B, S]
    large = tf.gather(tf.cast(stuff_area, tf.float32) >= min_area, label, batch_dims=1)
    return tf.where(free & large, num_things_ids + 1 + label, canvas)


def segment_extents(canvas, num_ids):
    """Area and box of every segment id: canvas [B, H, W] -> [B, N] int32, [B, N, 4] float32."""
    batch, height, width = _shape(canvas)
    flat_ids = tf.reshape(canvas + num_ids * tf.range(batch)[:, None, None], [-1])
    segments = batch * num_ids

    def reduce(op, values):
        values = tf.reshape(tf.broadcast_to(values, [batch, height, width]), [-1])
        return tf.reshape(op(values, flat_ids, segments), [batch, num_ids])

    area = reduce(tf.math.unsorted_segment_sum, tf.ones([], tf.int32))
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    box = tf.stack([reduce(tf.math.unsorted_segment_min, rows),
                    reduce(tf.math.unsorted_segment_min, cols),
                    reduce(tf.math.unsorted_segment_max, rows) + 1,
                    reduce(tf.math.unsorted_segment_max, cols) + 1], axis=-1)
    box = tf.where((area > 0)[..., tf.newaxis], box, 0)
    return area, tf.cast(box, tf.float32)


def _valid_region(image_size, batch, height, width):
    """[B, H, W] bool: inside the image before padding (everything when image_size is None)."""
    if image_size is None:
        return tf.ones([batch, height, width], tf.bool)
    image_size = tf.cast(image_size, tf.int32)
    rows = tf.range(height)[None, :, None] < image_size[:, 0, None, None]
    cols = tf.range(width)[None, None, :] < image_size[:, 1, None, None]
    return rows & cols


def _count(pixels):
    return tf.reduce_sum(tf.cast(pixels, tf.int32), axis=[1, 2])


def _shape(tensor):
    """Each dimension as a Python int when static, else as a scalar tensor."""
    dynamic = tf.shape(tensor)
    return [d if d is not None else dynamic[i] for i, d in enumerate(tensor.shape)]
