"""oanet_tf.evaluation.perturb: the perturbed predictions the PQ tests score."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from oanet_tf.evaluation.perturb import perturb_panoptic
from tests.evaluation.panoptic_cases import random_dataset


def test_perturbation_is_deterministic(tmp_path):
    gt_json, gt_dir, _, _ = random_dataset(str(tmp_path), seed=6, num_images=2)
    outputs = []
    for run in ("a", "b"):
        out_json = perturb_panoptic(gt_json, gt_dir, str(tmp_path / f"{run}.json"),
                                    str(tmp_path / run), seed=11)
        with open(out_json) as f:
            outputs.append(json.load(f)["annotations"])
        outputs.append([np.asarray(Image.open(tmp_path / run / a["file_name"])).tolist()
                        for a in outputs[-1]])
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
