"""What the benchmarks run on: the default config and category files, HxW sizes, and random
images, instances and JPEGs that are the same in our process and the torchvision peer's.

numpy and PIL only: the peer (its own venv, no TensorFlow) imports this module.
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np

from oanet_tf.data.panoptic_format import IGNORE_LABEL

# The configs/ folder next to the package in the repository.
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs")
R50_CONFIG = os.path.join(CONFIGS_DIR, "coco_r50.yaml")
SYNTHETIC_CONFIG = os.path.join(CONFIGS_DIR, "synthetic.yaml")
SHARED_COCO = "/work/shared/coco"  # local COCO files; nothing is downloaded
DEFAULT_CATEGORIES = os.path.join(SHARED_COCO, "panoptic_coco_categories.json")
DEFAULT_COCO_SAMPLE = os.path.join(SHARED_COCO, "sample")
PIXEL_MAX = 255.0
JPEG_QUALITY = 90
MIN_BOX_SIDE = 16  # random instance boxes: sides between this and half the image side
MAX_BOX_FRACTION = 0.5


def parse_size(text: str) -> tuple:
    """'HEIGHTxWIDTH' -> (height, width), for argparse."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r}: expected HEIGHTxWIDTH, e.g. 512x512") from None
    return height, width


def random_images(seed: int, batch: int, height: int, width: int):
    """[B, H, W, 3] float32 pixels 0..255, the same in both processes."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, PIXEL_MAX, size=(batch, height, width, 3)).astype(np.float32)


def random_instances(seed: int, batch: int, height: int, width: int, count: int,
                     num_things: int):
    """Random rectangular instances, the same in both processes (overlaps included).

    -> boxes [B, N, 4] float32 (y1, x1, y2, x2), classes [B, N] int32 (1..num_things),
    masks [B, N, H, W] uint8 (the filled boxes).
    """
    rng = np.random.default_rng(seed + 1)
    boxes = np.zeros((batch, count, 4), np.float32)
    masks = np.zeros((batch, count, height, width), np.uint8)
    for b in range(batch):
        for i in range(count):
            box_h = int(rng.integers(MIN_BOX_SIDE, max(MIN_BOX_SIDE + 1,
                                                       int(height * MAX_BOX_FRACTION))))
            box_w = int(rng.integers(MIN_BOX_SIDE, max(MIN_BOX_SIDE + 1,
                                                       int(width * MAX_BOX_FRACTION))))
            y1 = int(rng.integers(0, height - box_h))
            x1 = int(rng.integers(0, width - box_w))
            boxes[b, i] = (y1, x1, y1 + box_h, x1 + box_w)
            masks[b, i, y1:y1 + box_h, x1:x1 + box_w] = 1
    classes = rng.integers(1, num_things + 1, size=(batch, count)).astype(np.int32)
    return boxes, classes, masks


def owner_labels(classes, masks):
    """The ownership labels of random_instances' output, later instances on top: classes
    [B, N], masks [B, N, H, W] -> [B, H, W] int32 thing index, IGNORE_LABEL where none."""
    owner = np.full((masks.shape[0], *masks.shape[2:]), IGNORE_LABEL, np.int32)
    for b in range(masks.shape[0]):
        for mask, cls in zip(masks[b], classes[b]):
            owner[b][mask > 0] = cls - 1
    return owner


def encoded_jpeg(seed: int, height: int, width: int) -> bytes:
    """A JPEG of random pixels (PIL, the same bytes in both processes)."""
    from PIL import Image

    buffer = io.BytesIO()
    pixels = random_images(seed, 1, height, width)[0].astype("uint8")
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
