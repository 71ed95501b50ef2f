"""Checks shared by the layer tests: a serialization round trip and a random pyramid."""

import keras
import numpy as np
import tensorflow as tf

H, W = 64, 128


def round_trip(layer, inputs):
    """Serialize a built layer, rebuild it, copy weights: the same outputs."""
    expected = layer(inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    for got, want in zip(tf.nest.flatten(clone(inputs)), tf.nest.flatten(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()
    return expected


def pyramid(channels=8, batch=2, levels=4):
    rng = np.random.default_rng(0)
    return [tf.constant(rng.normal(size=(batch, H // 2 ** (l + 2), W // 2 ** (l + 2), channels)),
                        tf.float32) for l in range(levels)]
