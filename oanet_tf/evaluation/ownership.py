"""Overlap ownership accuracy: how often the prediction gives contested pixels to the right owner.

PQ hardly moves when a tie is painted over by the person wearing it; this measure looks only
at such pixels. Over every pair of overlapping ground-truth instances (whole instance masks,
from the instances JSON), each overlap pixel (counted once, however many instances cover it)
is scored when the ground-truth panoptic PNG gives it to one of the instances covering it (its
owner). It is correct when the predicted segment at that pixel is matched to the owner's
panoptic segment; matching is PQ's (same category, IoU > 0.5 with void removed from the union,
crowd never matched, visible GT segments). Instances are tied to panoptic segments by category
and largest overlap (`instance_segments`).

Categories are dataset category ids throughout; segments are COCO `segments_info` entries
(`id`, `category_id`, optional `iscrowd`). Plain numpy: no TensorFlow here.
"""

from __future__ import annotations

import numpy as np

from oanet_tf.data.panoptic_format import VOID_ID

MATCH_IOU = 0.5  # a prediction matches a GT segment at IoU above this (as in PQ)
MIN_OVERLAP_COUNT = 2  # a pixel covered by this many GT instances or more is an overlap pixel


def instance_segments(instance_masks, instance_categories, panoptic_ids, segments) -> np.ndarray:
    """The GT panoptic segment of each GT instance.

    instance_masks [n, H, W] bool, instance_categories [n], panoptic_ids [H, W], segments
    (segments_info of the PNG) -> [n] int64: the segment of the same category that overlaps
    the instance's mask most (ties: the lower id), VOID_ID when none overlaps it.
    """
    masks, panoptic_ids = _check_masks(instance_masks, panoptic_ids)
    categories = np.asarray(instance_categories).reshape(-1)
    if len(categories) != len(masks):
        raise ValueError(f"{len(masks)} instance masks but {len(categories)} categories")
    category_of = _segment_table(segments, panoptic_ids, "GT")[0]
    result = np.full(len(masks), VOID_ID, np.int64)
    for i, (mask, category) in enumerate(zip(masks, categories)):
        ids, counts = np.unique(panoptic_ids[mask], return_counts=True)
        same = np.array([category_of.get(int(s)) == category for s in ids], bool)
        if same.any():
            result[i] = ids[same][np.argmax(counts[same])]
    return result


