"""Keras-native saving: `model.save("x.keras")` and `keras.saving.load_model` give back OANet
with its components, settings and weights, whose detections are the saved model's, bit for
bit, in this process and in a fresh one that imports only `oanet_tf.modeling.oanet`."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf
from tests.tiny_model import CATEGORIES, XLA, tiny_config

from oanet_tf.modeling.builder import build_oanet
from oanet_tf.modeling.oanet import OANet
from oanet_tf.presets import PRESETS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBPROCESS_SECONDS = 300
# A fresh process: no oanet_tf class imported before load_model but OANet's module.
FRESH_LOAD = """
import sys
import numpy as np
import keras
import oanet_tf.modeling.oanet
model = keras.saving.load_model(sys.argv[1])
images = np.load(sys.argv[2])["images"]
np.savez(sys.argv[3], **{k: v.numpy() for k, v in model.detect(images).items()})
"""


def _images():
    """Two synthetic-looking images: a bright box on a two-tone background, and noise."""
    images = np.zeros((2, 128, 128, 3), np.float32)
    images[0, :64] = (70, 130, 180)
    images[0, 64:] = (152, 251, 152)
    images[0, 30:100, 40:80] = (220, 20, 60)
    images[1] = tf.random.stateless_uniform((128, 128, 3), (3, 4), 0.0, 255.0).numpy()
    return images


def _plain(config: dict) -> dict:
    """A config as its JSON file holds it (tuples become lists)."""
    return json.loads(json.dumps(config))


def _detections(model, images) -> dict:
    return {k: v.numpy() for k, v in model.detect(images).items()}


def test_a_trained_model_round_trips_through_a_keras_file(tmp_path):
    from oanet_tf.inference.trained_model import load_trained_model

    model = load_trained_model(PRESETS["synthetic_demo"].data_dir).model
    path = str(tmp_path / "oanet.keras")
    model.save(path)
    images = _images()
    expected = _detections(model, images)
    assert expected["num_detections"][0] > 0  # a trained model finds the box

    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, OANet) and _plain(loaded.get_config()) == _plain(model.get_config())
    for name, value in _detections(loaded, images).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)

    np.savez(tmp_path / "images.npz", images=images)
    out = str(tmp_path / "fresh.npz")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", FRESH_LOAD, path, str(tmp_path / "images.npz"),
                           out], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=SUBPROCESS_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as fresh:
        assert set(fresh.files) == set(expected)
        for name in expected:
            np.testing.assert_array_equal(fresh[name], expected[name], err_msg=name)


def test_every_setting_and_weight_of_a_static_shapes_model_round_trips(tmp_path):
    """The XLA build (static_shapes in the RPN, RoI heads and SRM), a separate stuff FPN and
    a seed of its own: all rebuilt from the file, every weight equal."""
    config = tiny_config(*XLA, "model.sharing=backbone", "train.seed=5")
    model = build_oanet(config.model, config.train, CATEGORIES, load_backbone_weights=False)
    path = str(tmp_path / "static.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.static_shapes and loaded.seed == 5 and loaded.stuff_fpn is not None
    assert (loaded.num_things, loaded.num_stuff) == (CATEGORIES.num_things, CATEGORIES.num_stuff)
    assert _plain(loaded.get_config()) == _plain(model.get_config())
    names = [w.path for w in model.weights]
    assert [w.path for w in loaded.weights] == names
    for name, a, b in zip(names, model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b, err_msg=name)
