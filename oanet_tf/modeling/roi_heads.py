"""The RoI heads of Mask R-CNN (He et al., 2017): box head and mask head layers."""

from __future__ import annotations

import keras
import tensorflow as tf

CLS_INIT_STDDEV = 0.01
BOX_INIT_STDDEV = 0.001
MASK_UPSAMPLE = 2


@keras.saving.register_keras_serializable(package="oanet_tf")
class BoxHead(keras.layers.Layer):
    """Flatten -> `num_fc` x FC(fc_dim) -> class logits (T + 1) and class-specific deltas."""

    def __init__(self, num_things: int, fc_dim: int = 1024, num_fc: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.num_things = num_things
        self.fc_dim = fc_dim
        self.num_fc = num_fc
        self.fcs = [keras.layers.Dense(fc_dim, activation="relu", name=f"fc{i + 1}")
                    for i in range(num_fc)]
        self.cls = keras.layers.Dense(
            num_things + 1, name="class_logits",
            kernel_initializer=keras.initializers.RandomNormal(stddev=CLS_INIT_STDDEV))
        self.box = keras.layers.Dense(
            num_things * 4, name="box_deltas",
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
        # pooled [B, K, S, S, C] -> class_logits [B, K, T + 1], box_deltas [B, K, T, 4]
        batch, rois = tf.shape(pooled)[0], pooled.shape[1]
        x = tf.reshape(pooled, [batch * rois, -1])
        for fc in self.fcs:
            x = fc(x)
        logits = tf.reshape(self.cls(x), [batch, rois, self.num_things + 1])
        deltas = tf.reshape(self.box(x), [batch, rois, self.num_things, 4])
        return logits, deltas

    def get_config(self):
        return {**super().get_config(), "num_things": self.num_things, "fc_dim": self.fc_dim,
                "num_fc": self.num_fc}


@keras.saving.register_keras_serializable(package="oanet_tf")
class MaskHead(keras.layers.Layer):
    """`num_conv` x 3x3 conv, a 2x deconv, then one class-specific mask logit map per thing."""

    def __init__(self, num_things: int, conv_dim: int = 256, num_conv: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.num_things = num_things
        self.conv_dim = conv_dim
        self.num_conv = num_conv
        self.convs = [keras.layers.Conv2D(conv_dim, 3, padding="same", activation="relu",
                                          kernel_initializer="he_normal", name=f"conv{i + 1}")
                      for i in range(num_conv)]
        self.deconv = keras.layers.Conv2DTranspose(conv_dim, MASK_UPSAMPLE,
                                                   strides=MASK_UPSAMPLE, activation="relu",
                                                   kernel_initializer="he_normal", name="deconv")
        self.predictor = keras.layers.Conv2D(num_things, 1, name="mask_logits",
                                             kernel_initializer=keras.initializers.RandomNormal(
                                                 stddev=BOX_INIT_STDDEV))

    def build(self, input_shape):
        shape = (None,) + tuple(input_shape[2:])
        for conv in self.convs:
            conv.build(shape)
            shape = shape[:-1] + (self.conv_dim,)
        self.deconv.build(shape)
        self.predictor.build((None, shape[1] * MASK_UPSAMPLE, shape[2] * MASK_UPSAMPLE,
                              self.conv_dim))
        self.built = True

    def call(self, pooled):
        # pooled [B, K, S, S, C] -> mask logits [B, K, 2S, 2S, T]; K may be dynamic
        batch = tf.shape(pooled)[0]
        rois = pooled.shape[1] if pooled.shape[1] is not None else tf.shape(pooled)[1]
        x = tf.reshape(pooled, [-1] + list(pooled.shape[2:]))
        for conv in self.convs:
            x = conv(x)
        x = self.predictor(self.deconv(x))
        return tf.reshape(x, [batch, rois] + list(x.shape[1:]))

    def get_config(self):
        return {**super().get_config(), "num_things": self.num_things,
                "conv_dim": self.conv_dim, "num_conv": self.num_conv}
