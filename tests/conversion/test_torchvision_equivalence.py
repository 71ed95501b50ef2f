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
uint16 quantisation (7.6e-6): 1e-3 leaves a wide margin (the tolerances are in
oanet_tf.conversion.equivalence). Measured (this machine): boxes 6e-5 px, scores 1.3e-6,
masks 1.4e-5.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from oanet_tf.conversion import equivalence as check

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "torchvision_r50_seed0.npz")
CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs",
                      "coco_r50_torchvision.yaml")
CHECKSUM_RTOL = 1e-6  # float32 sums of the same weights in two numpy versions


@pytest.fixture(scope="module")
def fixture():
    return check.read_fixture(FIXTURE)


@pytest.fixture(scope="module")
def sample_images(coco_sample_dir):
    return check.load_images(coco_sample_dir)


def torchvision_config(fixture, overrides=()):
    return check.fixture_config(CONFIG, fixture, overrides)


@pytest.fixture(scope="module")
def categories(coco_sample_dir):
    from oanet_tf.data.panoptic_format import CategoryMap
    from oanet_tf.fileio import read_json

    return CategoryMap.from_categories(
        read_json(os.path.join(coco_sample_dir, "panoptic.json"))["categories"])


def test_inputs_and_weights_match_the_fixture(fixture, sample_images):
    from oanet_tf.conversion import torchvision_state

    for i, image in enumerate(sample_images.values()):
        assert check.digest(image) == str(fixture[f"i{i}_digest"]), "another decoding"
    state = torchvision_state.seeded_state_dict(check.WEIGHTS_SEED)
    checksum = sum(float(v.sum()) for v in state.values())
    np.testing.assert_allclose(checksum, float(fixture["weights_checksum"]), rtol=CHECKSUM_RTOL)


def test_converted_model_gives_torchvisions_detections(fixture, sample_images, categories):
    config = torchvision_config(fixture)
    results = check.run_model(check.converted_model(config, categories), config, categories,
                              sample_images)
    rows = check.differences(fixture, results)
    for name, problems, box, score, mask in rows:
        print(f"{name}: boxes {box} px, scores {score}, masks {mask}")
    assert all(len(fixture[f"i{i}_labels"]) > 0 for i in range(len(rows)))
    assert not [row for row in rows if row[1]], rows


# One switch of configs/coco_r50_torchvision.yaml flipped back to its default: the check above
# must notice (the others are shown flipped in docs/torchvision.md's table, by the same functions).
FLIPPED = "model.roi_heads.roi_align_aligned=true"


def test_a_flipped_switch_breaks_the_equivalence(fixture, sample_images, categories):
    config = torchvision_config(fixture, [FLIPPED])
    synthetic = {check.SYNTHETIC_NAME: sample_images[check.SYNTHETIC_NAME]}
    index = list(sample_images).index(check.SYNTHETIC_NAME)
    results = check.run_model(check.converted_model(config, categories), config, categories,
                              synthetic)
    subset = {key: value for key, value in fixture.items() if not key.startswith("i")}
    subset.update({key.replace(f"i{index}_", "i0_"): value for key, value in fixture.items()
                   if key.startswith(f"i{index}_")})
    subset["names"] = np.asarray([check.SYNTHETIC_NAME])
    (_, problems, *_), = check.differences(subset, results)
    assert problems, f"{FLIPPED} went unnoticed"
