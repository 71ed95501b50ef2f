"""ResNet-50 / ResNet-101 backbones from keras.applications, weights from a local file only."""

from __future__ import annotations

import os

import keras

from oanet_tf.config import RESNET50, RESNET101
from oanet_tf.errors import ConfigError

# keras.applications ResNet weights expect Caffe-style inputs: BGR, minus the ImageNet mean.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

_STAGE_OUTPUTS = {
    RESNET50: ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    RESNET101: ("conv2_block3_out", "conv3_block4_out", "conv4_block23_out",
                "conv5_block3_out"),
}
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


def build_resnet_backbone(name: str, weights_path: str, image_shape=(None, None, 3),
                          model_name: str | None = None) -> keras.Model:
    """A functional model images -> [C2, C3, C4, C5] (strides 4..32).

    `weights_path` is a local ImageNet weights file (the keras.applications "notop" .h5);
    nothing is ever downloaded. With pretrained weights, batch norm is frozen (inference
    mode), as detection training with 1-2 images per device requires.
    """
    if name not in _APPLICATIONS:
        raise ConfigError(f"model.backbone: unknown ResNet {name!r}; one of "
                          f"{', '.join(_APPLICATIONS)}")
    if weights_path and not os.path.isfile(weights_path):
        raise ConfigError(f"model.backbone_weights: file not found: {weights_path}")
    images = keras.Input(shape=image_shape, name="images")
    base = _APPLICATIONS[name](include_top=False, weights=None, input_shape=image_shape)
    if weights_path:
        try:
            base.load_weights(weights_path)
        except Exception as err:  # keras raises several types for a mismatched file
            raise ConfigError(f"model.backbone_weights: {weights_path} does not fit {name}: "
                              f"{err}") from None
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    stages = keras.Model(base.input, [base.get_layer(n).output for n in _STAGE_OUTPUTS[name]],
                         name=f"{name}_stages")
    features = stages(CaffePreprocess(name="caffe_preprocess")(images))
    return keras.Model(images, features, name=model_name or name)
