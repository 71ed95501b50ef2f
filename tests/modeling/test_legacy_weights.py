"""Weights saved before the components redesign still load and give the same detections."""

import os

import h5py
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.modeling import legacy_weights
from oanet_tf.inference.trained_model import LAST_WEIGHTS, load_trained_model

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "model_v1")
REFERENCE = os.path.join(FIXTURE, "detections.npz")
# Same weights, same inputs, same ops: only float summation order may differ.
ATOL = 1e-5


def _datasets(path):
    found = {}

    def collect(name, obj):  # visititems stops at the first callback returning non-None
        if isinstance(obj, h5py.Dataset):
            found[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(collect)
    return found


def test_first_layout_is_recognised_and_upgraded_value_for_value(tmp_path):
    source = os.path.join(FIXTURE, LAST_WEIGHTS)
    assert legacy_weights.is_v1(source)
    target = str(tmp_path / "upgraded.weights.h5")
    legacy_weights.upgrade_v1(source, target)
    assert not legacy_weights.is_v1(target)
    old, new = _datasets(source), _datasets(target)
    assert len(old) == len(new) > 100
    for path, value in old.items():
        moved = path
        for before, after in legacy_weights.V1_PATHS.items():
            if path.startswith(before + "/"):
                moved = after + path[len(before):]
        np.testing.assert_array_equal(new[moved], value, err_msg=path)


def test_weights_of_the_first_layout_give_the_same_detections():
    reference = dict(np.load(REFERENCE))
    model = load_trained_model(FIXTURE).model
    got = {k: v.numpy() for k, v in model.detect(
        tf.constant(reference["images"], tf.float32)).items()}
    np.testing.assert_array_equal(got["num_detections"], reference["num_detections"])
    np.testing.assert_array_equal(got["classes"], reference["classes"])
    for name in ("boxes", "scores", "masks", "ranking_scores", "stuff_probs"):
        np.testing.assert_allclose(got[name], reference[name], atol=ATOL, err_msg=name)


def test_a_file_of_another_model_still_fails_clearly(tmp_path):
    """The upgrade renames paths only: a file that does not fit the model is refused."""
    path = str(tmp_path / "empty.weights.h5")
    with h5py.File(path, "w") as f:
        f.create_group("box_head")
    model = load_trained_model(FIXTURE).model
    with pytest.raises(ValueError):
        model.load_weights(path)
