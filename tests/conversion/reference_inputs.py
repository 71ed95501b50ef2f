"""The inputs of the torchvision equivalence check, made alike by the test (TensorFlow) and by
scripts/torchvision_reference.py (torch): numpy and Pillow only."""

from __future__ import annotations

import hashlib
import os

import numpy as np
from PIL import Image

WEIGHTS_SEED = 0
SAMPLE_IMAGES = ("000000142238.jpg", "000000439180.jpg")  # the two real COCO images
SYNTHETIC_NAME = "synthetic"
SYNTHETIC_SEED = 1
SYNTHETIC_SIZE = (300, 500)  # height, width: a landscape image unlike the samples
SYNTHETIC_RECTANGLES = 12
# The fixture's sizes (torchvision's min_size / max_size): small enough for CI on a CPU.
CI_MIN_SIZE, CI_MAX_SIZE = 320, 512
# Masks of the best this many detections of each image are stored (the fixture stays small).
STORED_MASKS = 25
# Mask probabilities are stored as uint16 of p * MASK_QUANTUM (error <= 0.5 / MASK_QUANTUM).
MASK_QUANTUM = 65535
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "torchvision_r50_seed0.npz")


def synthetic_image() -> np.ndarray:
    """uint8 [H, W, 3]: a smooth colour gradient with filled rectangles of random colours."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    height, width = SYNTHETIC_SIZE
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255],
                     axis=-1)
    for _ in range(SYNTHETIC_RECTANGLES):
        y1, y2 = np.sort(rng.integers(0, height, 2))
        x1, x2 = np.sort(rng.integers(0, width, 2))
        image[y1:y2 + 1, x1:x2 + 1] = rng.integers(0, 256, 3)
    return image.astype(np.uint8)


def load_images(sample_dir: str) -> dict:
    """{name: uint8 [H, W, 3] RGB}: the two sample JPEGs (decoded by Pillow on both sides)
    and the synthetic image."""
    images = {}
    for name in SAMPLE_IMAGES:
        with Image.open(os.path.join(sample_dir, "images", name)) as image:
            images[name] = np.asarray(image.convert("RGB"))
    images[SYNTHETIC_NAME] = synthetic_image()
    return images


def digest(array: np.ndarray) -> str:
    """A short hash of an array's bytes: both sides check that they read the same inputs."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
