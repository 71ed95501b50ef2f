"""ResNet-50 / ResNet-101 backbones: keras.applications' (stride in the 1x1 convolution) with
random, ImageNet or local weights, or torchvision's layout (stride in the 3x3); the first
stages and batch norm frozen when pretrained; pixels normalised as the weights expect."""

from __future__ import annotations

import os

import keras

from oanet_tf.config import (CAFFE_BGR, IMAGENET_RGB, IMAGENET_WEIGHTS, MAX_PIXEL_VALUE,
                             RESNET50, RESNET101, STRIDE_IN_1X1, STRIDE_IN_3X3)
from oanet_tf.errors import ConfigError
from oanet_tf.modeling.backbone import torchvision_resnet

# keras.applications ResNet weights expect Caffe-style inputs: BGR, minus the ImageNet mean.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# torchvision's ImageNet statistics of RGB in [0, 1] (GeneralizedRCNNTransform's defaults).
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)

_STAGE_OUTPUTS = {
    RESNET50: ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    RESNET101: ("conv2_block3_out", "conv3_block4_out", "conv4_block23_out",
                "conv5_block3_out"),
}
# Layer name prefixes of keras.applications' ResNet stages: 1 is the stem (conv1, pool1),
# 2..5 are res2..res5 (conv2_x..conv5_x).
_STAGE_PREFIXES = {1: ("conv1_", "pool1_"), 2: ("conv2_",), 3: ("conv3_",), 4: ("conv4_",),
                   5: ("conv5_",)}
# keras.applications' ImageNet "notop" weights: file name and cache folder under KERAS_HOME.
IMAGENET_NOTOP_FILE = "{}_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_CACHE_SUBDIR = "models"
_APPLICATIONS = {
    RESNET50: keras.applications.ResNet50,
    RESNET101: keras.applications.ResNet101,
}


@keras.saving.register_keras_serializable(package="oanet_tf")
class CaffePreprocess(keras.layers.Layer):
    """RGB 0..255 -> BGR minus the ImageNet mean, as keras.applications ResNets were trained."""

    def call(self, images):
        # [B, H, W, 3] -> [B, H, W, 3]
        bgr = keras.ops.flip(images, axis=-1)
        return bgr - keras.ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=bgr.dtype)


@keras.saving.register_keras_serializable(package="oanet_tf")
class ImageNetRGBPreprocess(keras.layers.Layer):
    """RGB 0..255 -> RGB in [0, 1] minus the ImageNet mean, over its std (torchvision)."""

    def call(self, images):
        # [B, H, W, 3] -> [B, H, W, 3]
        mean = keras.ops.convert_to_tensor(IMAGENET_RGB_MEAN, dtype=images.dtype)
        std = keras.ops.convert_to_tensor(IMAGENET_RGB_STD, dtype=images.dtype)
        return (images / MAX_PIXEL_VALUE - mean) / std


# model.backbone.pixel_normalization -> (its layer, the layer's name).
PREPROCESSING = {CAFFE_BGR: (CaffePreprocess, "caffe_preprocess"),
                 IMAGENET_RGB: (ImageNetRGBPreprocess, "imagenet_rgb_preprocess")}


