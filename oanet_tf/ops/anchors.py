"""Anchor grids of a feature pyramid (Faster R-CNN / FPN), as graph constants.

Level l has stride 2^l and one anchor size; each location carries one anchor per aspect
ratio (height / width), all of area size^2, centred at ((x + 0.5) * stride, (y + 0.5) *
stride) in continuous pixel coordinates. The grid of level l is ceil(H / 2^l) x
ceil(W / 2^l), the size of the FPN map of that level.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

CENTER_OFFSET = 0.5  # anchors sit at pixel-cell centres of the feature map


def num_anchors_per_location(aspect_ratios) -> int:
    """Anchors at each feature-map location: one per aspect ratio (one size per level)."""
    return len(aspect_ratios)


def level_grid_size(image_size, level: int) -> tuple[int, int]:
    """(rows, cols) of the feature map of `level` (stride 2^level) for an image size."""
    stride = 2 ** level
    return math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride)


def _level_anchors(image_size, level: int, size: float, aspect_ratios) -> np.ndarray:
    """[rows * cols * A, 4] float32 anchors of one level, row-major (y, x), then ratio."""
    stride = 2 ** level
    rows, cols = level_grid_size(image_size, level)
    ratios = np.asarray(aspect_ratios, dtype=np.float64)
    heights = size * np.sqrt(ratios)  # h / w = ratio and h * w = size^2
    widths = size / np.sqrt(ratios)
    cy = (np.arange(rows, dtype=np.float64) + CENTER_OFFSET) * stride
    cx = (np.arange(cols, dtype=np.float64) + CENTER_OFFSET) * stride
    cy, cx = np.meshgrid(cy, cx, indexing="ij")  # [rows, cols]
    cy, cx = cy[..., None], cx[..., None]  # [rows, cols, 1] against [A]
    anchors = np.stack([cy - heights / 2, cx - widths / 2, cy + heights / 2, cx + widths / 2],
                       axis=-1)  # [rows, cols, A, 4]
    return anchors.reshape(-1, 4).astype(np.float32)


def multilevel_anchors(image_size, min_level: int, max_level: int, sizes,
                       aspect_ratios) -> list[tf.Tensor]:
    """Anchors of levels min_level..max_level, one size per level.

    image_size (H, W) -> list of [ceil(H/2^l) * ceil(W/2^l) * A, 4] float32, A = len(ratios).
    """
    levels = range(min_level, max_level + 1)
    if len(sizes) != len(levels):
        raise ValueError(f"need one anchor size per level {min_level}..{max_level} "
                         f"({len(levels)}), got {len(sizes)} sizes: {list(sizes)}")
    if not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError(f"aspect ratios must be positive and non-empty, got {aspect_ratios}")
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"image_size must be (height, width) > 0, got {image_size}")
    return [tf.constant(_level_anchors(image_size, level, float(size), aspect_ratios))
            for level, size in zip(levels, sizes)]
