"""The head of the region proposal network: objectness and box deltas at every anchor."""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.config import DECISION_LAYER_DTYPE
from oanet_tf.ops.shapes import dims

HEAD_INIT_STDDEV = 0.01


@keras.saving.register_keras_serializable(package="oanet_tf")
class RPNHead(keras.layers.Layer):
    """A 3x3 conv shared over levels, then 1x1 objectness and box-delta predictors."""

    def __init__(self, num_anchors: int, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = num_anchors
        self.channels = channels
        init = keras.initializers.RandomNormal(stddev=HEAD_INIT_STDDEV)
        self.conv = keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                        kernel_initializer=init, name="conv")
        self.objectness = keras.layers.Conv2D(num_anchors, 1, kernel_initializer=init,
                                              name="objectness", dtype=DECISION_LAYER_DTYPE)
        self.deltas = keras.layers.Conv2D(num_anchors * 4, 1, kernel_initializer=init,
                                          name="deltas", dtype=DECISION_LAYER_DTYPE)

    def build(self, input_shapes):
        self.conv.build(input_shapes[0])
        hidden = tuple(input_shapes[0][:-1]) + (self.channels,)
        self.objectness.build(hidden)
        self.deltas.build(hidden)
        self.built = True

    def call(self, features):
        # [P2..P6] each [B, H_l, W_l, C] -> logits [B, N], deltas [B, N, 4]; N = sum H_l*W_l*A,
        # ordered level by level, row-major over (y, x), then anchors (ops.anchors order).
        logits, deltas = [], []
        for feature in features:
            hidden = self.conv(feature)
            batch, h, w, _ = dims(feature)
            count = h * w * self.num_anchors
            logits.append(tf.reshape(self.objectness(hidden), [batch, count]))
            deltas.append(tf.reshape(self.deltas(hidden), [batch, count, 4]))
        return tf.concat(logits, axis=1), tf.concat(deltas, axis=1)

    def get_config(self):
        return {**super().get_config(), "num_anchors": self.num_anchors,
                "channels": self.channels}
