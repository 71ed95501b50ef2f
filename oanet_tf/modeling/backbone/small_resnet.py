"""A small ResNet-style backbone (basic blocks) for the CPU demo and the tests."""

from __future__ import annotations

import keras

# Inputs are scaled to roughly zero mean, unit variance: (x - 127.5) / 64.
PIXEL_CENTER = 127.5
PIXEL_SCALE = 64.0


def _conv_bn_relu(x, filters, kernel, strides, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, strides, name):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, 1, strides, f"{name}_proj", relu=False)
    y = _conv_bn_relu(x, filters, 3, strides, f"{name}_a")
    y = _conv_bn_relu(y, filters, 3, 1, f"{name}_b", relu=False)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([shortcut, y]))


def build_small_resnet_backbone(widths, blocks,
                                image_shape=(None, None, 3),
                                model_name: str = "small_resnet") -> keras.Model:
    """A functional model images -> [C2, C3, C4, C5] (strides 4, 8, 16, 32)."""
    if len(widths) != 4 or len(blocks) != 4:
        raise ValueError(f"small ResNet needs 4 stage widths and block counts, got "
                         f"{widths} and {blocks}")
    images = keras.Input(shape=image_shape, name="images")
    x = keras.layers.Rescaling(1.0 / PIXEL_SCALE, offset=-PIXEL_CENTER / PIXEL_SCALE,
                               name="normalize")(images)
    x = _conv_bn_relu(x, widths[0], 3, 2, "stem1")  # stride 2
    x = _conv_bn_relu(x, widths[0], 3, 2, "stem2")  # stride 4
    features = []
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for block in range(count):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, width, strides, f"stage{stage + 2}_block{block + 1}")
        features.append(x)
    return keras.Model(images, features, name=model_name)
