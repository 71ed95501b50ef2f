"""The mask head of Mask R-CNN (He et al., 2017): a 28x28 mask logit map per RoI and thing."""

from __future__ import annotations

import keras
import tensorflow as tf

MASK_UPSAMPLE = 2
PREDICTOR_INIT_STDDEV = 0.001


@keras.saving.register_keras_serializable(package="oanet_tf")
class MaskHead(keras.layers.Layer):
    """`num_conv` x 3x3 conv, a 2x deconv, then one class-specific mask logit map per thing."""

    def __init__(self, num_things: int, conv_dim: int, num_conv: int, **kwargs):
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
                                                 stddev=PREDICTOR_INIT_STDDEV))

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
