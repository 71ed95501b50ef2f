"""torchvision's Mask R-CNN and its conversion give the same detections (issue 15).

The fixture holds what torchvision 0.29 computed with the seeded weights of
`torchvision_state.seeded_state_dict(WEIGHTS_SEED)` on the two real COCO sample images and a
synthetic one (scripts/torchvision_reference.py, min_size 320 / max_size 512); this test
converts the same weights (no torch needed) and runs the converted model on the same pixels.

Tolerances: both sides compute in float32 with other summation orders (oneDNN vs TensorFlow's
Eigen convolutions, crop_and_resize vs torchvision's roi_align). A 3x3x256 convolution sums
2304 products: its relative rounding is ~sqrt(2304) * 6e-8 ~ 3e-6 per layer, over ~60 layers
~1e-5 relative at the heads. Scores are softmax probabilities below 1 (error ~1e-5 relative
-> < 1e-5 absolute; TOLERANCE 1e-4 leaves 10x). Boxes are decoded in pixels up to ~512 (1333
at full size): 1e-5 relative of a box side of hundreds of pixels is ~5e-3 px; the 0.01 px
tolerance holds that. Mask probabilities have the same ~1e-5 relative error plus the fixture's
uint16 quantisation (7.6e-6): 1e-3 leaves a wide margin. Measured (this machine): boxes
6e-5 px, scores 1.3e-6, masks 1.4e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conversion import reference_inputs as ref

BOX_TOLERANCE_PX = 0.01
SCORE_TOLERANCE = 1e-4
MASK_TOLERANCE = 1e-3
CHECKSUM_RTOL = 1e-6  # float32 sums of the same weights in two numpy versions


@pytest.fixture(scope="module")
def fixture():
    with np.load(ref.FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def sample_images(coco_sample_dir):
    return ref.load_images(coco_sample_dir)


def torchvision_config(fixture, overrides=()):
    from oanet_tf.config import load_config

    return load_config("configs/coco_r50_torchvision.yaml", [
        f"data.short_side={int(fixture['min_size'])}",
        f"data.max_side={int(fixture['max_size'])}", *overrides])


def converted_model(config, categories):
    from oanet_tf.conversion import torchvision as conversion
    from oanet_tf.conversion import torchvision_state
    from oanet_tf.modeling.builder import build_oanet

    model = build_oanet(config.model, config.train, categories, load_backbone_weights=False)
    conversion.convert_into(model, torchvision_state.seeded_state_dict(ref.WEIGHTS_SEED),
                            categories)
    return model


def run_model(model, config, categories, images) -> list:
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


def differences(fixture, results) -> list:
    """Per image: (name, problems, max box px, max score, max mask probability)."""
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
        stored = fixture[f"i{i}_masks_u16"].astype(np.float32) / ref.MASK_QUANTUM
        mask = float(np.abs(got["masks"][:len(stored)] - stored).max(initial=0))
        for what, value, limit in (("box px", box, BOX_TOLERANCE_PX),
                                   ("score", score, SCORE_TOLERANCE),
                                   ("mask", mask, MASK_TOLERANCE)):
            if value > limit:
                problems.append(f"{what} differs by {value:.3g} > {limit:g}")
        rows.append((name, problems, box, score, mask))
    return rows


@pytest.fixture(scope="module")
def categories(coco_sample_dir):
    import os

    from oanet_tf.data.panoptic_format import CategoryMap
    from oanet_tf.fileio import read_json

    return CategoryMap.from_categories(
        read_json(os.path.join(coco_sample_dir, "panoptic.json"))["categories"])


def test_inputs_and_weights_match_the_fixture(fixture, sample_images):
    from oanet_tf.conversion import torchvision_state

    for i, image in enumerate(sample_images.values()):
        assert ref.digest(image) == str(fixture[f"i{i}_digest"]), "another decoding"
    state = torchvision_state.seeded_state_dict(ref.WEIGHTS_SEED)
    checksum = sum(float(v.sum()) for v in state.values())
    np.testing.assert_allclose(checksum, float(fixture["weights_checksum"]), rtol=CHECKSUM_RTOL)


def test_converted_model_gives_torchvisions_detections(fixture, sample_images, categories):
    config = torchvision_config(fixture)
    results = run_model(converted_model(config, categories), config, categories, sample_images)
    rows = differences(fixture, results)
    for name, problems, box, score, mask in rows:
        print(f"{name}: boxes {box} px, scores {score}, masks {mask}")
    assert all(len(fixture[f"i{i}_labels"]) > 0 for i in range(len(rows)))
    assert not [row for row in rows if row[1]], rows



# One switch of configs/coco_r50_torchvision.yaml flipped back to its default: the check above
# must notice (the others are shown flipped in the README's table, by the same functions).
FLIPPED = "model.roi_align_aligned=true"


def test_a_flipped_switch_breaks_the_equivalence(fixture, sample_images, categories):
    config = torchvision_config(fixture, [FLIPPED])
    synthetic = {ref.SYNTHETIC_NAME: sample_images[ref.SYNTHETIC_NAME]}
    index = list(sample_images).index(ref.SYNTHETIC_NAME)
    results = run_model(converted_model(config, categories), config, categories, synthetic)
    subset = {key: value for key, value in fixture.items() if not key.startswith("i")}
    subset.update({key.replace(f"i{index}_", "i0_"): value for key, value in fixture.items()
                   if key.startswith(f"i{index}_")})
    subset["names"] = np.asarray([ref.SYNTHETIC_NAME])
    (_, problems, *_), = differences(subset, results)
    assert problems, f"{FLIPPED} went unnoticed"
