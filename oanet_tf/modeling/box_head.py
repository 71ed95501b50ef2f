"""The box head of Fast R-CNN with FPN (He et al., 2017): class logits and box deltas per RoI."""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.config import DECISION_LAYER_DTYPE

CLS_INIT_STDDEV = 0.01
BOX_INIT_STDDEV = 0.001


@keras.saving.register_keras_serializable(package="oanet_tf")
class BoxHead(keras.layers.Layer):
    """Flatten -> `num_fc` x FC(fc_dim) -> class logits (T + 1 + unused_class_slots:
    background, the things, then slots never detected) and class-specific deltas (T)."""

    def __init__(self, num_things: int, fc_dim: int, num_fc: int, unused_class_slots: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_things = num_things
        self.unused_class_slots = int(unused_class_slots)
        self.num_logits = num_things + 1 + self.unused_class_slots
        self.fc_dim = fc_dim
        self.num_fc = num_fc
        self.fcs = [keras.layers.Dense(fc_dim, activation="relu", name=f"fc{i + 1}")
                    for i in range(num_fc)]
        self.cls = keras.layers.Dense(
            self.num_logits, name="class_logits", dtype=DECISION_LAYER_DTYPE,
            kernel_initializer=keras.initializers.RandomNormal(stddev=CLS_INIT_STDDEV))
        self.box = keras.layers.Dense(
            num_things * 4, name="box_deltas", dtype=DECISION_LAYER_DTYPE,
            kernel_initializer=keras.initializers.RandomNormal(stddev=BOX_INIT_STDDEV))

    def build(self, input_shape):
        dim = input_shape[2] * input_shape[3] * input_shape[4]
        for fc in self.fcs:
            fc.build((None, dim))
            dim = self.fc_dim
        self.cls.build((None, dim))
        self.box.build((None, dim))
        self.built = True

    def call(self, pooled):
        # pooled [B, K, S, S, C] -> class_logits [B, K, L], box_deltas [B, K, T, 4];
        # L = T + 1 + unused_class_slots
        batch, rois = tf.shape(pooled)[0], pooled.shape[1]
        x = tf.reshape(pooled, [batch * rois, -1])
        for fc in self.fcs:
            x = fc(x)
        logits = tf.reshape(self.cls(x), [batch, rois, self.num_logits])
        deltas = tf.reshape(self.box(x), [batch, rois, self.num_things, 4])
        return logits, deltas

    def get_config(self):
        return {**super().get_config(), "num_things": self.num_things, "fc_dim": self.fc_dim,
                "num_fc": self.num_fc, "unused_class_slots": self.unused_class_slots}
