"""Instance masks: training targets cut out of the ground truth, and pasting predicted RoI
masks back into the image.

Both use continuous pixel coordinates: mask cell j of an S-cell box [x1, x2) covers
[x1 + j * (x2 - x1) / S, x1 + (j + 1) * (x2 - x1) / S), and image pixel x has its centre
at x + 0.5.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from oanet_tf.ops.roi_align import roi_align_flat
from oanet_tf.ops.shapes import dims

MASK_THRESHOLD = 0.5  # Detectron2 binarises the resampled ground truth at 0.5
MASK_TARGET_SAMPLING_RATIO = 2
MIN_PASTE_BOX_SIZE = 1e-6  # empty (padding) boxes get this size and paste nothing


def mask_targets(gt_masks, matched_index, rois, size: int = 28,
                 sampling_ratio: int = MASK_TARGET_SAMPLING_RATIO):
    """Binary training target of each RoI: its matched ground-truth mask inside the RoI.

    The mask is resampled with RoIAlign (aligned=True, spatial scale 1) to size x size,
    each cell averaging sampling_ratio^2 bilinear samples, then thresholded at 0.5, as
    Detectron2's BitMasks.crop_and_resize. Detectron2 adapts the number of samples to the
    RoI (ceil(roi_size / size) per axis); a fixed ratio keeps shapes static.
    Cost: 4 * K * (size * sampling_ratio)^2 gathered pixels per image, plus one boolean
    copy of the masks (GPU gathers take bool but not uint8). Flat indices are int32:
    M * H * W must stay below 2^31.

    gt_masks [B, M, H, W] uint8 (0/1), matched_index [B, K] int32 (into M), rois [B, K, 4]
    -> [B, K, size, size] float32 in {0, 1}.
    """
    num_masks, height, width = gt_masks.shape[1:]
    if None not in (num_masks, height, width) and num_masks * height * width >= 2 ** 31:
        raise ValueError(f"gt_masks of shape {gt_masks.shape} are too large for int32 indices")
    _, _, height, width = dims(gt_masks)
    flat = tf.reshape(tf.not_equal(gt_masks, 0), [tf.shape(gt_masks)[0], -1, 1])
    matched_index = tf.cast(matched_index, tf.int32)
    ones = tf.ones_like(matched_index)
    soft = roi_align_flat(flat, matched_index * (height * width), ones * height, ones * width,
                          rois, 1.0, size, sampling_ratio, aligned=True, dtype=tf.float32)
    return tf.cast(soft[..., 0] >= MASK_THRESHOLD, tf.float32)


def _paste_weights(start, end, num_pixels, mask_size: int, first_pixel=0):
    """Bilinear weights from mask cells to the image pixels along one axis.

    start, end [B, K] (or scalars) box edges -> [B, K, num_pixels, mask_size]: pixel p (from
    first_pixel on) takes the mask at cell coordinate u = (p + 0.5 - start) / (end - start) *
    S - 0.5 with zero padding beyond the outer cells (grid_sample, align_corners=False), and
    nothing when its centre lies outside [start, end].
    """
    centres = tf.cast(tf.range(first_pixel, first_pixel + num_pixels), tf.float32) + 0.5
    start, end = start[..., None], end[..., None]
    length = tf.maximum(end - start, MIN_PASTE_BOX_SIZE)
    u = (centres - start) / length * mask_size - 0.5  # [B, K, P]
    cells = tf.range(mask_size, dtype=tf.float32)
    weights = tf.nn.relu(1.0 - tf.abs(u[..., None] - cells))  # [B, K, P, S]
    inside = tf.cast((centres >= start) & (centres <= end), tf.float32)
    return weights * inside[..., None]


def paste_masks(masks, boxes, image_size):
    """Each RoI mask resampled bilinearly into its box on an image-sized canvas.

    Detectron2's paste_masks_in_image geometry inside the box; exactly 0 at pixels whose
    centre lies outside it (Detectron2's zero padding leaves values below half the border
    value there, so any threshold >= 0.5 gives the same binary masks). The resampling is
    separable: canvas = Wy @ mask @ Wx^T. Memory: the [B, K, H, W] float32 result plus
    O(B * K * (H + W) * S) weights; work: B * K * S * W * (S + H) multiply-adds
    (100 masks of 28 x 28 into 800 x 1344: 0.43 GB result, 3.1 G multiply-adds per image).

    masks [B, K, S, S] probabilities, boxes [B, K, 4] pixels, image_size (H, W) ints or scalar
    tensors -> [B, K, H, W] float32.
    """
    height, width = image_size
    masks = tf.cast(masks, tf.float32)
    mask_size = int(masks.shape[-1])
    if masks.shape[-2] != mask_size:
        raise ValueError(f"masks must be square [B, K, S, S], got {masks.shape}")
    y1, x1, y2, x2 = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    rows = _paste_weights(y1, y2, height, mask_size)  # [B, K, H, S]
    cols = _paste_weights(x1, x2, width, mask_size)  # [B, K, W, S]
    return tf.matmul(rows, tf.matmul(masks, cols, transpose_b=True))


def box_windows(boxes, limits):
    """The pixels a pasted mask can cover (paste_masks gives exactly 0 everywhere else):
    boxes [..., 4] (y1, x1, y2, x2), limits (H, W) or int [..., 2] (height and width of the
    region of each) -> int32 [..., 4] (row0, col0, row1, col1), ends exclusive, a pixel of
    margin each side for rounding, clipped to the limits (empty for NaN boxes)."""
    boxes = tf.cast(boxes, tf.float32)
    limits = tf.cast(tf.stack(limits, axis=-1) if isinstance(limits, (tuple, list)) else limits,
                     tf.int32)
    size = tf.cast(limits, tf.float32)
    low = tf.clip_by_value(tf.floor(boxes[..., :2]) - 1, 0.0, size)
    high = tf.clip_by_value(tf.math.ceil(boxes[..., 2:]) + 1, 0.0, size)
    # NaN casts to the most negative int32: clipping again keeps the windows in range.
    low = tf.clip_by_value(tf.cast(low, tf.int32), 0, limits)
    return tf.concat([low, tf.clip_by_value(tf.cast(high, tf.int32), low, limits)], -1)


def paste_window(mask, box, window):
    """One RoI mask pasted into a window of the canvas: the pixels of paste_masks' output
    there, by the same arithmetic. mask [S, S], box [4] (y1, x1, y2, x2), window [4] int32
    (`box_windows`) -> [row1 - row0, col1 - col0] float32"""
    mask = tf.cast(mask, tf.float32)
    mask_size = int(mask.shape[-1])
    y1, x1, y2, x2 = tf.unstack(tf.cast(box, tf.float32))
    row0, col0, row1, col1 = tf.unstack(window)
    rows = _paste_weights(y1, y2, row1 - row0, mask_size, row0)  # [h, S]
    cols = _paste_weights(x1, x2, col1 - col0, mask_size, col0)  # [w, S]
    return tf.matmul(rows, tf.matmul(mask, cols, transpose_b=True))


class RoIMasks(NamedTuple):
    """RoI mask probabilities with their boxes on an image canvas, pasted on demand: a
    consumer that reads one box window at a time never builds the [B, K, H, W] canvas.
    masks [B, K, S, S], boxes [B, K, 4] (y1, x1, y2, x2) pixels, canvas_size (H, W)."""

    masks: tf.Tensor
    boxes: tf.Tensor
    canvas_size: tuple

    def pasted(self):
        """paste_masks of them all -> [B, K, H, W] float32."""
        return paste_masks(self.masks, self.boxes, self.canvas_size)

    def window(self, image, index, window):
        """Mask `index` of image `image` pasted into `window` [4] int32 (row0, col0, row1,
        col1) -> [row1 - row0, col1 - col0] float32."""
        return paste_window(self.masks[image, index], self.boxes[image, index], window)

    def pixels(self, keep, threshold: float = MASK_THRESHOLD):
        """The pixels of the pasted masks at or above `threshold`, as a list, each mask
        pasted into its box's window alone: what `pasted` followed by tf.where gives, with
        one window in memory at a time. keep [B, K] bool (the others are left out) ->
        [M, 4] int64 (image, instance, row, column) in that order."""
        if threshold <= 0:
            raise ValueError(f"RoIMasks.pixels needs a positive threshold, got {threshold}")
        windows = box_windows(self.boxes, self.canvas_size)  # [B, K, 4]
        todo = tf.cast(tf.where(keep), tf.int32)  # [N, 2] (image, instance)

        def step(i, found):
            image, index = todo[i, 0], todo[i, 1]
            window = windows[image, index]
            inside = tf.where(self.window(image, index, window) >= threshold)  # [m, 2]
            instance = tf.cast(tf.stack([image, index]), tf.int64)
            origin = tf.cast(window[:2], tf.int64)
            return i + 1, found.write(i + 1, tf.concat(
                [tf.zeros_like(inside) + instance, inside + origin], axis=1))

        count = tf.shape(todo)[0]
        # Entry 0 is empty, so that the list concatenates when nothing is kept.
        found = tf.TensorArray(tf.int64, size=count + 1, infer_shape=False,
                               element_shape=[None, 4]).write(0, tf.zeros([0, 4], tf.int64))
        _, found = tf.while_loop(lambda i, _: i < count, step, (tf.constant(0), found))
        return tf.reshape(found.concat(), [-1, 4])
