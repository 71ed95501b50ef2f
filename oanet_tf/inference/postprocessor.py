"""Detections -> panoptic segmentations at the original image sizes, with their segment tables.

The one post-processor of every prediction path: the SavedModel's signatures, `predict`,
`evaluate` and the PQ callback. Inside the graph, per merge order: the panoptic merge at the
padded input size (`merge_canvas`: panoptic_merge's map, its segments not yet measured), each
map cropped to its valid region and resized back to its original size, then every segment
measured on that map (a segment no original pixel keeps is dropped) and named by its dataset
category id. `image_segments` reads one image of the outputs into a COCO panoptic id map and
`segments_info` (numpy; it measures nothing).

Outputs of one merge order (N = detections per image + number of stuff classes):
  panoptic        int32 [B, Hmax, Wmax]  segment ids (0 void); OUTSIDE_IMAGE beyond the
                                         image's own size
  height, width   int32 [B]              original size of each image
  num_segments    int32 [B]              the first num_segments entries below are segments
  segment_ids     int32 [B, N]           ids in `panoptic`; 0 in padding
  category_ids    int32 [B, N]           dataset category ids; NO_CATEGORY in padding
  is_thing        bool  [B, N]
  detection_scores, ranking_scores float32 [B, N]  detector score and the score the merge
                                         ordered by (the SRM ranking score with merge order
                                         "ranking"); 0 for stuff and padding
  areas           int32 [B, N]           pixels at the original size
  boxes           float32 [B, N, 4]      (x, y, w, h) at the original size
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from oanet_tf.config import EvalConfig
from oanet_tf.data.panoptic_format import VOID_ID, CategoryMap
from oanet_tf.inference.panoptic_merge import (NO_CATEGORY, compact_segments, merge_canvas,
                                               merge_order_scores, segment_extents,
                                               to_original_size)
from oanet_tf.ops.mask_ops import RoIMasks
from oanet_tf.ops.shapes import dims

OUTSIDE_IMAGE = -1  # panoptic value beyond an image's own size, in the batch padding


class PanopticPostprocessor:
    """OANet.detect outputs -> {merge order: the outputs of the module docstring}."""

    def __init__(self, categories: CategoryMap, eval_config: EvalConfig, orders=None):
        self.categories = categories
        self.eval_config = eval_config
        self.orders = tuple(orders or (eval_config.merge_order,))

    def __call__(self, detections: dict, image_size, original_size) -> dict:
        """detections: OANet.detect's dict for padded images [B, H, W, 3]; image_size [B, 2]
        valid size before padding; original_size [B, 2] size of the files."""
        # The minimum stuff area is in original pixels; the merge runs at the resized size.
        scale = (tf.reduce_prod(tf.cast(image_size, tf.float32), axis=-1)
                 / tf.reduce_prod(tf.cast(original_size, tf.float32), axis=-1))
        min_area = float(self.eval_config.min_stuff_area) * scale  # [B]
        outputs = {}
        masks, boxes = _instance_masks(detections)
        for order in self.orders:
            merged = merge_canvas(
                masks, detections["classes"], detections["scores"],
                merge_order_scores(order, detections["scores"], detections["ranking_scores"]),
                detections["stuff_probs"], self.categories.num_things,
                overlap_threshold=self.eval_config.overlap_threshold,
                instance_score_threshold=self.eval_config.instance_score_threshold,
                min_stuff_area=min_area, image_size=image_size,
                stuff_area_rule=self.eval_config.stuff_area_rule, boxes=boxes)
            outputs[order] = self._at_original_size(*merged, image_size, original_size)
        return outputs

    def _at_original_size(self, panoptic, columns: dict, image_size, original_size) -> dict:
        """One order's merge_canvas outputs -> its outputs at the original sizes: segments
        are measured only there (a segment present there is present at the merge's size)."""
        original_size = tf.cast(original_size, tf.int32)
        panoptic = _restore(panoptic, image_size, original_size)
        segment_ids = columns["segment_ids"][0]
        areas, boxes = segment_extents(tf.maximum(panoptic, VOID_ID),
                                       tf.shape(segment_ids)[1] + 1)
        area = tf.gather(areas, segment_ids, batch_dims=1)
        y1, x1, y2, x2 = tf.unstack(tf.gather(boxes, segment_ids, batch_dims=1), axis=-1)
        semantic_ids = tf.constant(self.categories.semantic_ids, tf.int32)
        category = columns["category"][0]
        category_ids = tf.where(category >= 0, tf.gather(semantic_ids, tf.maximum(category, 0)),
                                NO_CATEGORY)
        table = compact_segments(area > 0, {
            "segment_ids": (segment_ids, VOID_ID), "category_ids": (category_ids, NO_CATEGORY),
            "is_thing": columns["is_thing"], "detection_scores": columns["detection_score"],
            "ranking_scores": columns["ranking_score"], "areas": (area, 0),
            "boxes": (tf.stack([x1, y1, x2 - x1, y2 - y1], axis=-1), 0.0)})
        return {"panoptic": panoptic, "height": original_size[:, 0],
                "width": original_size[:, 1], **table}


def _instance_masks(detections: dict) -> tuple:
    """What the merge reads of the instances -> (masks, boxes): OANet.detect's RoI masks
    pasted window by window (`mask_ops.RoIMasks`), so that a graph which does not return
    detections["instance_masks"] never builds that [B, D, H, W] canvas; detections holding
    only instance_masks (and maybe their boxes) are merged from those."""
    if "masks" in detections and "boxes" in detections:
        canvas_size = tuple(dims(detections["stuff_probs"])[1:3])
        return RoIMasks(detections["masks"], detections["boxes"], canvas_size), None
    return detections["instance_masks"], detections.get("boxes")


def _restore(panoptic, image_size, original_size):
    """[B, H, W] padded maps -> [B, Hmax, Wmax] at each original size, OUTSIDE_IMAGE beyond."""
    largest = tf.reduce_max(original_size, axis=0)

    def restore(args):
        segments, size, original = args
        restored = to_original_size(segments, size, original)
        padding = tf.stack([[0, largest[0] - original[0]], [0, largest[1] - original[1]]])
        return tf.pad(restored, padding, constant_values=OUTSIDE_IMAGE)

    return tf.map_fn(restore, (panoptic, image_size, original_size),
                     fn_output_signature=tf.TensorSpec([None, None], tf.int32))


def empty_outputs(num_segments: int) -> dict:
    """The outputs of an empty batch (B = 0) with tables of `num_segments` entries."""
    n = num_segments
    return {
        "panoptic": tf.zeros([0, 0, 0], tf.int32),
        "height": tf.zeros([0], tf.int32),
        "width": tf.zeros([0], tf.int32),
        "num_segments": tf.zeros([0], tf.int32),
        "segment_ids": tf.zeros([0, n], tf.int32),
        "category_ids": tf.zeros([0, n], tf.int32),
        "is_thing": tf.zeros([0, n], tf.bool),
        "detection_scores": tf.zeros([0, n], tf.float32),
        "ranking_scores": tf.zeros([0, n], tf.float32),
        "areas": tf.zeros([0, n], tf.int32),
        "boxes": tf.zeros([0, n, 4], tf.float32),
    }


def image_segments(outputs: dict, index: int) -> tuple:
    """Image `index` of one order's outputs (numpy arrays) -> (panoptic [h, w] int64 at its
    original size, COCO segments_info with "score" and "ranking_score")."""
    height, width = int(outputs["height"][index]), int(outputs["width"][index])
    panoptic = outputs["panoptic"][index, :height, :width].astype(np.int64)
    segments = []
    for k in range(int(outputs["num_segments"][index])):
        segments.append({
            "id": int(outputs["segment_ids"][index, k]),
            "category_id": int(outputs["category_ids"][index, k]),
            "area": int(outputs["areas"][index, k]),
            "bbox": [int(round(v)) for v in outputs["boxes"][index, k]],
            "iscrowd": 0,
            "score": float(outputs["detection_scores"][index, k]),
            "ranking_score": float(outputs["ranking_scores"][index, k])})
    return panoptic, segments
