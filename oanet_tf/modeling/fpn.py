"""Feature Pyramid Network: [C2..C5] -> [P2..P6] (Lin et al., 2017)."""

from __future__ import annotations

import keras

UPSAMPLE_FACTOR = 2


@keras.saving.register_keras_serializable(package="oanet_tf")
class FPN(keras.layers.Layer):
    """1x1 laterals, top-down nearest upsampling, 3x3 output convs; P6 = P5 subsampled by 2.

    P6 feeds the RPN only, as in Mask R-CNN.
    """

    def __init__(self, channels: int, num_inputs: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.num_inputs = num_inputs
        self.laterals = [keras.layers.Conv2D(channels, 1, name=f"lateral{i + 2}")
                         for i in range(num_inputs)]
        self.outputs_convs = [keras.layers.Conv2D(channels, 3, padding="same",
                                                  name=f"output{i + 2}")
                              for i in range(num_inputs)]
        self.upsample = keras.layers.UpSampling2D(UPSAMPLE_FACTOR, interpolation="nearest")
        self.p6 = keras.layers.MaxPooling2D(pool_size=1, strides=2, name="p6")

    def build(self, input_shapes):
        for lateral, output_conv, shape in zip(self.laterals, self.outputs_convs, input_shapes):
            lateral.build(shape)
            output_conv.build(tuple(shape[:-1]) + (self.channels,))
        self.built = True

    def call(self, features):
        # [C2..C5] each [B, H/s, W/s, C_s] -> [P2..P6] each [B, H/s, W/s, channels], s = 4..64
        laterals = [conv(f) for conv, f in zip(self.laterals, features)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + self.upsample(merged[0]))
        outputs = [conv(m) for conv, m in zip(self.outputs_convs, merged)]
        return outputs + [self.p6(outputs[-1])]

    def compute_output_shape(self, input_shapes):
        shapes = [tuple(s[:-1]) + (self.channels,) for s in input_shapes]
        last = shapes[-1]
        half = [None if d is None else (d + 1) // 2 for d in last[1:3]]
        return shapes + [(last[0], half[0], half[1], self.channels)]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "num_inputs": self.num_inputs}