def build_resnet_backbone(name: str, weights: str | None, frozen_stages: int, frozen_norm: bool,
                          image_shape=(None, None, 3), model_name: str | None = None,
                          stride_in: str = STRIDE_IN_1X1,
                          pixel_normalization: str = CAFFE_BGR) -> keras.Model:
    """A functional model images -> [C2, C3, C4, C5] (strides 4..32).

    `weights`: None (random initialisation), `IMAGENET_WEIGHTS` (keras.applications
    downloads the "notop" file once into its cache) or a local weights file.
    `frozen_stages`: the first stages not trained, as Detectron2's FREEZE_AT (1: the stem,
    2: the stem and res2, ...). `frozen_norm`: batch norm in inference mode and not trained,
    as detection training with 1-2 images per device requires of pretrained weights.
    `stride_in`: STRIDE_IN_3X3 builds torchvision's layout (`torchvision_resnet`; `weights`
    then None or a `.weights.h5` file of that layout). `pixel_normalization`: see
    `PREPROCESSING`.
    """
    layer, layer_name = PREPROCESSING[pixel_normalization]
    preprocess = layer(name=layer_name)
    if stride_in == STRIDE_IN_3X3:
        return _torchvision_layout(name, weights, frozen_stages, frozen_norm, image_shape,
                                   model_name, preprocess)
    if name not in _APPLICATIONS:
        raise ConfigError(f"model.backbone.name: unknown ResNet {name!r}; one of "
                          f"{', '.join(_APPLICATIONS)}")
    if weights not in (None, IMAGENET_WEIGHTS) and not os.path.isfile(weights):
        raise ConfigError(f"model.backbone.weights: file not found: {weights}")
    images = keras.Input(shape=image_shape, name="images")
    base = _imagenet_resnet(name, image_shape) if weights == IMAGENET_WEIGHTS else \
        _APPLICATIONS[name](include_top=False, weights=None, input_shape=image_shape)
    if weights not in (None, IMAGENET_WEIGHTS):
        try:
            base.load_weights(weights)
        except Exception as err:  # keras raises several types for a mismatched file
            raise ConfigError(f"model.backbone.weights: {weights} does not fit {name}: "
                              f"{err}") from None
    frozen_prefixes = tuple(p for stage in range(1, frozen_stages + 1)
                            for p in _STAGE_PREFIXES[stage])
    for layer in base.layers:
        if layer.name.startswith(frozen_prefixes) or (
                frozen_norm and isinstance(layer, keras.layers.BatchNormalization)):
            layer.trainable = False
    stages = keras.Model(base.input, [base.get_layer(n).output for n in _STAGE_OUTPUTS[name]],
                         name=f"{name}_stages")
    features = stages(preprocess(images))
    return keras.Model(images, features, name=model_name or name)


def _torchvision_layout(name, weights, frozen_stages, frozen_norm, image_shape, model_name,
                        preprocess) -> keras.Model:
    """build_resnet_backbone for STRIDE_IN_3X3."""
    if weights == IMAGENET_WEIGHTS:
        raise ConfigError(f"model.backbone.weights: {IMAGENET_WEIGHTS} are keras.applications' "
                          f"weights, of a ResNet that strides in the 1x1 convolution")
    stages = torchvision_resnet.build_torchvision_resnet(name, image_shape)
    if weights is not None:
        if not os.path.isfile(weights):
            raise ConfigError(f"model.backbone.weights: file not found: {weights}")
        try:
            stages.load_weights(weights)
        except Exception as err:  # keras raises several types for a mismatched file
            raise ConfigError(f"model.backbone.weights: {weights} does not fit {name} "
                              f"({STRIDE_IN_3X3} stride): {err}") from None
    torchvision_resnet.freeze(stages, frozen_stages, frozen_norm)
    images = keras.Input(shape=image_shape, name="images")
    return keras.Model(images, stages(preprocess(images)), name=model_name or name)


def imagenet_file(name: str) -> str:
    """Where keras.applications caches the ImageNet "notop" weights of ResNet `name`."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, KERAS_CACHE_SUBDIR, IMAGENET_NOTOP_FILE.format(name))


def _imagenet_resnet(name: str, image_shape) -> keras.Model:
    """keras.applications' ResNet with its ImageNet weights (downloaded once, then cached);
    offline without the cached file, a one-line ConfigError that says where to put it."""
    try:
        return _APPLICATIONS[name](include_top=False, weights=IMAGENET_WEIGHTS,
                                   input_shape=image_shape)
    except Exception as err:  # keras raises a bare Exception for a failed download
        reason = " ".join(str(err).split())
        raise ConfigError(
            f"model.backbone.weights: imagenet: {IMAGENET_NOTOP_FILE.format(name)} could not "
            f"be downloaded ({reason}); offline, put that file at {imagenet_file(name)} or "
            f"set model.backbone.weights to its path") from None
