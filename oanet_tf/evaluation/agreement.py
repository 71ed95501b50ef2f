"""How far one panoptic prediction of an image departs from another of the same image.

For comparing two ways of running one model (bfloat16 against float32, a SavedModel against
the evaluation path): no ground truth, only the reference prediction. Two numbers per image:
the share of pixels given the same category (void, 0, counts as a category), and, for each
segment of the reference, its best IoU with a segment of the same category in the other.
Plain numpy; segments are COCO `segments_info` entries (`id`, `category_id`).
"""

from __future__ import annotations

import numpy as np

NO_CATEGORY = 0  # pixels of no segment


def category_map(panoptic: np.ndarray, segments) -> np.ndarray:
    """[H, W] segment ids -> [H, W] category ids (NO_CATEGORY outside every segment)."""
    out = np.full(panoptic.shape, NO_CATEGORY, np.int64)
    for segment in segments:
        out[panoptic == segment["id"]] = segment["category_id"]
    return out


def prediction_agreement(reference, other) -> dict:
    """reference, other: (panoptic [H, W] segment ids, segments_info) of one image ->
    {"pixels": share of pixels of the same category, "segment_ious": [best IoU of each
    reference segment with a segment of its category in `other`, 0 when none]}."""
    (ref_map, ref_segments), (other_map, other_segments) = reference, other
    if ref_map.shape != other_map.shape:
        raise ValueError(f"panoptic maps of different sizes: {ref_map.shape} vs {other_map.shape}")
    same = category_map(ref_map, ref_segments) == category_map(other_map, other_segments)
    ious = []
    for segment in ref_segments:
        mask = ref_map == segment["id"]
        best = 0.0
        for candidate in other_segments:
            if candidate["category_id"] != segment["category_id"]:
                continue
            other_mask = other_map == candidate["id"]
            union = np.count_nonzero(mask | other_mask)
            if union:
                best = max(best, np.count_nonzero(mask & other_mask) / union)
        ious.append(best)
    return {"pixels": float(same.mean()) if same.size else 1.0, "segment_ious": ious}
