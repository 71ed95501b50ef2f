"""Anchor grids of a feature pyramid (Faster R-CNN / FPN) for any padded image size.

Level l has stride 2^l and one anchor size; each location carries one anchor per aspect
ratio (height / width), all of area size^2, centred at ((x + offset) * stride, (y + offset) *
stride) in continuous pixel coordinates (offset 0.5 by default, 0 in torchvision). The grid of
level l is ceil(H / 2^l) x ceil(W / 2^l), the size of the FPN map of that level.

`cells="torchvision"` reproduces torchvision's AnchorGenerator: each cell's half sides are
computed in float32 and rounded to integers, and a level's stride is the padded size // its
grid size per axis (not 2^l: a P6 grid of 13 rows over 800 pixels has stride 61).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from oanet_tf.config import ANCHOR_CELLS, EXACT_CELLS, TORCHVISION_CELLS

CENTER_OFFSET = 0.5  # anchors sit at pixel-cell centres of the feature map


def num_anchors_per_location(aspect_ratios) -> int:
    """Anchors at each feature-map location: one per aspect ratio (one size per level)."""
    return len(aspect_ratios)


def level_grid_size(image_size, level: int) -> tuple:
    """(rows, cols) of the feature map of `level` (stride 2^level) for an image size (ints, or
    scalar tensors when the size is only known when the graph runs)."""
    stride = 2 ** level
    return -(-image_size[0] // stride), -(-image_size[1] // stride)


def _half_sides(size: float, aspect_ratios, cells: str) -> np.ndarray:
    """[A, 2] half height and width of each cell: h / w = ratio, h * w = size^2."""
    if cells == TORCHVISION_CELLS:  # float32 arithmetic, then rounded (half to even)
        h_ratio = np.sqrt(np.asarray(aspect_ratios, np.float32))
        w_ratio = np.float32(1) / h_ratio
        sides = np.stack([h_ratio * np.float32(size), w_ratio * np.float32(size)], axis=-1)
        return np.round(sides / np.float32(2))
    ratios = np.asarray(aspect_ratios, dtype=np.float64)
    return np.stack([size * np.sqrt(ratios), size / np.sqrt(ratios)], axis=-1) / 2


def _level_anchors(image_size, level: int, size: float, aspect_ratios,
                   offset: float = CENTER_OFFSET, cells: str = EXACT_CELLS):
    """[rows * cols * A, 4] float32 anchors of one level, row-major (y, x), then ratio."""
    rows, cols = level_grid_size(image_size, level)
    if cells == TORCHVISION_CELLS:
        stride_y = tf.cast(image_size[0] // rows, tf.float32)
        stride_x = tf.cast(image_size[1] // cols, tf.float32)
    else:
        stride_y = stride_x = float(2 ** level)
    half = tf.constant(_half_sides(size, aspect_ratios, cells), tf.float32)  # [A, 2]
    cy = (tf.range(rows, dtype=tf.float32) + offset) * stride_y
    cx = (tf.range(cols, dtype=tf.float32) + offset) * stride_x
    cy, cx = tf.meshgrid(cy, cx, indexing="ij")  # [rows, cols]
    centres = tf.stack([cy, cx], axis=-1)[:, :, tf.newaxis, :]  # [rows, cols, 1, 2]
    anchors = tf.concat([centres - half, centres + half], axis=-1)  # [rows, cols, A, 4]
    return tf.reshape(anchors, [-1, 4])


def multilevel_anchors(image_size, min_level: int, max_level: int, sizes,
                       aspect_ratios, offset: float = CENTER_OFFSET,
                       cells: str = EXACT_CELLS) -> list:
    """Anchors of levels min_level..max_level, one size per level; `offset` and `cells` as in
    the module docstring.

    image_size (H, W) ints or scalar tensors -> list of [ceil(H/2^l) * ceil(W/2^l) * A, 4]
    float32, A = len(ratios) (static shapes when the size is).
    """
    levels = range(min_level, max_level + 1)
    if len(sizes) != len(levels):
        raise ValueError(f"need one anchor size per level {min_level}..{max_level} "
                         f"({len(levels)}), got {len(sizes)} sizes: {list(sizes)}")
    if not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError(f"aspect ratios must be positive and non-empty, got {aspect_ratios}")
    if len(image_size) != 2 or any(isinstance(s, int) and s <= 0 for s in image_size):
        raise ValueError(f"image_size must be (height, width) > 0, got {image_size}")
    if cells not in ANCHOR_CELLS:
        raise ValueError(f"anchor cells must be one of {ANCHOR_CELLS}, got {cells!r}")
    return [_level_anchors(image_size, level, float(size), aspect_ratios, offset, cells)
            for level, size in zip(levels, sizes)]
