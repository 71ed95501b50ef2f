"""Fixtures of the hostile-input suite: the scene dataset of tests/data (a few 12x16 images)
written with a defect, and a model dir of the tiny model with random weights for it."""

import os

import keras
import pytest
import tensorflow as tf

from oanet_tf.config import save_config
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.fileio import write_json
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.inference.trained_model import CATEGORIES_FILE, CONFIG_FILE, LAST_WEIGHTS
from tests.data.scenes import CATEGORIES, _scene_image, _write_dataset
from tests.tiny_model import tiny_config

SCENE_CATEGORIES = CategoryMap.from_categories(CATEGORIES)
SCENE_IMAGES = 4


def write_scene(root, count=SCENE_IMAGES, **extra):
    """`count` scene images (ids 1..count) as a split under `root`; returns its SplitConfig."""
    return _write_dataset(str(root), [_scene_image(i, **extra) for i in range(1, count + 1)])


def split_overrides(split, name="val"):
    return [f"data.{name}.image_dir={split.image_dir}",
            f"data.{name}.panoptic_json={split.panoptic_json}",
            f"data.{name}.panoptic_dir={split.panoptic_dir}"]


@pytest.fixture(scope="session")
def scene_model_dir(tmp_path_factory):
    """A model dir as `train` writes it (tiny model, random weights, scene categories);
    returns (its path, its config)."""
    root = str(tmp_path_factory.mktemp("scene_model"))
    config = tiny_config("data.buckets=[]", "data.short_side=32", "data.max_side=32",
                         "train.batch_size=2")
    keras.utils.set_random_seed(0)
    model = build_oanet(config.model, config.train, SCENE_CATEGORIES)
    model.detect(tf.zeros((1, 32, 32, 3)))  # builds the heads
    os.makedirs(os.path.join(root, "checkpoints"))
    model.save_weights(os.path.join(root, LAST_WEIGHTS))
    save_config(config, os.path.join(root, CONFIG_FILE))
    write_json(os.path.join(root, CATEGORIES_FILE), list(SCENE_CATEGORIES.categories))
    return root, config
