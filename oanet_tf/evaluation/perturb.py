"""A plausible prediction set made from ground truth, for testing and benchmarking PQ.

Every ground-truth segment (crowd included, as a plain prediction) is kept, shifted, eroded or
dilated, sometimes given another category or dropped; one segment per image is split in two,
and a few spurious segments are added. The result exercises every PQ rule: matches above and
below IoU 0.5, false positives and negatives, predictions on void and on crowd regions.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from oanet_tf.data.panoptic_format import ID_BASE, VOID_ID, id_to_rgb
from oanet_tf.data.panoptic_format import annotations_by_image, load_panoptic_json, read_id_png
from oanet_tf.fileio import atomic_open, write_json

DROP_PROBABILITY = 0.1
SWAP_CATEGORY_PROBABILITY = 0.1
# Shape change applied to a kept segment, with its probability.
SHAPE_CHANGES = (("keep", 0.3), ("shift", 0.25), ("erode", 0.2), ("dilate", 0.25))
MAX_SHIFT_FRACTION = 0.05  # of the image's shorter side
MAX_MORPHOLOGY_RADIUS = 3
MAX_SPURIOUS = 2
SPURIOUS_SIZE_FRACTION = (0.05, 0.3)  # side of a spurious box, as a fraction of the image side


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """[H, W] bool mask grown by a (2r+1)^2 square (separable maximum filter)."""
    out = mask
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)])
        size = out.shape[axis]
        grown = np.zeros_like(out)
        for offset in range(2 * radius + 1):
            grown |= np.take(padded, np.arange(offset, offset + size), axis=axis)
        out = grown
    return out


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    return ~_dilate(~mask, radius)


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """[H, W] mask moved by (dy, dx) pixels; what leaves the image is lost."""
    height, width = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        mask[max(-dy, 0):height - max(dy, 0), max(-dx, 0):width - max(dx, 0)]
    return out


def _change_shape(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    names = [name for name, _ in SHAPE_CHANGES]
    change = rng.choice(names, p=[p for _, p in SHAPE_CHANGES])
    if change == "shift":
        limit = max(1, int(MAX_SHIFT_FRACTION * min(mask.shape)))
        return _shift(mask, int(rng.integers(-limit, limit + 1)),
                      int(rng.integers(-limit, limit + 1)))
    if change == "erode":
        return _erode(mask, int(rng.integers(1, MAX_MORPHOLOGY_RADIUS + 1)))
    if change == "dilate":
        return _dilate(mask, int(rng.integers(1, MAX_MORPHOLOGY_RADIUS + 1)))
    return mask


def _split(mask: np.ndarray) -> tuple:
    """Two halves of a mask, cut at the middle column of its bounding box."""
    cols = np.flatnonzero(mask.any(axis=0))
    middle = (cols[0] + cols[-1] + 1) // 2
    left = mask.copy()
    left[:, middle:] = False
    return left, mask & ~left


def _spurious_box(shape, rng: np.random.Generator) -> np.ndarray:
    height, width = shape
    low, high = SPURIOUS_SIZE_FRACTION
    box_h = max(1, int(rng.uniform(low, high) * height))
    box_w = max(1, int(rng.uniform(low, high) * width))
    top = int(rng.integers(0, height - box_h + 1))
    left = int(rng.integers(0, width - box_w + 1))
    mask = np.zeros(shape, bool)
    mask[top:top + box_h, left:left + box_w] = True
    return mask


def perturb_image(gt_ids: np.ndarray, segments: list, category_ids: list,
                  rng: np.random.Generator) -> tuple:
    """Perturbed ([H, W] int64 id map, segments_info) of one ground-truth image."""
    painted = []  # (mask, category_id), painted in order: later ones cover earlier ones
    for seg in segments:
        if rng.random() < DROP_PROBABILITY:
            continue
        category = seg["category_id"]
        if rng.random() < SWAP_CATEGORY_PROBABILITY:
            category = int(rng.choice([c for c in category_ids if c != category] or [category]))
        painted.append((_change_shape(gt_ids == seg["id"], rng), category))
    order = rng.permutation(len(painted))
    painted = [painted[i] for i in order]
    splittable = [i for i, (mask, _) in enumerate(painted) if mask.any()]
    if splittable:
        index = int(rng.choice(splittable))
        mask, category = painted[index]
        left, right = _split(mask)
        painted[index:index + 1] = [(left, category), (right, category)]
    for _ in range(int(rng.integers(0, MAX_SPURIOUS + 1))):
        painted.append((_spurious_box(gt_ids.shape, rng), int(rng.choice(category_ids))))

    new_ids = 1 + rng.choice(ID_BASE ** 3 - 1, size=len(painted), replace=False)
    out = np.full(gt_ids.shape, VOID_ID, np.int64)
    for (mask, _), segment_id in zip(painted, new_ids):
        out[mask] = segment_id
    info = []
    for (_, category), segment_id in zip(painted, new_ids):
        where = out == segment_id
        if not where.any():
            continue
        rows, cols = np.flatnonzero(where.any(axis=1)), np.flatnonzero(where.any(axis=0))
        info.append({"id": int(segment_id), "category_id": int(category),
                     "area": int(where.sum()),
                     "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                              int(rows[-1] - rows[0] + 1)],
                     "iscrowd": 0})
    return out, info


def perturb_panoptic(gt_json: str, gt_dir: str, out_json: str, out_dir: str,
                     seed: int = 0) -> str:
    """Write a perturbed prediction set (COCO panoptic JSON + PNGs) of a ground-truth set;
    deterministic in `seed` (each image has its own random stream). Returns `out_json`."""
    gt = load_panoptic_json(gt_json, "ground-truth JSON")
    category_ids = sorted(c["id"] for c in gt.get("categories", []))
    annotations = []
    for index, (image_id, ann) in enumerate(annotations_by_image(gt, gt_json).items()):
        rng = np.random.default_rng([seed, index])
        gt_ids = read_id_png(os.path.join(gt_dir, ann["file_name"]), "ground-truth")
        pred_ids, info = perturb_image(gt_ids, ann["segments_info"], category_ids, rng)
        with atomic_open(os.path.join(out_dir, ann["file_name"]), "wb") as f:
            Image.fromarray(id_to_rgb(pred_ids)).save(f, format="PNG")
        annotations.append({"image_id": image_id, "file_name": ann["file_name"],
                            "segments_info": info})
    write_json(out_json, {"images": gt.get("images", []), "annotations": annotations,
                          "categories": gt.get("categories", [])})
    return out_json
