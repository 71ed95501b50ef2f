"""A model whose losses are scripted by its data, logged by the train step's StepLog as OANet's
are: for tests of the training callbacks against hand-computed numbers."""

import keras
import numpy as np
import tensorflow as tf

from oanet_tf.modeling.train_step import StepLog

TERM = "a"  # the one loss term; the total is TOTAL_FACTOR times it
TOTAL_FACTOR = 2.0
VAL_TARGET = 4.0  # the validation loss is (steps - VAL_TARGET)^2


class ScriptedModel(keras.Model):
    """A train step logs its batch's value as the loss term (skipped when not finite) and
    counts itself in `steps`, its one weight; a test step logs (steps - VAL_TARGET)^2."""

    def __init__(self):
        super().__init__()
        self.step_log = StepLog((TERM,))
        self.steps = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="steps")
        self.built = True

    @property
    def metrics(self):
        return self.step_log.metrics

    def train_step(self, data):
        value = data[0]
        self.steps.assign_add(1.0)
        return self.step_log.update({TERM: value}, TOTAL_FACTOR * value,
                                    tf.math.is_finite(value))

    def test_step(self, data):
        value = tf.square(self.steps - VAL_TARGET)
        return self.step_log.update({TERM: value / TOTAL_FACTOR}, value, tf.constant(True))


def scripted_model() -> ScriptedModel:
    model = ScriptedModel()
    model.compile(optimizer=keras.optimizers.SGD(0.25))
    return model


def scripted_data(values) -> tf.data.Dataset:
    """One batch per value: the train step's loss term."""
    return tf.data.Dataset.from_tensor_slices(np.asarray(values, np.float32)[:, None]).batch(1)
