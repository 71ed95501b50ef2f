"""Instance masks + stuff probabilities -> one panoptic segmentation, inside the graph.

The merge of the paper (section 3.2) and of the heuristic baseline it beats (Kirillov et al.):
instances are drawn in order, highest first, each claiming the still-free pixels of its mask;
then the stuff branch fills the remaining pixels. The order is the caller's: ranking scores
(OANet), detection scores (heuristic baseline) or their product, see `merge_order_scores`.
Everything is TensorFlow, so the merge exports in a SavedModel; its outputs have static
shapes (the box windows of `_draw_in_windows` inside do not: it is not XLA-compilable).

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
from oanet_tf.ops.mask_ops import RoIMasks, box_windows

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
                   stuff_area_rule: str = PER_CLASS, boxes=None) -> dict:
    """Merge a batch of instance and stuff predictions into panoptic segmentations.

    Inputs: masks [B, K, H, W] mask probabilities at the padded image size, or the RoI masks
    they are pasted from (`mask_ops.RoIMasks`: each is then pasted into its box window alone,
    and those boxes are the `boxes` below); classes [B, K]
    int (detector class 1..T, 0 = none); detection_scores, order_scores [B, K]; stuff_probs
    [B, H, W, S] (softmax over the stuff classes only); image_size optional [B, 2] int (valid
    height and width before padding: pixels outside stay void and count for no area); boxes
    optional [B, K, 4] float (y1, x1, y2, x2) pixels, each mask exactly 0 at the pixels whose
    centre lies outside its box (as `paste_masks` gives them): each instance then reads and
    writes only the canvas window around its box, with the same result at a fraction of the
    cost (ignored when mask_threshold <= 0, where 0 would count as inside).

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
    canvas, columns = merge_canvas(
        masks, classes, detection_scores, order_scores, stuff_probs, num_things,
        overlap_threshold, instance_score_threshold, min_stuff_area, mask_threshold, image_size,
        stuff_area_rule, boxes)
    area, box = segment_extents(canvas, _shape(columns["segment_ids"][0])[1] + 1)
    return {"panoptic": canvas, **compact_segments(area[:, 1:] > 0, {
        **columns, "area": (area[:, 1:], 0), "box": (box[:, 1:], 0.0)})}


def merge_canvas(masks, classes, detection_scores, order_scores, stuff_probs, num_things: int,
                 overlap_threshold: float = 0.5, instance_score_threshold: float = 0.5,
                 min_stuff_area=4900, mask_threshold: float = 0.5, image_size=None,
                 stuff_area_rule: str = PER_CLASS, boxes=None):
    """The merged segment-id map and the table of every segment it may hold, unmeasured.

    Arguments as panoptic_merge's -> (panoptic [B, H, W] int32, {name: (values [B, K + S,
    ...], padding fill)}): segment ids 1..K + S in panoptic_merge's order with their
    "segment_ids", "category", "is_thing", "detection_score" and "ranking_score", present in
    the map or not (compact_segments keeps the present ones). For callers that measure the
    segments on another map (the post-processor, at the original size).
    """
    if isinstance(masks, RoIMasks):
        boxes = masks.boxes
        batch, num, height, width = *_shape(masks.masks)[:2], *masks.canvas_size
    else:
        masks = tf.convert_to_tensor(masks)
        batch, num, height, width = _shape(masks)
    classes = tf.cast(classes, tf.int32)
    detection_scores = tf.cast(detection_scores, tf.float32)
    order_scores = tf.cast(order_scores, tf.float32)
    candidate = (classes > 0) & (classes <= num_things) & (
        detection_scores >= instance_score_threshold)
    order = _merge_positions(candidate, order_scores)
    sorted_candidate = tf.gather(candidate, order, batch_dims=1)
    limits = _valid_size(image_size, batch, height, width)
    valid_region = _valid_region(limits, height, width)  # [B, H, W] bool
    if boxes is not None and mask_threshold > 0:
        canvas = _draw_in_windows(masks, boxes, order, sorted_candidate, limits,
                                  (batch, height, width), overlap_threshold, mask_threshold)
    else:
        pasted = masks.pasted() if isinstance(masks, RoIMasks) else masks
        canvas = _draw_instances(pasted, order, sorted_candidate, valid_region,
                                 overlap_threshold, mask_threshold)
    canvas = _fill_stuff(canvas, stuff_probs, valid_region, num, min_stuff_area,
                         stuff_area_rule)
    sorted_columns = {name: tf.gather(values, order, batch_dims=1) for name, values in (
        ("classes", classes), ("detection", detection_scores), ("ranking", order_scores))}
    return canvas, _segment_columns(sorted_columns, num, num_things, stuff_probs.shape[-1])


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
        new = inside & tf.equal(canvas, VOID_ID)
        keep = sorted_candidate[:, step] & _keeps(inside, new, overlap_threshold)
        draw = new & keep[:, tf.newaxis, tf.newaxis]
        return step + 1, tf.where(draw, step + 1, canvas)

    canvas = tf.zeros([batch, height, width], tf.int32)
    _, canvas = tf.while_loop(lambda step, _: step < num_steps, claim, (tf.constant(0), canvas),
                              maximum_iterations=num)
    return canvas


