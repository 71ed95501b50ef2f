"""The stuff branch of OANet (paper Figure 3) on the shared FPN maps P2..P5."""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.ops.shapes import dims


@keras.saving.register_keras_serializable(package="oanet_tf")
class StuffHead(keras.layers.Layer):
    """Per level two stacked 3x3 convs, brought to 1/4 scale and concatenated (multi-scale),
    then a 3x3 conv and a 1x1 conv to the semantic classes."""

    def __init__(self, num_classes: int, channels: int, num_levels: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.channels = channels
        self.num_levels = num_levels
        self.level_convs = [
            [keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                 kernel_initializer="he_normal", name=f"p{level + 2}_conv{i + 1}")
             for i in range(2)]
            for level in range(num_levels)]
        self.fuse = keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                        kernel_initializer="he_normal", name="fuse")
        self.classifier = keras.layers.Conv2D(num_classes, 1, name="classifier")

    def build(self, input_shapes):
        for convs, shape in zip(self.level_convs, input_shapes):
            convs[0].build(shape)
            convs[1].build(tuple(shape[:-1]) + (self.channels,))
        base = input_shapes[0]
        self.fuse.build(tuple(base[:-1]) + (self.channels * self.num_levels,))
        self.classifier.build(tuple(base[:-1]) + (self.channels,))
        self.built = True

    def call(self, features):
        # [P2..P5] each [B, H/s, W/s, C] -> semantic logits [B, H/4, W/4, num_classes]
        size = tf.stack(dims(features[0])[1:3])  # the 1/4-scale grid of P2
        maps = []
        for level, (convs, feature) in enumerate(zip(self.level_convs, features)):
            mapped = convs[1](convs[0](feature))
            if level:  # bilinear with half-pixel centres, as Keras' UpSampling2D (which
                # needs static sizes) upsamples by 2^level
                mapped = tf.cast(tf.image.resize(mapped, size, method="bilinear"),
                                 mapped.dtype)
            maps.append(mapped)
        return self.classifier(self.fuse(tf.concat(maps, axis=-1)))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "channels": self.channels, "num_levels": self.num_levels}
