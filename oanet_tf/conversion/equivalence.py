"""The side-by-side check of a converted torchvision Mask R-CNN against torchvision itself.

Its inputs are made alike by both sides with numpy and Pillow only (torchvision's side,
scripts/torchvision_reference.py, has no TensorFlow): seeded weights
(`torchvision_state.seeded_state_dict(WEIGHTS_SEED)`), the two real COCO sample images and a
synthetic one. The reference run stores torchvision's detections in a fixture (.npz); the
functions below run the converted model on the same pixels and compare.
"""

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
# The CI fixture's sizes (torchvision's min_size / max_size): small enough for a CPU.
CI_MIN_SIZE, CI_MAX_SIZE = 320, 512
# Masks of the best this many detections of each image are stored (the fixture stays small).
STORED_MASKS = 25
# Mask probabilities are stored as uint16 of p * MASK_QUANTUM (error <= 0.5 / MASK_QUANTUM).
MASK_QUANTUM = 65535
# What the check allows (why: tests/conversion/test_torchvision_equivalence.py's docstring).
BOX_TOLERANCE_PX = 0.01
SCORE_TOLERANCE = 1e-4
MASK_TOLERANCE = 1e-3


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


def read_fixture(path: str) -> dict:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def fixture_config(config_path: str, fixture: dict, overrides=()):
    """The config at `config_path` resized as the fixture's torchvision run was."""
    from oanet_tf.config import load_config

    return load_config(config_path, [f"data.short_side={int(fixture['min_size'])}",
                                     f"data.max_side={int(fixture['max_size'])}", *overrides])


def converted_model(config, categories, state: dict | None = None):
    """The OANet model of `config` with torchvision weights `state` (default: the seeded
    ones) converted into it."""
    from oanet_tf.conversion import torchvision as conversion
    from oanet_tf.conversion import torchvision_state
    from oanet_tf.modeling.builder import build_oanet

    model = build_oanet(config.model, config.train, categories, load_backbone_weights=False)
    if state is None:
        state = torchvision_state.seeded_state_dict(WEIGHTS_SEED)
    conversion.convert_into(model, state, categories)
    return model


def run_model(model, config, categories, images: dict) -> list:
    """Each image's detections as torchvision reports them: size (h, w), boxes (x1, y1, x2,
    y2 resized pixels), scores, labels (COCO ids), masks [n, 28, 28]."""
    import tensorflow as tf

    from oanet_tf.inference.image_predictor import ImageInputs

    inputs = ImageInputs(config.data, config.export.max_image_side)
    thing_ids = np.asarray(categories.thing_ids)
    results = []
    for image in images.values():
        pixels, size, _ = inputs.from_pixels(tf.constant(image[np.newaxis]))
        found = model.detect(pixels, size)
        n = int(found["num_detections"][0])
        results.append({"size": size.numpy()[0],
                        "boxes": found["boxes"][0, :n].numpy()[:, [1, 0, 3, 2]],
                        "scores": found["scores"][0, :n].numpy(),
                        "labels": thing_ids[found["classes"][0, :n].numpy() - 1],
                        "masks": found["masks"][0, :n].numpy()})
    return results


def _stored_masks(fixture: dict, i: int) -> np.ndarray:
    if f"i{i}_masks" in fixture:  # a side-by-side run's fixture: every mask, float32
        return fixture[f"i{i}_masks"]
    return fixture[f"i{i}_masks_u16"].astype(np.float32) / MASK_QUANTUM


def differences(fixture: dict, results: list) -> list:
    """Per image: (name, problems, max box px, max score, max mask probability); problems is
    empty when the image passes the check."""
    rows = []
    for i, got in enumerate(results):
        name = str(fixture["names"][i])
        problems = []
        if tuple(got["size"]) != tuple(fixture[f"i{i}_size"]):
            problems.append(f"resized {tuple(got['size'])} != {tuple(fixture[f'i{i}_size'])}")
        labels = fixture[f"i{i}_labels"]
        if len(got["labels"]) != len(labels) or (got["labels"] != labels).any():
            problems.append(f"{len(got['labels'])} detections {got['labels'][:8]}... != "
                            f"torchvision's {len(labels)} {labels[:8]}...")
            rows.append((name, problems, None, None, None))
            continue
        box = float(np.abs(got["boxes"] - fixture[f"i{i}_boxes"]).max(initial=0))
        score = float(np.abs(got["scores"] - fixture[f"i{i}_scores"]).max(initial=0))
        stored = _stored_masks(fixture, i)
        mask = float(np.abs(got["masks"][:len(stored)] - stored).max(initial=0))
        for what, value, limit in (("box px", box, BOX_TOLERANCE_PX),
                                   ("score", score, SCORE_TOLERANCE),
                                   ("mask", mask, MASK_TOLERANCE)):
            if value > limit:
                problems.append(f"{what} differs by {value:.3g} > {limit:g}")
        rows.append((name, problems, box, score, mask))
    return rows
