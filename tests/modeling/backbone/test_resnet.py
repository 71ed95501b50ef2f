"""The keras.applications ResNet backbones: Caffe preprocessing; pretrained weights read from
a local file, and over a train step the stem, res2 and every batch norm (Detectron2's
FREEZE_AT = 2, frozen norm) stay as loaded while res3..res5 move; offline, `imagenet` is a
one-line error saying where the file goes."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.utils import file_utils

from oanet_tf.config import IMAGENET_WEIGHTS, RESNET50
from oanet_tf.errors import ConfigError
from oanet_tf.modeling.backbone.resnet import (CAFFE_BGR_MEAN, CaffePreprocess,
                                               build_resnet_backbone, imagenet_file)
from oanet_tf.training.optimizer import SGDWithL2

NORM_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def test_caffe_preprocess_hand_case():
    out = CaffePreprocess()(tf.constant([[[[10.0, 20.0, 30.0]]]]))
    np.testing.assert_allclose(out[0, 0, 0], np.array([30.0, 20.0, 10.0]) - CAFFE_BGR_MEAN,
                               rtol=1e-6)


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """A ResNet-50 "notop" weights file (random values standing in for ImageNet's) and its
    values by "layer/variable"."""
    keras.utils.set_random_seed(1)
    source = keras.applications.ResNet50(include_top=False, weights=None,
                                         input_shape=(None, None, 3))
    path = str(tmp_path_factory.mktemp("weights") / "resnet50_notop.weights.h5")
    source.save_weights(path)
    return path, {name: v.numpy() for name, v in _by_layer(source).items()}


def _by_layer(model):
    """{"layer/variable": variable} of a keras.applications ResNet."""
    return {f"{layer.name}/{v.name}": v for layer in model.layers for v in layer.weights}


def _stage(name: str) -> int:
    """The ResNet stage (1 the stem, 2..5 res2..res5) of a "layer/variable" name."""
    return 1 if name.startswith(("conv1_", "pool1_")) else int(name[len("conv")])


def test_pretrained_stem_res2_and_norm_stay_frozen_over_a_train_step(resnet50_file):
    path, saved = resnet50_file
    backbone = build_resnet_backbone(RESNET50, path, frozen_stages=2, frozen_norm=True)
    stages = _by_layer(backbone.get_layer(f"{RESNET50}_stages"))
    assert set(stages) == set(saved) and len(stages) == len(backbone.variables)
    for name, variable in stages.items():
        np.testing.assert_array_equal(variable.numpy(), saved[name], err_msg=name)
    frozen = {name for name in stages
              if _stage(name) <= 2 or name.split("/")[-1] in NORM_VARIABLES}
    trainable = {id(v) for v in backbone.trainable_variables}
    for name, variable in stages.items():
        assert (id(variable) in trainable) == (name not in frozen), name

    images = tf.random.stateless_uniform([2, 64, 64, 3], (0, 1), maxval=255.0)
    optimizer = SGDWithL2(learning_rate=0.01, momentum=0.9, l2=1e-4)
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_mean(tf.square(f)) for f in backbone(images, training=True))
    variables = backbone.trainable_variables
    optimizer.apply(tape.gradient(loss, variables), variables)
    for name, variable in stages.items():
        moved = not np.array_equal(variable.numpy(), saved[name])
        assert moved == (name not in frozen), name


def test_imagenet_offline_is_one_line_that_says_where_to_put_the_file(monkeypatch):
    asked = []

    def offline_get_file(fname, origin, **kwargs):
        # What keras' get_file raises when the URL cannot be reached.
        asked.append(fname)
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary "
                        f"failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline_get_file)
    with pytest.raises(ConfigError) as err:
        build_resnet_backbone(RESNET50, IMAGENET_WEIGHTS, frozen_stages=2, frozen_norm=True)
    message = str(err.value)
    expected_file = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert asked == [expected_file]
    assert "\n" not in message
    assert message.startswith("model.backbone.weights: imagenet:")
    assert os.path.join(".keras", "models", expected_file) in message or \
        os.environ.get("KERAS_HOME", "") in message
    assert imagenet_file(RESNET50) in message and "name resolution" in message


def test_missing_local_file_is_named(tmp_path):
    missing = str(tmp_path / "nowhere.h5")
    with pytest.raises(ConfigError, match=f"file not found: {missing}"):
        build_resnet_backbone(RESNET50, missing, frozen_stages=2, frozen_norm=True)