def _draw_in_windows(masks, boxes, order, sorted_candidate, limits, canvas_shape,
                     overlap_threshold: float, mask_threshold: float):
    """_draw_instances' canvas, each candidate reading and writing only the window of the
    canvas around its box: a step costs its box's area, not the image's. Exact when every
    mask is 0 outside its box and mask_threshold > 0. masks [B, K, H, W] or RoIMasks (each
    window pasted alone), boxes [B, K, 4] (y1, x1, y2, x2) pixels, order and
    sorted_candidate [B, K], limits [B, 2] valid size, canvas_shape (B, H, W) -> [B, H, W]
    int32."""
    batch, height, width = canvas_shape
    steps = tf.cast(tf.where(sorted_candidate), tf.int32)  # [N, 2] (image, merge position)
    image, index = steps[:, :1], tf.gather_nd(order, steps)[:, tf.newaxis]
    windows = box_windows(tf.gather_nd(boxes, tf.concat([image, index], 1)),
                          tf.gather(limits, image[:, 0]))  # [N, 4]
    low, high = windows[:, :2], windows[:, 2:]
    size = high - low
    # The canvas is [B * H, W] in the loop: two-dimensional slice updates are faster.
    canvas_begin = tf.concat([image * height + low[:, :1], low[:, 1:]], 1)
    mask_window = masks.window if isinstance(masks, RoIMasks) else _pasted_window(masks)

    def claim(i, canvas):
        mask = mask_window(image[i, 0], index[i, 0], windows[i])
        window = tf.slice(canvas, canvas_begin[i], size[i])
        inside = tf.cast(mask, tf.float32) >= mask_threshold
        new = inside & tf.equal(window, VOID_ID)
        # A dropped candidate writes an empty window.
        rows = tf.where(_keeps(inside, new, overlap_threshold), size[i, 0], 0)
        drawn = tf.where(new, steps[i, 1] + 1, window)[:rows]
        end = canvas_begin[i] + tf.stack([rows, size[i, 1]])
        return i + 1, tf.raw_ops.TensorStridedSliceUpdate(
            input=canvas, begin=canvas_begin[i], end=end, strides=[1, 1], value=drawn)

    canvas = tf.zeros([batch * height, width], tf.int32)
    _, canvas = tf.while_loop(lambda i, _: i < tf.shape(steps)[0], claim, (0, canvas))
    return tf.reshape(canvas, [batch, height, width])


def _pasted_window(masks):
    """RoIMasks.window for masks already pasted, [B, K, H, W]: a slice of them."""
    def window(image, index, bounds):
        row0, col0, row1, col1 = tf.unstack(bounds)
        return masks[image, index, row0:row1, col0:col1]
    return window


def _keeps(inside, new, overlap_threshold: float):
    """Whether an instance claims its new pixels: inside (its mask) and new (its free pixels)
    bool [..., H, W] -> [...] bool, False when it has no new pixel or more than
    overlap_threshold of its mask is already taken."""
    mask_area, new_area = _count(inside), _count(new)
    taken = tf.cast(mask_area - new_area, tf.float32)
    return (new_area > 0) & ~(taken > overlap_threshold * tf.cast(mask_area, tf.float32))


def _segment_columns(sorted_columns: dict, num, num_things: int, num_stuff: int) -> dict:
    """Every segment a merge may draw, in output order: the instances by merge position (ids
    1..K), then the stuff classes (ids K + 1..K + S). sorted_columns holds the instances'
    classes, detection and ranking (order) scores [B, K] in merge order -> {name: (values
    [B, K + S], padding fill)}."""
    batch = _shape(sorted_columns["classes"])[0]
    ids = tf.range(1, num + num_stuff + 1)[tf.newaxis, :] + tf.zeros([batch, 1], tf.int32)
    stuff = num_things + tf.range(num_stuff)[tf.newaxis, :] + tf.zeros([batch, 1], tf.int32)
    stuff_zeros = tf.zeros([batch, num_stuff], tf.float32)
    return {
        "segment_ids": (ids, VOID_ID),
        "category": (tf.concat([sorted_columns["classes"] - 1, stuff], 1), NO_CATEGORY),
        "is_thing": (ids <= num, False),
        "detection_score": (tf.concat([sorted_columns["detection"], stuff_zeros], 1), 0.0),
        "ranking_score": (tf.concat([sorted_columns["ranking"], stuff_zeros], 1), 0.0)}


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


