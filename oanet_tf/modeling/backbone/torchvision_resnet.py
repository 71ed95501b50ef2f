"""ResNet-50 / ResNet-101 with torchvision's layout: the bottleneck strides in its 3x3
convolution ("ResNet v1.5"), convolutions have no bias, batch norm has epsilon 1e-5 and every
strided convolution pads symmetrically (as PyTorch's `padding=k // 2`, not TensorFlow's "same",
which pads more at the bottom and right).

Layer names are torchvision's state-dict names with "." -> "_" (`layer2_0_conv2`,
`layer2_0_downsample_1`), so that `oanet_tf.conversion.torchvision` maps weights by name.
"""

from __future__ import annotations

import keras

from oanet_tf.errors import ConfigError
from oanet_tf.modeling.backbone.torchvision_layout import (EXPANSION, RESNET_BLOCKS as BLOCKS,
                                                          STAGE_WIDTHS, STEM_CHANNELS,
                                                          STEM_KERNEL)

POOL_KERNEL = 3
NORM_EPSILON = 1e-5  # torch.nn.BatchNorm2d / FrozenBatchNorm2d
# Stage prefixes: 1 is the stem (conv1, bn1), 2..5 are res2..res5 (layer1..layer4).
STAGE_PREFIXES = {1: ("conv1", "bn1"), 2: ("layer1_",), 3: ("layer2_",), 4: ("layer3_",),
                  5: ("layer4_",)}


def _conv(x, filters, kernel, strides, name):
    """A bias-free convolution with PyTorch's symmetric padding of kernel // 2."""
    pad = kernel // 2
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, kernel, strides=strides, use_bias=False,
                               name=name)(x)


def _norm(x, name):
    return keras.layers.BatchNormalization(epsilon=NORM_EPSILON, name=name)(x)


def _bottleneck(x, width, strides, name):
    """conv1 1x1 -> conv2 3x3 (strided) -> conv3 1x1, plus the (projected) input."""
    shortcut = x
    if strides != 1 or x.shape[-1] != width * EXPANSION:
        shortcut = _norm(_conv(x, width * EXPANSION, 1, strides, f"{name}_downsample_0"),
                         f"{name}_downsample_1")
    y = keras.layers.ReLU(name=f"{name}_relu1")(_norm(_conv(x, width, 1, 1, f"{name}_conv1"),
                                                      f"{name}_bn1"))
    y = keras.layers.ReLU(name=f"{name}_relu2")(
        _norm(_conv(y, width, 3, strides, f"{name}_conv2"), f"{name}_bn2"))
    y = _norm(_conv(y, width * EXPANSION, 1, 1, f"{name}_conv3"), f"{name}_bn3")
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")(
        [y, shortcut]))


def build_torchvision_resnet(name: str, image_shape=(None, None, 3)) -> keras.Model:
    """Normalised images -> [C2, C3, C4, C5] (strides 4..32), random weights."""
    if name not in BLOCKS:
        raise ConfigError(f"model.backbone.name: unknown ResNet {name!r}; one of "
                          f"{', '.join(BLOCKS)}")
    inputs = keras.Input(shape=image_shape, name="normalized")
    x = _conv(inputs, STEM_CHANNELS, STEM_KERNEL, 2, "conv1")
    x = keras.layers.ReLU(name="relu")(_norm(x, "bn1"))
    # Zero padding equals PyTorch's -inf padding here: the inputs are >= 0 after the ReLU.
    x = keras.layers.ZeroPadding2D(POOL_KERNEL // 2, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(POOL_KERNEL, strides=2, name="maxpool")(x)
    features = []
    for stage, (width, count) in enumerate(zip(STAGE_WIDTHS, BLOCKS[name])):
        for block in range(count):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _bottleneck(x, width, strides, f"layer{stage + 1}_{block}")
        features.append(x)
    return keras.Model(inputs, features, name=f"{name}_stages")


def freeze(stages: keras.Model, frozen_stages: int, frozen_norm: bool):
    """The first `frozen_stages` stages (Detectron2's FREEZE_AT) and, with `frozen_norm`,
    every batch norm (torchvision's FrozenBatchNorm2d) made untrainable."""
    prefixes = tuple(p for stage in range(1, frozen_stages + 1) for p in STAGE_PREFIXES[stage])
    for layer in stages.layers:
        if layer.name.startswith(prefixes) or (
                frozen_norm and isinstance(layer, keras.layers.BatchNormalization)):
            layer.trainable = False
