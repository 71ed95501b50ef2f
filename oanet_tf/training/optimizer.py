"""SGD with momentum and L2 weight decay added to the gradient, as the paper trains.

Keras 3's `SGD(weight_decay=...)` decays decoupled from the gradient (`w -= lr * wd * w`,
outside momentum). Detectron2 and the paper's SGD add `wd * w` to the gradient, and momentum
then accumulates it: at momentum 0.9 that decays about 1 / (1 - 0.9) = 10 times as much.

The momentum rule is Keras' (`v = m * v - lr * g; w += v`). PyTorch's, which Detectron2
uses, is `v = m * v + g; w -= lr * v`: the two give the same steps while the learning rate
is constant and differ only at a change of rate (warm-up, the decay steps), where Keras'
velocity keeps the rates it was accumulated with for about 1 / (1 - m) steps.

Decayed: every trainable variable except normalisation scales and offsets (Detectron2's
WEIGHT_DECAY_NORM = 0). Biases are decayed, as by Detectron2's default (WEIGHT_DECAY_BIAS
None: it follows WEIGHT_DECAY). Detectron v1 exempted biases and doubled their learning
rate; Detectron2's defaults keep those two settings only for reproducing v1, saying they do
not help recent models, and we take neither.
"""

from __future__ import annotations

import keras
from keras import ops

# The variable names of Keras' normalisation layers (BatchNormalization, LayerNormalization,
# GroupNormalization): their scale and offset.
NORM_VARIABLE_NAMES = ("gamma", "beta")


@keras.saving.register_keras_serializable(package="oanet_tf")
class SGDWithL2(keras.optimizers.SGD):
    """`keras.optimizers.SGD` whose gradient of a decayed variable `w` is `g + l2 * w`."""

    def __init__(self, l2: float = 0.0, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("SGDWithL2 decays through `l2`; Keras' decoupled `weight_decay` "
                             "would decay twice")
        super().__init__(**kwargs)
        self.l2 = float(l2)
        self._decayed = []

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # By position, which Keras keeps for a variable under every distribution strategy.
        self._decayed = [variable.name not in NORM_VARIABLE_NAMES for variable in variables]

    def update_step(self, gradient, variable, learning_rate):
        if self.l2 and self._decayed[self._get_variable_index(variable)]:
            gradient = ops.add(ops.cast(gradient, variable.dtype),
                               ops.multiply(ops.cast(self.l2, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}