def match_segments(gt_ids, gt_segments, pred_ids, pred_segments) -> dict:
    """PQ matching of one image: {predicted segment id: matched GT segment id}.

    gt_ids, pred_ids [H, W] segment ids; a prediction matches the GT segment of its category
    with IoU > MATCH_IOU, where the union leaves out the prediction's pixels on GT void;
    crowd GT segments match nothing. Unmatched predictions are absent from the result.
    """
    gt_ids = np.asarray(gt_ids, np.int64)
    pred_ids = np.asarray(pred_ids, np.int64)
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"GT panoptic map {gt_ids.shape} and prediction {pred_ids.shape} "
                         f"differ in size")
    gt_category, gt_crowd = _segment_table(gt_segments, gt_ids, "GT")
    pred_category, _ = _segment_table(pred_segments, pred_ids, "predicted")
    gt_area = dict(zip(*(v.tolist() for v in np.unique(gt_ids, return_counts=True))))
    pred_area = dict(zip(*(v.tolist() for v in np.unique(pred_ids, return_counts=True))))
    base = int(max(gt_ids.max(initial=0), pred_ids.max(initial=0))) + 1
    pairs, counts = np.unique(gt_ids * base + pred_ids, return_counts=True)
    on_void = {int(p % base): int(c) for p, c in zip(pairs, counts) if p // base == VOID_ID}
    matches = {}
    for pair, intersection in zip(pairs.tolist(), counts.tolist()):
        gt_id, pred_id = divmod(pair, base)
        if gt_id == VOID_ID or pred_id == VOID_ID or gt_crowd[gt_id]:
            continue
        if gt_category[gt_id] != pred_category[pred_id]:
            continue
        union = (gt_area[gt_id] + pred_area[pred_id] - intersection
                 - on_void.get(pred_id, 0))
        if intersection / union > MATCH_IOU:
            matches[pred_id] = gt_id
    return matches


class OwnershipAccumulator:
    """Streaming overlap ownership accuracy over a dataset, one `update` per image."""

    def __init__(self):
        self.overlap_pixels = 0  # overlap pixels with an owner among their instances
        self.correct_pixels = 0
        self.unowned_pixels = 0  # overlap pixels the GT gives to none of their instances
        self.pairs = 0  # instance pairs sharing at least one scored pixel

    def update(self, gt_instance_masks, gt_instance_categories, gt_panoptic_ids, gt_segments,
               pred_panoptic_ids, pred_segments):
        """Score one image.

        gt_instance_masks [n, H, W] bool (whole, overlapping instance masks),
        gt_instance_categories [n] dataset category ids, gt_panoptic_ids / pred_panoptic_ids
        [H, W] segment ids, gt_segments / pred_segments their segments_info lists.
        """
        masks, gt_ids = _check_masks(gt_instance_masks, gt_panoptic_ids)
        pred_ids = np.asarray(pred_panoptic_ids, np.int64)
        owner_segment = instance_segments(masks, gt_instance_categories, gt_ids, gt_segments)
        matches = match_segments(gt_ids, gt_segments, pred_ids, pred_segments)
        overlap = masks.sum(axis=0) >= MIN_OVERLAP_COUNT
        if not overlap.any():
            return
        _, gt_crowd = _segment_table(gt_segments, gt_ids, "GT")
        covers = masks[:, overlap]  # [n, P]
        owner = gt_ids[overlap]  # [P]
        crowd_owner = np.array([gt_crowd.get(int(s), False) for s in owner_segment], bool)
        is_owner = ((owner[np.newaxis, :] == owner_segment[:, np.newaxis])
                    & (owner_segment != VOID_ID)[:, np.newaxis]
                    & ~crowd_owner[:, np.newaxis])
        scored = np.any(covers & is_owner, axis=0)
        predicted = pred_ids[overlap][scored]
        matched = np.array([matches.get(int(p), VOID_ID) for p in predicted], np.int64)
        self.overlap_pixels += int(scored.sum())
        self.unowned_pixels += int((~scored).sum())
        self.correct_pixels += int(np.sum(matched == owner[scored]))
        shared = covers[:, scored].astype(np.int64)
        co_cover = shared @ shared.T
        self.pairs += int(np.sum(np.triu(co_cover, k=1) > 0))

    def result(self) -> dict:
        """accuracy (NaN when no overlap pixel was scored), overlap_pixels, correct_pixels,
        unowned_pixels, pairs."""
        accuracy = (self.correct_pixels / self.overlap_pixels if self.overlap_pixels
                    else float("nan"))
        return {"accuracy": accuracy, "overlap_pixels": self.overlap_pixels,
                "correct_pixels": self.correct_pixels, "unowned_pixels": self.unowned_pixels,
                "pairs": self.pairs}


def _check_masks(instance_masks, panoptic_ids):
    panoptic_ids = np.asarray(panoptic_ids, np.int64)
    masks = np.asarray(instance_masks, bool)
    if panoptic_ids.ndim != 2:
        raise ValueError(f"panoptic ids must be [H, W], got shape {panoptic_ids.shape}")
    if masks.size == 0:  # no instances
        masks = masks.reshape((0,) + panoptic_ids.shape)
    if masks.ndim != 3 or masks.shape[1:] != panoptic_ids.shape:
        raise ValueError(f"instance masks must be [n, H, W] with H, W = "
                         f"{panoptic_ids.shape}, got shape {masks.shape}")
    return masks, panoptic_ids


def _segment_table(segments, panoptic_ids, what: str):
    """({segment id: category id}, {segment id: is crowd}); every non-void id of the map must
    be listed."""
    category, crowd = {}, {}
    for segment in segments:
        category[int(segment["id"])] = segment["category_id"]
        crowd[int(segment["id"])] = bool(segment.get("iscrowd", 0))
    unknown = sorted(set(np.unique(panoptic_ids).tolist()) - set(category) - {VOID_ID})
    if unknown:
        raise ValueError(f"{what} panoptic map has segment ids {unknown[:5]} that its "
                         f"segments_info does not list")
    return category, crowd