def _fill_stuff(canvas, stuff_probs, valid_region, num_things_ids, min_stuff_area,
                stuff_area_rule):
    """Free valid pixels take the argmax stuff class unless that class (per_class), or their
    connected region of it (per_region), covers too few."""
    if stuff_area_rule not in STUFF_AREA_RULES:
        raise ValueError(f"stuff area rule {stuff_area_rule!r} is not one of "
                         f"{', '.join(STUFF_AREA_RULES)}")
    batch, num_stuff = _shape(canvas)[0], stuff_probs.shape[-1]
    label = tf.argmax(stuff_probs, axis=-1, output_type=tf.int32)  # [B, H, W]
    free = tf.equal(canvas, VOID_ID) & valid_region
    min_area = tf.reshape(tf.cast(min_stuff_area, tf.float32), [-1, 1])  # [B or 1, 1]
    if stuff_area_rule == PER_REGION:
        area = component_areas(connected_components(label, free))  # [B, H, W]
        large = tf.cast(area, tf.float32) >= min_area[:, :, tf.newaxis]
        return tf.where(free & large, num_things_ids + 1 + label, canvas)
    # Area of each stuff class on free pixels; slot 0 of each image collects the others.
    slots = tf.where(free, label + 1, 0) + (num_stuff + 1) * tf.range(batch)[:, None, None]
    stuff_area = tf.reshape(_bincount(slots, batch * (num_stuff + 1)), [batch, -1])[:, 1:]
    large = tf.gather(tf.cast(stuff_area, tf.float32) >= min_area, label, batch_dims=1)
    return tf.where(free & large, num_things_ids + 1 + label, canvas)


def segment_extents(canvas, num_ids):
    """Area and box of every segment id: canvas [B, H, W] ids in [0, num_ids) -> [B, N]
    int32, [B, N, 4] float32 (y1, x1, y2, x2; zeros for an absent id).

    Two histograms instead of one reduction per statistic over every pixel: the pixels of
    each id per row and per column of each image; a box spans the first to the last row and
    column that hold its id.
    """
    batch, height, width = _shape(canvas)
    rows = tf.reshape(tf.range(batch * height), [batch, height, 1])  # row of the batch
    columns = tf.range(width)[None, None, :] + width * tf.range(batch)[:, None, None]
    per_row = tf.reshape(_bincount(rows * num_ids + canvas, batch * height * num_ids),
                         [batch, height, num_ids])
    per_column = tf.reshape(_bincount(columns * num_ids + canvas, batch * width * num_ids),
                            [batch, width, num_ids])
    area = tf.reduce_sum(per_row, axis=1)
    y1, y2 = _span(per_row > 0, height)
    x1, x2 = _span(per_column > 0, width)
    box = tf.where((area > 0)[..., tf.newaxis], tf.stack([y1, x1, y2, x2], axis=-1), 0)
    return area, tf.cast(box, tf.float32)


def _span(present, size):
    """First index and one past the last along axis 1 where present [B, size, N] is True ->
    [B, N] int32 each (meaningless where it is never True)."""
    first = tf.argmax(tf.cast(present, tf.int32), axis=1, output_type=tf.int32)
    last = size - tf.argmax(tf.cast(tf.reverse(present, [1]), tf.int32), axis=1,
                            output_type=tf.int32)
    return first, last


def _bincount(values, size):
    """Occurrences of 0..size - 1 among int32 values of any shape -> [size] int32."""
    return tf.math.bincount(tf.reshape(values, [-1]), minlength=size, maxlength=size,
                            dtype=tf.int32)


def _valid_size(image_size, batch, height, width):
    """[B, 2] int32 valid height and width of each image, at most the canvas's (the canvas
    when image_size is None): the box windows are clipped to it."""
    canvas = tf.stack([height, width])
    if image_size is None:
        return tf.tile(canvas[tf.newaxis], [batch, 1])
    return tf.minimum(tf.cast(image_size, tf.int32), canvas)


def _valid_region(limits, height, width):
    """[B, H, W] bool: inside each image's valid size limits [B, 2]."""
    rows = tf.range(height)[None, :, None] < limits[:, 0, None, None]
    cols = tf.range(width)[None, None, :] < limits[:, 1, None, None]
    return rows & cols


def _count(pixels):
    """True pixels of bool [..., H, W] -> [...] int32."""
    return tf.reduce_sum(tf.cast(pixels, tf.int32), axis=[-2, -1])


def _shape(tensor):
    """Each dimension as a Python int when static, else as a scalar tensor."""
    dynamic = tf.shape(tensor)
    return [d if d is not None else dynamic[i] for i, d in enumerate(tensor.shape)]
